import ArgumentParser
import MyBAOps

/// `plans show`: the catalog in force, and with `--history` the versions before it.
struct PlansShowCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show the plan catalog in force (its version, where it came from) and, with --history, earlier versions."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Also list this many installed versions, newest first.", valueName: "n"))
    var history: Int?

    func validate() throws {
        if let history, !(1...1000).contains(history) { throw ValidationError("--history must be between 1 and 1000") }
    }

    struct Document: Encodable {
        var current: InstalledPlans
        var history: [InstalledPlans]?
    }

    func execute(in console: Console) async throws {
        let database = try await console.database()
        let current = try await database.plans.installed()
        var earlier: [InstalledPlans]?
        if let history { earlier = try await database.plans.history(limit: history) }
        if console.json {
            try console.writeJSON(Document(current: current, history: earlier))
            return
        }
        console.write(console.bold("plans \(current.label)") + (current.installedBy.map { " by \($0)" } ?? ""))
        console.write(Self.table(current.catalog).render(bold: console.bold))
        console.write("first purchase: \(current.catalog.firstPurchaseDiscountPercent) % off")
        if let earlier {
            var table = TextTable(["version", "source", "installed", "by", "plans"])
            for version in earlier {
                table.add([
                    String(version.version), version.source, version.installedAt.map(Timestamps.timestamp) ?? "-", version.installedBy ?? "-",
                    version.catalog.plans.map { "\($0.id) \($0.tokens)" }.joined(separator: ", "),
                ])
            }
            console.write(table.render(bold: console.bold))
        }
    }

    static func table(_ catalog: PlanCatalog) -> TextTable {
        var table = TextTable(["plan", "name", "tokens", "price", "first purchase"])
        for plan in catalog.plans {
            table.add([
                plan.id, plan.name, String(plan.tokens), money(plan.amount, plan.currency),
                money(catalog.firstPurchaseAmount(of: plan), plan.currency),
            ])
        }
        return table
    }

    static func money(_ minor: Int, _ currency: String) -> String {
        "\(minor / 100).\(minor % 100 < 10 ? "0" : "")\(minor % 100) \(currency.uppercased())"
    }
}
