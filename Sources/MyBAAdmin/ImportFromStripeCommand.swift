import ArgumentParser
import Foundation
import MyBAOps

struct ImportFromStripeCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "from-stripe",
        abstract: "Create customers and import entries from Stripe metadata (user_id or clerk_user_id); running twice changes nothing."
    )

    @OptionGroup var global: GlobalOptions

    @OptionGroup var mutation: MutationOptions

    func execute(in console: Console) async throws {
        let database = try await console.database()
        let stripe = try console.stripeClient()
        let customers = try await stripe.allCustomers().filter { $0.userId != nil }
        let context = console.operatorContext(reason: mutation.reasonText)
        var outcomes: [ImportOutcome] = []
        if mutation.dryRun || !mutation.yes {
            // The plan: each customer's outcome, computed and changing nothing.
            for customer in customers { outcomes.append(try await database.stripeCustomers.importLegacy(customer, dryRun: true, context: context)) }
            if !mutation.dryRun && !console.json {
                var table = TextTable(["user", "stripe customer", "tokens", "would"])
                for outcome in outcomes {
                    table.add([outcome.userId, outcome.stripeCustomerId, outcome.tokens.map(String.init) ?? "-", outcome.result])
                }
                console.write(console.bold("plan: import \(customers.count) Stripe customer(s) carrying a user id"))
                console.write(table.render(bold: console.bold))
            }
        }
        if !mutation.dryRun {
            guard try console.approve("import?", yes: mutation.yes) else { return }
            outcomes = []
            for customer in customers { outcomes.append(try await database.stripeCustomers.importLegacy(customer, dryRun: false, context: context)) }
        }
        let dryRun = mutation.dryRun
        if console.json {
            try console.writeJSON(outcomes)
            return
        }
        var table = TextTable(["user", "stripe customer", "tokens", "result"])
        for outcome in outcomes { table.add([outcome.userId, outcome.stripeCustomerId, outcome.tokens.map(String.init) ?? "-", outcome.result]) }
        console.write(table.render(bold: console.bold))
        let merged = outcomes.filter { $0.result == "merged" || $0.result.hasPrefix("would merge") }.count
        let imported = outcomes.filter { $0.result == "imported" || $0.result == "would import" }.count + merged
        console.write(
            "\(dryRun ? "dry run: " : "")\(imported) imported (\(merged) merged into accounts opened meanwhile), \(outcomes.count - imported) not imported"
        )
    }
}
