import ArgumentParser
import Foundation
import MyBAOps

/// `db copy --from SQLITE --to postgres://…`: moves a deployment from its SQLite file to an
/// empty PostgreSQL database, checked.
struct DatabaseCopyCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy an SQLite database into an empty PostgreSQL database, in one transaction, and compare the two.",
        discussion: """
            Refuses a target holding any row. Reads one snapshot of the file, writes every table in one PostgreSQL \
            transaction that commits only if the copy's ledger entry count, last entry id and every balance equal the \
            snapshot's, then runs ledger verify on both. Stop the servers first (or accept that what they write after \
            the snapshot stays behind); the README's SQLite-to-PostgreSQL move lists the steps. Give the password in \
            PGPASSWORD, not in the URL.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The SQLite file to copy (the servers' MYBA_DATABASE until now).", valueName: "path"))
    var from: String

    @Option(help: ArgumentHelp("The empty PostgreSQL database: postgres://user@host:port/database[?sslmode=…].", valueName: "url"))
    var to: String

    @OptionGroup var mutation: MutationOptions

    func validate() throws {
        guard case .sqlite = try DatabaseLocation.parse(from) else { throw ValidationError("--from must be an SQLite file, not a URL") }
        guard case .postgres = try DatabaseLocation.parse(to) else { throw ValidationError("--to must be a postgres:// or postgresql:// URL") }
    }

    func execute(in console: Console) async throws {
        let source = try AppDatabase.openFile(at: from, options: .init(busyTimeout: console.settings.busyTimeoutSeconds, createIfMissing: false))
        let target = try await AppDatabase.open(to)
        defer { Task { await target.close() } }
        let before = try await source.maintenance.status()
        let targetRows = try await target.maintenance.status().rows.filter { $0.key != "myba_migrations" && $0.value > 0 }
        if !console.json {
            console.write(console.bold("plan: copy \(source.path) into \(target.path)"))
            var table = TextTable(["table", "rows to copy"])
            for (name, count) in before.rows.sorted(by: { $0.key < $1.key }) where name != "grdb_migrations" { table.add([name, String(count)]) }
            console.write(table.render(bold: console.bold))
            console.write(
                targetRows.isEmpty ? "target: empty" : console.red("target holds rows: \(targetRows.keys.sorted().joined(separator: ", "))")
            )
        }
        if mutation.dryRun {
            if console.json {
                try console.writeJSON(["source": before.rows, "targetRows": targetRows])
            } else {
                console.write("dry run: nothing changed")
            }
            return
        }
        guard try console.approve("copy?", yes: mutation.yes) else { return }
        let report = try await source.copy(to: target, by: console.operatorContext(reason: mutation.reasonText))
        if console.json {
            try console.writeJSON(report)
        } else {
            console.write(
                console.green("copied")
                    + " \(report.rows.values.reduce(0, +)) rows into \(report.target): \(report.targetFigures.entries) ledger entries "
                    + "(last #\(report.targetFigures.lastEntryId)), \(report.targetFigures.balances.count) balances, "
                    + "\(report.targetFigures.tokensOutstanding) tokens outstanding, all equal to the source's snapshot"
            )
            console.write(
                report.targetViolations.isEmpty
                    ? "ledger verify on the copy: clean" : console.red("ledger verify on the copy: \(report.targetViolations.count) violation(s)")
            )
            console.write(
                report.sourceViolations.isEmpty
                    ? "ledger verify on the source: clean" : console.red("ledger verify on the source: \(report.sourceViolations.count) violation(s)")
            )
        }
        if !report.targetViolations.isEmpty || !report.sourceViolations.isEmpty {
            throw CheckFailed(message: "ledger verify found violations after the copy")
        }
    }
}
