import Crypto
import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#endif

/// What a backup holds, written beside it (`<backup>.manifest.json`).
public struct BackupManifest: Codable, Equatable, Sendable {
    public var createdAt: String
    public var source: String
    /// The last migration applied in the copy.
    public var schemaVersion: String
    public var ledgerEntries: Int
    public var lastEntryId: Int64
    public var bytes: Int
    public var sha256: String
}

/// Why a maintenance command refused or failed.
public enum MaintenanceError: CodedError, Equatable {
    case exists(String)
    case notABackup(String, why: String)
    case serverRunning(String)
    case couldNotWrite(String, why: String)

    public var code: String {
        switch self {
        case .exists: return "exists"
        case .notABackup: return "bad_backup"
        case .serverRunning: return "server_running"
        case .couldNotWrite: return "write_failed"
        }
    }

    public var description: String {
        switch self {
        case .exists(let path): return "\(path) exists; choose another name (a backup never overwrites a file)"
        case .notABackup(let path, let why): return "\(path) is not a usable MyBA backup: \(why); nothing was changed"
        case .serverRunning(let path):
            return "a myba-server is running on \(path); stop it first (restoring under a running server would lose what it writes)"
        case .couldNotWrite(let path, let why): return "could not write \(path): \(why); no file was left under that name"
        }
    }
}

/// A running server holds a shared lock on `<database>.server` for its whole life, so that the
/// console can tell (a restore must not swap the file under it).
public final class ServerPresence: Sendable {
    private let fd: Int32

    /// Takes the shared lock; the server keeps the object until it exits.
    public init(databasePath: String) throws {
        fd = open(databasePath + ".server", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.lockFailed(path: databasePath + ".server", errno: errno) }
        guard flock(fd, LOCK_SH) == 0 else { throw StorageError.lockFailed(path: databasePath + ".server", errno: errno) }
    }

    deinit { close(fd) }

    /// True while some process holds the presence lock of `databasePath`.
    public static func isHeld(databasePath: String) -> Bool {
        let fd = open(databasePath + ".server", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }
}

/// One problem `db check` found.
public struct CheckProblem: Codable, Equatable, Sendable {
    public var check: String
    public var detail: String
}

/// What `db status` shows.
public struct DatabaseStatus: Codable, Equatable, Sendable {
    public var path: String
    public var migrationsApplied: [String]
    public var migrationsPending: [String]
    public var fileBytes: Int
    public var walBytes: Int
    public var rows: [String: Int]
    public var oldestPendingWebhook: String?
    public var oldestOutboxRow: String?
    public var oldestReservation: String?
}

extension AppDatabase {
    /// The last migration this build knows.
    static var latestMigration: String { migrator.migrations.last ?? "" }

