import ArgumentParser
import Foundation
import MyBAOps

/// `reconcile`: the ledger's projection against every Stripe customer's metadata.
struct ReconcileCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Compare the ledger with Stripe customer metadata; exit 3 while drift remains.",
        discussion: """
            Lists every Stripe customer through the paginated API. --fix push writes local values to Stripe;
            --fix pull takes Stripe's tokens into the ledger as audited adjust entries (counters cannot be pulled).
            """)

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

    struct Document: Encodable {
        var report: ReconcileReport
        var fixed: [String]
    }

    func execute(in console: Console) async throws {
        let database = try console.database()
        let stripe = try console.stripeClient()
        let userId = try await user.asyncMap { try await console.userId(for: $0) }
        let showProgress = console.interactive && !console.json
        let customers = try await stripe.allCustomers { count in
            if showProgress { Console.writeError("\rlisted \(count) Stripe customers…", newline: false) }
        }
        if showProgress { Console.writeError("") }
        var report = try await database.reconcile(against: customers, onlyUser: userId)
        var fixed: [String] = []
        if let fix, !report.drifts.isEmpty {
            let users = Array(Set(report.drifts.map(\.userId))).sorted()
            if !dryRun, try !console.approve("fix \(users.count) customer(s) by \(fix.rawValue)?", yes: yes) {
                throw ConsoleFailure(code: "not_confirmed", description: "not applied")
            }
            switch fix {
            case .push:
                let mirror = StripeMirror(database: database, stripe: stripe)
                for user in users {
                    if !dryRun { try await mirror.pushNow(userId: user) }
                    fixed.append("\(dryRun ? "would push" : "pushed") \(user)")
                }
            case .pull:
                for drift in report.drifts where drift.key == "tokens" {
                    guard let remote = drift.stripe.flatMap(Int.init), let local = drift.local.flatMap(Int.init), remote >= 0 else {
                        fixed.append("skipped \(drift.userId): Stripe tokens \(drift.stripe ?? "missing") is not a count")
                        continue
                    }
                    let posting = LedgerPosting(
                        userId: drift.userId, kind: .adjust, delta: remote - local,
                        idempotencyKey: "reconcile-pull:\(drift.userId):\(local):\(remote):\(Int(Date().timeIntervalSince1970))",
                        reference: drift.stripeCustomerId, actor: "operator:\(console.operatorName)", reason: "reconcile --fix pull")
                    if !dryRun {
                        _ = try await database.postAsOperator(posting, by: console.operatorContext(reason: "reconcile --fix pull"))
                    }
                    fixed.append("\(dryRun ? "would adjust" : "adjusted") \(drift.userId) tokens \(local) → \(remote)")
                }
                for drift in report.drifts where drift.key != "tokens" {
                    fixed.append("not pulled \(drift.userId) \(drift.key): counters and dates follow the ledger; use --fix push")
                }
            }
            if !dryRun { report = try await database.reconcile(against: try await stripe.allCustomers(), onlyUser: userId) }
        }
        if console.json {
            try console.writeJSON(Document(report: report, fixed: fixed))
        } else {
            if !report.drifts.isEmpty {
                var table = TextTable(["user", "stripe customer", "key", "local", "stripe", "pending"])
                for drift in report.drifts {
                    table.add([drift.userId, drift.stripeCustomerId ?? "-", drift.key, drift.local ?? "(none)", drift.stripe ?? "(none)", drift.pendingInOutbox ? "yes" : "-"])
                }
                console.write(table.render(bold: console.bold))
            }
            for user in report.missingInStripe { console.write("missing in Stripe: \(user)") }
            for user in report.missingLocally { console.write("missing locally:   \(user) (import from-stripe takes legacy balances over)") }
            for line in fixed { console.write(line) }
            console.write("\(report.stripeCustomers) Stripe customers, \(report.localCustomers) local; \(report.drifts.count) drift(s), "
                + "\(report.missingInStripe.count) missing in Stripe, \(report.missingLocally.count) missing locally, \(report.pendingOutbox) pending in the outbox")
        }
        if !report.isClean { throw CheckFailed(message: "") }
    }
}

/// `import from-stripe`: take legacy balances over from Stripe metadata.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Take legacy balances over.",
        subcommands: [ImportFromStripeCommand.self])
}

struct ImportFromStripeCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "from-stripe",
        abstract: "Create customers and import entries from Stripe metadata (user_id or clerk_user_id); running twice changes nothing.")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Say what would be imported and change nothing.")
    var dryRun = false

    @Flag(help: "Import without asking (required when not on a terminal).")
    var yes = false

    func execute(in console: Console) async throws {
        let database = try console.database()
        let stripe = try console.stripeClient()
        let customers = try await stripe.allCustomers().filter { $0.userId != nil }
        if !dryRun, try !console.approve("import \(customers.count) Stripe customer(s) carrying a user id?", yes: yes) {
            throw ConsoleFailure(code: "not_confirmed", description: "not applied")
        }
        var outcomes: [ImportOutcome] = []
        for customer in customers {
            outcomes.append(try await database.importLegacyCustomer(customer, dryRun: dryRun, context: console.operatorContext(reason: "import from Stripe metadata")))
        }
        if console.json {
            try console.writeJSON(outcomes)
            return
        }
        var table = TextTable(["user", "stripe customer", "tokens", "result"])
        for outcome in outcomes { table.add([outcome.userId, outcome.stripeCustomerId, outcome.tokens.map(String.init) ?? "-", outcome.result]) }
        console.write(table.render(bold: console.bold))
        let imported = outcomes.filter { $0.result == "imported" }.count
        console.write("\(dryRun ? "dry run: " : "")\(imported) imported, \(outcomes.count - imported) not imported")
    }
}
