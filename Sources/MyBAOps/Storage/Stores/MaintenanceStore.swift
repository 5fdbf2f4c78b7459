import Foundation
import GRDB

/// The database as a whole: integrity, foreign keys, the schema's version and row counts.
/// What `db check`, `db status` and backups read; no table of its own.
///
/// On PostgreSQL the server checks pages and enforces foreign keys itself (there is no
/// `integrity_check` to run), the migrations are those of `myba_migrations`, and row counts
/// are exact counts of MyBA's tables in the connection's schema.
struct MaintenanceStore {
    let sql: SQLConnection

    /// SQLite's connection, for the statements only SQLite has.
    private var db: Database {
        get throws { try StorageTransaction.sqlite(sql.sqlite, for: "an SQLite pragma") }
    }

    /// The lines of `PRAGMA integrity_check` that are not "ok"; with `unreadable`, the damage
    /// is bad enough that the check itself could not walk the file, and the one line says so.
    func integrityProblems() throws -> (lines: [String], unreadable: Bool) {
        if sql.isPostgres { return ([], false) }
        do {
            return (try String.fetchAll(db, sql: "PRAGMA integrity_check").filter { $0 != "ok" }, false)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB {
            return ([error.message ?? "database disk image is malformed"], true)
        }
    }

    /// Each row `PRAGMA foreign_key_check` reports, as `table row rowid → parent`.
    func foreignKeyViolations() throws -> [String] {
        if sql.isPostgres { return [] }
        return try Row.fetchAll(db, sql: "PRAGMA foreign_key_check").map { row in
            "\(row[0] as String? ?? "?") row \(row[1] as Int64? ?? 0) → \(row[2] as String? ?? "?")"
        }
    }

    /// The migrations applied to this file.
    func appliedMigrations() throws -> Set<String> {
        if sql.isPostgres { return Set(try sql.values("SELECT identifier FROM myba_migrations", as: String.self)) }
        return try AppDatabase.migrator.appliedIdentifiers(db)
    }

    /// How many ledger entries there are, and the newest one's id (0 when none).
    func ledgerEntryCountAndLastId() throws -> (count: Int, lastId: Int64) {
        (try sql.value("SELECT COUNT(*) FROM ledger_entries") ?? 0, try sql.value("SELECT MAX(id) FROM ledger_entries") ?? 0)
    }

    /// The database's size in bytes (PostgreSQL).
    func databaseBytes() throws -> Int {
        try sql.value("SELECT pg_database_size(current_database())") ?? 0
    }

    /// The number of rows of every table.
    func rowCounts() throws -> [String: Int] {
        var rows: [String: Int] = [:]
        let tables: [String] =
            sql.isPostgres
            ? try sql.values("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
            : try sql.values("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        for table in tables {
            rows[table] = try sql.value("SELECT COUNT(*) FROM \"\(table.replacingOccurrences(of: "\"", with: "\"\""))\"") ?? 0
        }
        return rows
    }

    /// The newest migration applied, in the migrator's order (identifiers of one day do not sort
    /// by when they shipped). One this code does not know (a newer build's) comes last.
    func schemaVersion() throws -> String? {
        if sql.isPostgres {
            let applied = try appliedMigrations()
            let known = PostgresMigrations.all.map(\.name)
            if let unknown = applied.subtracting(known).sorted().last { return unknown }
            return known.last { applied.contains($0) }
        }
        let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        let known = Set(AppDatabase.migrator.migrations)
        if let unknown = applied.last(where: { !known.contains($0) }) { return unknown }
        let appliedSet = Set(applied)
        return AppDatabase.migrator.migrations.last { appliedSet.contains($0) }
    }

    /// What a backup file holds, read without changing it: its integrity check, schema version
    /// (nil when it has no migrations), ledger entry count and last entry id.
    static func backupFacts(at path: String) throws -> (integrity: String, schemaVersion: String?, entries: Int, lastEntryId: Int64) {
        var configuration = Configuration()
        configuration.readonly = true
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw MaintenanceError.notABackup(path, why: "\(error)")
        }
        defer { try? queue.close() }
        do {
            return try queue.read { db in
                let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ")
                let version =
                    try db.tableExists("grdb_migrations")
                    ? try MaintenanceStore(sql: SQLConnection(sqlite: db, postgres: nil)).schemaVersion() : nil
                let ledger =
                    try db.tableExists("ledger_entries")
                    ? try MaintenanceStore(sql: SQLConnection(sqlite: db, postgres: nil)).ledgerEntryCountAndLastId() : (count: 0, lastId: 0)
                return (integrity, version, ledger.count, ledger.lastId)
            }
        } catch {
            throw MaintenanceError.notABackup(path, why: "\(error)")
        }
    }
}
