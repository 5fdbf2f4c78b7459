import ArgumentParser
import MyBAOps

/// `customer forget USER`: erasure on request, the ledger's amounts kept.
struct CustomerForgetCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Erase a customer's personal data on request: email, webhook bodies naming them, the email in audit command lines.",
        discussion: "The ledger's amounts and ids stay (balances still verify); the Stripe customer is left to Stripe's own deletion."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The customer: user id, email or cus_… id.", valueName: "user"))
    var user: String

    @OptionGroup var mutation: MutationOptions

    func execute(in console: Console) async throws {
        let userId = try await console.userId(for: user)
        let database = try await console.database()
        let context = console.operatorContext(reason: mutation.reasonText)
        let plan = try await database.maintenance.forgetCustomer(userId: userId, dryRun: true, by: context)
        if !console.json {
            console.write(console.bold("plan: forget \(userId)"))
            var table = TextTable(["what", "removed"])
            table.add(["email", plan.emailRemoved ? "yes" : "none recorded"])
            table.add(["webhook bodies naming them", String(plan.webhookBodiesRemoved)])
            table.add(["audit command lines with the email", String(plan.auditCommandLinesScrubbed)])
            table.add(["ledger entries", "kept (amounts only)"])
            console.write(table.render(bold: console.bold))
        }
        if mutation.dryRun {
            if console.json { try console.writeJSON(plan) } else { console.write("dry run: nothing changed") }
            return
        }
        guard try console.approve("forget?", yes: mutation.yes) else { return }
        let report = try await database.maintenance.forgetCustomer(userId: userId, dryRun: false, by: context)
        if console.json { try console.writeJSON(report) } else { console.write(console.green("forgotten") + ": \(userId)") }
    }
}