    /// An online, consistent copy while servers write (SQLite's backup API, a step of pages at a
    /// time so writers wait only briefly), written under a temporary name, checked (integrity,
    /// MyBA's schema), then renamed with its manifest beside it. A failure (a full disk) leaves
    /// no file under `path`.
    public func backup(to path: String, progress: @escaping @Sendable (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> BackupManifest {
        let fileManager = FileManager.default
        guard !fileManager.fileExists(atPath: path) else { throw MaintenanceError.exists(path) }
        let partial = path + ".partial-\(getpid())"
        defer { try? fileManager.removeItem(atPath: partial) }
        do {
            let destination = try DatabaseQueue(path: partial)
            try writer.backup(to: destination, pagesPerStep: 256) { step in
                progress(step.completedPageCount, step.totalPageCount)
            }
            // The copy keeps the source's WAL mode: back to a single self-contained file.
            try destination.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = DELETE") }
            try destination.close()
            let manifest = try Self.inspectBackup(at: partial, source: self.path)
            try fileManager.moveItem(atPath: partial, toPath: path)
            let data = try JSONEncoder.pretty.encode(manifest)
            let manifestPath = path + ".manifest.json"
            try data.write(to: URL(fileURLWithPath: manifestPath + ".partial"), options: .atomic)
            try fileManager.moveItem(atPath: manifestPath + ".partial", toPath: manifestPath)
            return manifest
        } catch let error as MaintenanceError {
            throw error
        } catch {
            throw MaintenanceError.couldNotWrite(path, why: "\(error)")
        }
    }

    /// The newest migration applied, in the migrator's order (identifiers of one day do not sort
    /// by when they shipped). One this code does not know (a newer build's) comes last.
    static func schemaVersion(in db: Database) throws -> String? {
        let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        let known = Set(migrator.migrations)
        if let unknown = applied.last(where: { !known.contains($0) }) { return unknown }
        let appliedSet = Set(applied)
        return migrator.migrations.last { appliedSet.contains($0) }
    }

    /// Checks a backup file (integrity, MyBA's, its schema) and describes it.
    public static func inspectBackup(at path: String, source: String? = nil) throws -> BackupManifest {
        guard FileManager.default.fileExists(atPath: path) else { throw MaintenanceError.notABackup(path, why: "no such file") }
        var configuration = Configuration()
        configuration.readonly = true
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw MaintenanceError.notABackup(path, why: "\(error)")
        }
        defer { try? queue.close() }
        let facts: (String, String?, Int, Int64)
        do {
            facts = try queue.read { db in
                let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ")
                let version = try db.tableExists("grdb_migrations") ? try Self.schemaVersion(in: db) : nil
                let entries = try db.tableExists("ledger_entries") ? try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries") ?? 0 : 0
                let last = try db.tableExists("ledger_entries") ? try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM ledger_entries") ?? 0 : 0
                return (integrity, version, entries, last)
            }
        } catch {
            throw MaintenanceError.notABackup(path, why: "\(error)")
        }
        guard facts.0 == "ok" else { throw MaintenanceError.notABackup(path, why: "integrity check: \(facts.0.prefix(300))") }
        guard let version = facts.1, migrator.migrations.contains(version) else {
            throw MaintenanceError.notABackup(path, why: "no MyBA schema this build knows (\(facts.1 ?? "none"))")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        return BackupManifest(
            createdAt: Timestamps.timestamp(Date()),
            source: source ?? path,
            schemaVersion: version,
            ledgerEntries: facts.2,
            lastEntryId: facts.3,
            bytes: data.count,
            sha256: SHA256.hash(data: data).lowercaseHex
        )
    }

    /// `PRAGMA integrity_check`, foreign keys, `ledger verify`, and the inbox and generation
    /// invariants; empty when all is well.
    public func check(reservationDeadlineSeconds: Double) async throws -> [CheckProblem] {
        var problems = try await writer.read { db -> [CheckProblem] in
            var problems: [CheckProblem] = []
            do {
                for line in try String.fetchAll(db, sql: "PRAGMA integrity_check") where line != "ok" {
                    problems.append(CheckProblem(check: "integrity", detail: line))
                }
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB {
                // Damage bad enough that the check itself cannot walk the file.
                problems.append(CheckProblem(check: "integrity", detail: error.message ?? "database disk image is malformed"))
                return problems
            }
            for row in try Row.fetchAll(db, sql: "PRAGMA foreign_key_check") {
                problems.append(
                    CheckProblem(
                        check: "foreign_key",
                        detail: "\(row[0] as String? ?? "?") row \(row[1] as Int64? ?? 0) → \(row[2] as String? ?? "?")"
                    )
                )
            }
            // A purchase event marked processed must have posted (or found) its grant.
            for eventId in try String.fetchAll(
                db,
                sql: """
                    SELECT event_id FROM webhook_events e WHERE source = 'stripe' AND status = 'processed'
                      AND type IN ('checkout.session.completed', 'checkout.session.async_payment_succeeded')
                      AND NOT EXISTS (SELECT 1 FROM webhook_event_entries x WHERE x.source = e.source AND x.event_id = e.event_id)
                      AND outcome NOT LIKE '%already granted%'
                    """
            ) {
                problems.append(CheckProblem(check: "webhook_without_entry", detail: "\(eventId) is processed but posted no purchase"))
            }
            let cutoff = SQLTimestamp.string(Date().addingTimeInterval(-reservationDeadlineSeconds))
            for row in try Row.fetchAll(
                db,
                sql: "SELECT idempotency_key, updated_at FROM generations WHERE status = 'reserved' AND updated_at < ?",
                arguments: [cutoff]
            ) {
                problems.append(
                    CheckProblem(
                        check: "stale_reservation",
                        detail: "generation reserved since \(row[1] as String? ?? "?") (past its deadline; the server's sweep releases it)"
                    )
                )
            }
            return problems
        }
        guard !problems.contains(where: { $0.check == "integrity" }) else { return problems }
        for violation in try await verify().violations {
            problems.append(CheckProblem(check: "ledger", detail: "\(violation.kind.rawValue) \(violation.userId): \(violation.message)"))
        }
        return problems
    }

    /// The schema, sizes, row counts and oldest pending work.
    public func status() async throws -> DatabaseStatus {
        let path = self.path
        let applied = try await writer.read { db in try Self.migrator.appliedIdentifiers(db) }
        @Sendable func size(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
        return try await writer.read { db in
            var rows: [String: Int] = [:]
            for table in try String.fetchAll(
                db,
                sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ) {
                rows[table] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(table)\"") ?? 0
            }
            return DatabaseStatus(
                path: path,
                migrationsApplied: Self.migrator.migrations.filter { applied.contains($0) },
                migrationsPending: Self.migrator.migrations.filter { !applied.contains($0) },
                fileBytes: size(path),
                walBytes: size(path + "-wal"),
                rows: rows,
                oldestPendingWebhook: try String.fetchOne(
                    db,
                    sql: "SELECT MIN(received_at) FROM webhook_events WHERE status IN ('received', 'failed')"
                ),
                oldestOutboxRow: try String.fetchOne(db, sql: "SELECT MIN(pending_since) FROM stripe_outbox"),
                oldestReservation: try String.fetchOne(db, sql: "SELECT MIN(updated_at) FROM generations WHERE status = 'reserved'")
            )
        }
    }

    /// How many processed or ignored events received before `cutoff` still keep their body.
    public func prunableWebhooks(before cutoff: Date) async throws -> Int {
        try await writer.read { db in
            try Int.fetchOne(
                db,
                sql: "SELECT COUNT(*) FROM webhook_events WHERE status IN ('processed', 'ignored') AND received_at < ? AND body != ''",
                arguments: [SQLTimestamp.string(cutoff)]
            ) ?? 0
        }
    }

    /// Drops the bodies and headers (emails, addresses) of processed and ignored events received
    /// before `cutoff`; their ids and outcomes stay, so a redelivery is still recognised. Failed
    /// and unprocessed events are kept whole. Audited with the count.
    public func pruneWebhooks(before cutoff: Date, by context: OperatorContext) async throws -> Int {
        try await writeInGroupCommit { db in
            try db.execute(
                sql:
                    "UPDATE webhook_events SET body = '', headers = '{}' WHERE status IN ('processed', 'ignored') AND received_at < ? AND body != ''",
                arguments: [SQLTimestamp.string(cutoff)]
            )
            let pruned = db.changesCount
            try Self.insertAudit(
                context: context,
                userId: nil,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "pruned the bodies of \(pruned) webhook events received before \(Timestamps.timestamp(cutoff))",
                in: db
            )
            return pruned
        }
    }

    /// Replaces the database file at `path` with the backup at `backup` (checked first), keeping
    /// the current file aside; refused while a server runs on it. Returns where the old file went.
    public static func restore(_ backup: String, over path: String, by context: OperatorContext) throws -> String {
        _ = try inspectBackup(at: backup)
        guard !ServerPresence.isHeld(databasePath: path) else { throw MaintenanceError.serverRunning(path) }
        let fileManager = FileManager.default
        let aside = path + ".before-restore-" + Timestamps.timestamp(Date()).replacingOccurrences(of: ":", with: "-")
        let partial = path + ".restoring-\(getpid())"
        try? fileManager.removeItem(atPath: partial)
        try fileManager.copyItem(atPath: backup, toPath: partial)
        for suffix in ["", "-wal", "-shm"] where fileManager.fileExists(atPath: path + suffix) {
            try fileManager.moveItem(atPath: path + suffix, toPath: aside + suffix)
        }
        try fileManager.moveItem(atPath: partial, toPath: path)
        let restored = try openFile(at: path, options: .init(createIfMissing: false))
        try restored.writer.write { db in
            try insertAudit(
                context: context,
                userId: nil,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "restored from \(backup); the file before is at \(aside)",
                in: db
            )
        }
        return aside
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }
}

/// What erasing a customer's personal data changed.
public struct ForgetReport: Codable, Equatable, Sendable {
    public var userId: String
    public var emailRemoved: Bool
    public var webhookBodiesRemoved: Int
    public var auditCommandLinesScrubbed: Int
}

extension AppDatabase {
    /// Erasure on request: the customer's email, the bodies and headers of webhook events naming
    /// them (their id or email), and the email in audit command lines go. The ledger's amounts,
    /// ids and the audit rows themselves stay, so balances still verify and what was done stays
    /// known; the Stripe customer is left to Stripe's own deletion. One transaction, audited.
    public func forgetCustomer(userId: String, dryRun: Bool, by context: OperatorContext) async throws -> ForgetReport {
        let work: @Sendable (Database) throws -> ForgetReport = { db in
            guard let customer = try Customer.fetchOne(db, key: userId) else { throw LedgerError.unknownCustomer(userId: userId) }
            var needles = [userId]
            if let email = customer.email, !email.isEmpty { needles.append(email) }
            let matching = needles.map { _ in "instr(body, ?) > 0 OR instr(headers, ?) > 0" }.joined(separator: " OR ")
            let arguments = StatementArguments(needles.flatMap { [$0, $0] })
            let bodies =
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_events WHERE body != '' AND (\(matching))", arguments: arguments) ?? 0
            let email = customer.email
            let auditLines =
                try email.map {
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit_log WHERE instr(command, ?) > 0", arguments: [$0]) ?? 0
                } ?? 0
            let report = ForgetReport(userId: userId, emailRemoved: email != nil, webhookBodiesRemoved: bodies, auditCommandLinesScrubbed: auditLines)
            guard !dryRun else { return report }
            try db.execute(sql: "UPDATE customers SET email = NULL WHERE user_id = ?", arguments: [userId])
            try db.execute(sql: "UPDATE webhook_events SET body = '', headers = '{}' WHERE body != '' AND (\(matching))", arguments: arguments)
            if let email {
                try db.execute(
                    sql: "UPDATE audit_log SET command = replace(command, ?, '[forgotten]') WHERE instr(command, ?) > 0",
                    arguments: [email, email]
                )
            }
            try Self.insertAudit(
                context: OperatorContext(
                    operatorName: context.operatorName,
                    commandLine: email.map { context.commandLine.replacingOccurrences(of: $0, with: "[forgotten]") } ?? context.commandLine,
                    reason: context.reason
                ),
                userId: userId,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "forgot \(userId): email removed, \(bodies) webhook bodies removed, \(auditLines) audit command lines scrubbed",
                in: db
            )
            return report
        }
        return dryRun ? try await writer.read(work) : try await writeInGroupCommit(work)
    }
}
