import ArgumentParser
import Foundation
import MyBAOps

/// `reconcile`: the ledger's projection against every Stripe customer's metadata.
struct ReconcileCommand: ConsoleCommand {
    var changesData: Bool { fix != nil && !dryRun }
    var auditReason: String { reason ?? "" }
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Compare the ledger with Stripe customer metadata; exit 3 while drift remains.",
        discussion: """
            Lists every Stripe customer through the paginated API. --fix push writes local values to Stripe;
            --fix pull takes Stripe's tokens into the ledger as audited adjust entries (counters cannot be pulled).
            """
    )

    enum Fix: String, ExpressibleByArgument, CaseIterable {
        case push, pull
    }

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only this customer.", valueName: "user"))
    var user: String?

    @Option(help: "push (ledger → Stripe) or pull (Stripe tokens → ledger).")
    var fix: Fix?

    @Flag(help: "With --fix: say what would change and change nothing.")
    var dryRun = false

    @Flag(help: "Apply a --fix without asking (required when not on a terminal).")
    var yes = false

    @Option(name: .long, help: ArgumentHelp("With --fix: why (required; kept in the audit log).", valueName: "text"))
    var reason: String?

    func validate() throws {
        if fix != nil, !dryRun, (reason ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--fix needs --reason: say why, it goes into the audit log (or --dry-run to see the plan)")
        }
    }

    struct Document: Encodable {
        var report: ReconcileReport
        var fixed: [String]
    }

    func execute(in console: Console) async throws {
        let database = try await console.database()
        let stripe = try console.stripeClient()
        let userId = try await user.asyncMap { try await console.userId(for: $0) }
        let showProgress = console.interactive && !console.json
        let customers = try await stripe.allCustomers { count in
            if showProgress { Console.writeError("\rlisted \(count) Stripe customers…", newline: false) }
        }
        if showProgress { Console.writeError("") }
        var report = try await database.stripeCustomers.reconcile(against: customers, onlyUser: userId)
        var fixed: [String] = []
        let pushSteps = fix == .push ? StripeMirror.pushPlan(report) : []
        if let fix, !report.drifts.isEmpty || !pushSteps.isEmpty {
            switch fix {
            case .push:
                for step in pushSteps {
                    console.write("plan: push \(step.userId)'s ledger values to Stripe" + (step.creating ? " (creating the Stripe customer)" : ""))
                }
                if !dryRun, try !console.approve("push \(pushSteps.count) customer(s)?", yes: yes) {
                    throw ConsoleFailure(code: "not_confirmed", description: "not applied")
                }
                if !dryRun {
                    try await StripeMirror(database: database, stripe: stripe).applyPush(
                        pushSteps,
                        by: console.operatorContext(reason: reason ?? ""),
                        onlyUser: userId
                    )
                }
                fixed += pushSteps.map { "\(dryRun ? "would push" : "pushed") \($0.userId)" }
            case .pull:
                let plan = try await database.stripeCustomers.planPull(report)
                if !console.json {
                    var table = TextTable(["user", "tokens before", "after (Stripe)", "change"])
                    for step in plan.steps {
                        let change = step.after - step.before
                        table.add([step.userId, String(step.before), String(step.after), change > 0 ? "+\(change)" : String(change)])
                    }
                    if !plan.steps.isEmpty {
                        console.write(console.bold("plan: pull Stripe's tokens into the ledger (adjust entries)"))
                        console.write(table.render(bold: console.bold))
                    }
                }
                // Listed with the outcomes at the end, in both output modes.
                fixed += plan.skipped.map { "skipped \($0)" }
                if !plan.steps.isEmpty {
                    if !dryRun, try !console.approve("pull tokens for \(plan.steps.count) customer(s)?", yes: yes) {
                        throw ConsoleFailure(code: "not_confirmed", description: "not applied")
                    }
                    for step in plan.steps {
                        guard !dryRun else {
                            fixed.append("would adjust \(step.userId) tokens \(step.before) → \(step.after)")
                            continue
                        }
                        switch try await database.stripeCustomers.applyPull(step, by: console.operatorContext(reason: reason ?? "")) {
                        case .applied: fixed.append("adjusted \(step.userId) tokens \(step.before) → \(step.after)")
                        case .alreadyApplied: fixed.append("already applied \(step.userId) (same plan, nothing changed)")
                        case .changedSincePlan(let why): fixed.append("not applied \(step.userId): \(why); run reconcile again")
                        }
                    }
                }
            }
            if !dryRun { report = try await database.stripeCustomers.reconcile(against: try await stripe.allCustomers(), onlyUser: userId) }
        }
        if console.json {
            try console.writeJSON(Document(report: report, fixed: fixed))
        } else {
            if !report.drifts.isEmpty {
                var table = TextTable(["user", "stripe customer", "key", "local", "stripe", "pending"])
                for drift in report.drifts {
                    table.add([
                        drift.userId, drift.stripeCustomerId ?? "-", drift.key, drift.local ?? "(none)", drift.stripe ?? "(none)",
                        drift.pendingInOutbox ? "yes" : "-",
                    ])
                }
                console.write(table.render(bold: console.bold))
            }
            let waitingUsers = Set(report.waiting.map(\.userId))
            for user in report.missingInStripe {
                console.write("missing in Stripe: \(user)" + (waitingUsers.contains(user) ? " (waiting in the outbox, which creates it)" : ""))
            }
            for user in report.missingLocally { console.write("missing locally:   \(user) (import from-stripe takes legacy balances over)") }
            for line in fixed { console.write(line) }
            if !report.waiting.isEmpty {
                // Work the mirror will do by itself, apart from drift nothing will heal.
                var table = TextTable(["waiting in the outbox", "pending since", "attempts", "next attempt", "last error"])
                let now = Date()
                for row in report.waiting {
                    let due = row.nextAttemptAt.timeIntervalSince(now)
                    table.add([
                        row.userId, Timestamps.timestamp(row.pendingSince), String(row.attempts),
                        Timestamps.timestamp(row.nextAttemptAt) + (due > 0 ? " (in \(Int(due.rounded(.up))) s)" : " (due now)"),
                        row.lastError ?? "-",
                    ])
                }
                console.write(table.render(bold: console.bold))
            }
            if report.onlyWaiting, let next = report.waiting.map(\.nextAttemptAt).min() {
                console.write(
                    "every difference waits in the Stripe outbox: the server's mirror sends it (next attempt \(Timestamps.timestamp(next))); "
                        + "run reconcile again after that, or --fix push now"
                )
            } else if !report.isClean {
                let real =
                    report.drifts.filter { !waitingUsers.contains($0.userId) }.count
                    + report.missingInStripe.filter { !waitingUsers.contains($0) }.count + report.missingLocally.count
                console.write("\(real) difference(s) nothing is about to heal: --fix push (ledger right) or --fix pull (Stripe right)")
            }
            console.write(
                "\(report.stripeCustomers) Stripe customers, \(report.localCustomers) local; \(report.drifts.count) drift(s), "
                    + "\(report.missingInStripe.count) missing in Stripe, \(report.missingLocally.count) missing locally, \(report.pendingOutbox) pending in the outbox"
            )
        }
        if !report.isClean { throw CheckFailed(message: "") }
    }
}
