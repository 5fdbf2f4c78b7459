import ArgumentParser
import MyBAOps

/// `db status`: migrations, sizes, row counts and the oldest pending work.
struct DatabaseStatusCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the schema (migrations applied and pending), file sizes, row counts and the oldest pending work."
    )

    @OptionGroup var global: GlobalOptions

    func execute(in console: Console) async throws {
        let status = try await console.database().maintenance.status()
        if console.json {
            try console.writeJSON(status)
            return
        }
        var table = TextTable(["field", "value"])
        if status.backend == "postgres" {
            table.add(["database", "PostgreSQL \(status.path) (\(status.fileBytes) bytes)"])
        } else {
            table.add(["file", "\(status.path) (\(status.fileBytes) bytes, WAL \(status.walBytes) bytes)"])
        }
        table.add(["schema", "\(status.migrationsApplied.last ?? "none") (\(status.migrationsApplied.count) migrations)"])
        table.add(["pending migrations", status.migrationsPending.isEmpty ? "none" : status.migrationsPending.joined(separator: ", ")])
        table.add(["oldest pending webhook", status.oldestPendingWebhook ?? "-"])
        table.add(["oldest outbox row", status.oldestOutboxRow ?? "-"])
        table.add(["oldest reservation", status.oldestReservation ?? "-"])
        for (name, count) in status.rows.sorted(by: { $0.key < $1.key }) { table.add(["rows \(name)", String(count)]) }
        console.write(table.render(bold: console.bold))
    }
}
