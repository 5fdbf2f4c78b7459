import ArgumentParser
import Foundation
import MyBAOps

/// Options of every command that changes data: a reason, a dry run, and `--yes` for scripts.
struct MutationOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Why (required; kept in the audit log).", valueName: "text"))
    var reason: String?

    @Flag(name: .long, help: "Print the plan and change nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Apply without asking (required when not on a terminal).")
    var yes = false

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("--reason is required: say why, it goes into the audit log")
        }
    }

    var reasonText: String { reason ?? "" }
}

extension Console {
    /// Prints `plan`, then decides: a dry run stops, `--yes` goes on, a terminal asks, and
    /// anything else refuses. Returns whether to apply.
    func confirm(_ plan: MutationPlan, options: MutationOptions, title: String) throws -> Bool {
        if json {
            // The plan goes into the final document; nothing is asked in JSON mode.
            if options.dryRun { try writeJSON(PlanDocument(plan, title: title, applied: false)) }
        } else {
            write(bold("plan: \(title)"))
            var table = TextTable(["field", "before", "after"])
            for field in ["tokens", "tokensUsed", "tokensPurchased", "tokensTransferred"] {
                let before = Self.value(plan.before, field)
                let after = Self.value(plan.after, field)
                table.add([field, before, before == after ? after : after + " *"])
            }
            write(table.render(bold: bold))
            for entry in plan.entries { write("  ledger entry: \(entry)") }
            for call in plan.stripeCalls { write("  Stripe call:  \(call)") }
        }
        if options.dryRun {
            if !json { write("dry run: nothing changed") }
            return false
        }
        return try approve("apply?", yes: options.yes)
    }

    static func value(_ balance: Balance, _ field: String) -> String {
        switch field {
        case "tokens": return String(balance.tokens)
        case "tokensUsed": return String(balance.tokensUsed)
        case "tokensPurchased": return String(balance.tokensPurchased)
        default: return String(balance.tokensTransferred)
        }
    }
}

/// A plan (and whether it was applied) as JSON.
struct PlanDocument: Encodable {
    var action: String
    var userId: String
    var before: BalanceFields
    var after: BalanceFields
    var entries: [String]
    var stripeCalls: [String]
    var applied: Bool

    init(_ plan: MutationPlan, title: String, applied: Bool) {
        action = title
        userId = plan.userId
        before = BalanceFields(plan.before)
        after = BalanceFields(plan.after)
        entries = plan.entries
        stripeCalls = plan.stripeCalls
        self.applied = applied
    }
}
