import ArgumentParser
import Foundation
import MyBAOps

/// `db restore --from PATH`: replaces the database with a checked backup, the current file kept aside.
struct DatabaseRestoreCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Replace the database with a backup (checked first); the current file is kept aside.",
        discussion: "Refused while a myba-server runs on the database. Prints the plan, asks on a terminal, needs --yes off one."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The backup to restore (made by db backup).", valueName: "path"))
    var from: String

    @OptionGroup var mutation: MutationOptions

    func execute(in console: Console) async throws {
        guard !console.isPostgres else {
            throw MaintenanceError.sqliteOnly(
                "db restore",
                instead: "restore a db backup (pg_dump) with pg_restore --clean --dbname=… while the servers are stopped (README, Several servers)"
            )
        }
        let backup = try AppDatabase.inspectBackup(at: from)
        let path = console.databasePath
        guard !ServerPresence.isHeld(databasePath: path) else { throw MaintenanceError.serverRunning(path) }
        let current = FileManager.default.fileExists(atPath: path) ? try await console.database().maintenance.status().rows["ledger_entries"] : nil
        if !console.json {
            console.write(console.bold("plan: restore \(path) from \(from)"))
            var table = TextTable(["", "ledger entries", "schema"])
            table.add(["now", current.map(String.init) ?? "(no file)", "-"])
            table.add(["backup", String(backup.ledgerEntries), backup.schemaVersion])
            console.write(table.render(bold: console.bold))
        }
        if mutation.dryRun {
            if console.json { try console.writeJSON(backup) } else { console.write("dry run: nothing changed") }
            return
        }
        guard try console.approve("restore?", yes: mutation.yes) else { return }
        console.closeDatabase()
        let aside = try AppDatabase.restore(from, over: path, by: console.operatorContext(reason: mutation.reasonText))
        if console.json {
            try console.writeJSON(["restored": path, "from": from, "previousFile": aside])
        } else {
            console.write(console.green("restored") + " \(path) from \(from); the file before is at \(aside)")
        }
    }
}
