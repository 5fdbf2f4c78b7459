import ArgumentParser
import Foundation
import MyBAOps

/// `db backup --to PATH`: an online, consistent copy while the server writes.
struct DatabaseBackupCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the database while servers run (SQLite's online backup, or pg_dump on PostgreSQL), with a manifest beside it.",
        discussion:
            "Written under a temporary name and renamed only when complete and checked; never overwrites a file. On PostgreSQL it runs pg_dump --format=custom (restore with pg_restore) and says so."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Where the backup goes (a new file; PATH.manifest.json is written beside it).", valueName: "path"))
    var to: String

    func execute(in console: Console) async throws {
        let database = try await console.database()
        let manifest: BackupManifest
        let how: String
        if database.postgres != nil {
            manifest = try await database.maintenance.backupWithPgDump(to: to)
            how = " with pg_dump (custom format; restore with pg_restore)"
        } else {
            let showProgress = console.interactive && !console.json
            manifest = try database.maintenance.backup(to: to) { done, total in
                if showProgress && total > 0 { Console.writeProgress("backup: \(done * 100 / total) % (\(done)/\(total) pages)") }
            }
            if showProgress { Console.writeProgress(nil) }
            how = ""
        }
        if console.json {
            try console.writeJSON(manifest)
        } else {
            console.write(
                console.green("backed up") + "\(how) to \(to): \(manifest.ledgerEntries) ledger entries (last #\(manifest.lastEntryId)), "
                    + "\(manifest.bytes) bytes, schema \(manifest.schemaVersion), sha256 \(manifest.sha256.prefix(16))…"
            )
        }
    }
}
