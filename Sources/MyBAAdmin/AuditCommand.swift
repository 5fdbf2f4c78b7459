import ArgumentParser
import MyBAOps

/// `audit`: what operators changed, newest first.
struct AuditCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Show the operator audit log, newest first.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "How many rows (1–100000).")
    var limit = 50

    @Option(help: ArgumentHelp("Only rows about this customer.", valueName: "user"))
    var user: String?

    @Option(name: .customLong("operator"), help: ArgumentHelp("Only rows by this operator.", valueName: "name"))
    var operatorName: String?

    func validate() throws {
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 100000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        let userId = try await user.asyncMap { try await console.userId(for: $0) }
        let records = try await console.database().audit.records(limit: limit, userId: userId, operatorName: operatorName)
        if console.json {
            try console.writeJSON(records)
            return
        }
        var table = TextTable(["id", "at", "operator", "user", "entries", "outcome", "reason", "command"])
        for record in records {
            table.add([
                String(record.id), Timestamps.timestamp(record.at), record.operatorName, record.userId ?? "-",
                record.entryIds.map(String.init).joined(separator: ",").nilIfEmptyDash, record.outcome, record.reason ?? "-", record.command,
            ])
        }
        console.write(table.render(bold: console.bold))
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}

extension String {
    var nilIfEmptyDash: String { isEmpty ? "-" : self }
}
