import ArgumentParser
import Foundation
import MyBAOps

/// `plans set --from FILE`: installs a new catalog for the server and every replay at once.
struct PlansSetCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Install a plan catalog from a JSON file ({\"plans\":[…],\"firstPurchaseDiscountPercent\":N}) as the next version.",
        discussion: """
            The running server sells the new plans from its next checkout, and its webhook retries and
            every replay decide by them: no restart. Sessions already opened keep their token count.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The catalog file, in the format of MYBA_PLANS_FILE.", valueName: "path"))
    var from: String

    @OptionGroup var mutation: MutationOptions

    struct Document: Encodable {
        var before: InstalledPlans
        var after: PlanCatalog
        var installed: InstalledPlans?
    }

    func execute(in console: Console) async throws {
        let catalog: PlanCatalog
        do {
            catalog = try PlanCatalog.load(contentsOf: from)
        } catch let error as PlanCatalogError {
            throw ConsoleFailure(code: "invalid_plans", description: TerminalText.escape(error.description))
        }
        let database = try await console.database()
        let current = try await database.plans.installed()
        if catalog == current.catalog {
            throw ConsoleFailure(code: "no_change", description: "\(from) is the catalog in force (\(current.label)); nothing to install")
        }
        if !console.json {
            console.write(console.bold("plan: replace plans \(current.label) with \(TerminalText.escape(from)) as version \(current.version + 1)"))
            var table = TextTable(["plan", "before", "after"])
            let ids = current.catalog.plans.map(\.id) + catalog.plans.map(\.id).filter { id in !current.catalog.plans.contains { $0.id == id } }
            for id in ids {
                let before = current.catalog.plan(id: id).map(Self.describe) ?? "-"
                let after = catalog.plan(id: id).map(Self.describe) ?? "- (no longer sold)"
                table.add([id, before, before == after ? after : after + " *"])
            }
            let discountBefore = "\(current.catalog.firstPurchaseDiscountPercent) %"
            let discountAfter = "\(catalog.firstPurchaseDiscountPercent) %"
            table.add(["first purchase", discountBefore, discountBefore == discountAfter ? discountAfter : discountAfter + " *"])
            console.write(table.render(bold: console.bold))
        }
        if mutation.dryRun {
            if console.json { try console.writeJSON(Document(before: current, after: catalog)) } else { console.write("dry run: nothing changed") }
            return
        }
        guard try console.approve("install these plans?", yes: mutation.yes) else { return }
        let installed = try await database.plans.install(catalog, by: console.operatorContext(reason: mutation.reasonText))
        if console.json {
            try console.writeJSON(Document(before: current, after: catalog, installed: installed))
        } else {
            console.write(console.green("installed") + " plans \(installed.label)")
        }
    }

    static func describe(_ plan: Plan) -> String {
        "\(plan.name): \(plan.tokens) tokens for \(PlansShowCommand.money(plan.amount, plan.currency))"
    }
}
