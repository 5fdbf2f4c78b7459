import ArgumentParser
import MyBAOps

/// `ledger show <user>`: a customer's entries, newest first.
struct LedgerShowCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a customer's ledger entries, newest first.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The customer: user id, email or cus_… id.", valueName: "user"))
    var user: String

    @Option(help: "How many entries (1–100000).")
    var limit = 50

    func validate() throws {
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 100000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        let userId = try await console.userId(for: user)
        let entries = try await console.database().ledger.entries(userId: userId, limit: limit)
        if console.json {
            try console.writeJSON(entries.map(EntryDocument.init))
            return
        }
        var table = TextTable(["id", "created", "kind", "delta", "actor", "reference", "key", "request", "reason"])
        for entry in entries {
            table.add([
                String(entry.id ?? 0), Timestamps.timestamp(entry.createdAt), entry.kind.rawValue,
                entry.delta > 0 ? "+\(entry.delta)" : String(entry.delta), entry.actor, entry.reference ?? "-",
                entry.idempotencyKey, entry.requestId ?? "-", (entry.reason ?? "-") + (entry.shortfall > 0 ? " (shortfall \(entry.shortfall))" : ""),
            ])
        }
        console.write(table.render(bold: console.bold))
    }
}
