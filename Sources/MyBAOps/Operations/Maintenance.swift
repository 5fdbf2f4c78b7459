import Crypto
import Foundation

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
    /// What only an SQLite file has (a file restore); PostgreSQL's tools do it there.
    case sqliteOnly(String, instead: String)

    public var code: String {
        switch self {
        case .exists: return "exists"
        case .notABackup: return "bad_backup"
        case .serverRunning: return "server_running"
        case .couldNotWrite: return "write_failed"
        case .sqliteOnly: return "not_on_postgres"
        }
    }

    public var description: String {
        switch self {
        case .exists(let path): return "\(path) exists; choose another name (a backup never overwrites a file)"
        case .notABackup(let path, let why): return "\(path) is not a usable MyBA backup: \(why); nothing was changed"
        case .serverRunning(let path):
            return "a myba-server is running on \(path); stop it first (restoring under a running server would lose what it writes)"
        case .couldNotWrite(let path, let why): return "could not write \(path): \(why); no file was left under that name"
        case .sqliteOnly(let what, let instead): return "\(what) works on an SQLite file; on PostgreSQL \(instead). Nothing was changed"
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
    /// `sqlite` or `postgres`.
    public var backend: String
    /// The file, or the PostgreSQL URL without its password.
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
    static var latestMigration: String { migrationNames.last ?? "" }

    /// Checks a backup file (integrity, MyBA's, its schema) and describes it.
    public static func inspectBackup(at path: String, source: String? = nil) throws -> BackupManifest {
        guard FileManager.default.fileExists(atPath: path) else { throw MaintenanceError.notABackup(path, why: "no such file") }
        let facts = try MaintenanceStore.backupFacts(at: path)
        guard facts.integrity == "ok" else { throw MaintenanceError.notABackup(path, why: "integrity check: \(facts.integrity.prefix(300))") }
        guard let version = facts.schemaVersion, migrationNames.contains(version) else {
            throw MaintenanceError.notABackup(path, why: "no MyBA schema this build knows (\(facts.schemaVersion ?? "none"))")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        return BackupManifest(
            createdAt: Timestamps.timestamp(Date()),
            source: source ?? path,
            schemaVersion: version,
            ledgerEntries: facts.entries,
            lastEntryId: facts.lastEntryId,
            bytes: data.count,
            sha256: SHA256.hash(data: data).lowercaseHex
        )
    }
}

extension Maintenance {
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
            try database.copyPages(to: partial, progress: progress)
            let manifest = try AppDatabase.inspectBackup(at: partial, source: database.path)
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

    /// `PRAGMA integrity_check`, foreign keys, `ledger verify`, and the inbox and generation
    /// invariants; empty when all is well.
    public func check(reservationDeadlineSeconds: Double) async throws -> [CheckProblem] {
        var problems = try await database.read { tx -> [CheckProblem] in
            let integrity = try tx.maintenance.integrityProblems()
            var problems = integrity.lines.map { CheckProblem(check: "integrity", detail: $0) }
            // Damage bad enough that the check itself cannot walk the file.
            if integrity.unreadable { return problems }
            for detail in try tx.maintenance.foreignKeyViolations() {
                problems.append(CheckProblem(check: "foreign_key", detail: detail))
            }
            // A purchase event marked processed must have posted (or found) its grant.
            for eventId in try tx.inbox.processedPurchasesWithoutEntry() {
                problems.append(CheckProblem(check: "webhook_without_entry", detail: "\(eventId) is processed but posted no purchase"))
            }
            for reservation in try tx.generations.staleReservations(before: Date().addingTimeInterval(-reservationDeadlineSeconds)) {
                problems.append(
                    CheckProblem(
                        check: "stale_reservation",
                        detail: "generation reserved since \(reservation.updatedAt ?? "?") (past its deadline; the server's sweep releases it)"
                    )
                )
            }
            return problems
        }
        guard !problems.contains(where: { $0.check == "integrity" }) else { return problems }
        for violation in try await database.ledger.verify().violations {
            problems.append(CheckProblem(check: "ledger", detail: "\(violation.kind.rawValue) \(violation.userId): \(violation.message)"))
        }
        return problems
    }

    /// The schema, sizes, row counts and oldest pending work. On PostgreSQL the size is the
    /// database's (`pg_database_size`) and there is no WAL file of MyBA's own.
    public func status() async throws -> DatabaseStatus {
        let path = self.database.path
        let onPostgres = database.postgres != nil
        let known = onPostgres ? PostgresMigrations.all.map(\.name) : AppDatabase.migrationNames
        let applied = try await database.read { tx in try tx.maintenance.appliedMigrations() }
        @Sendable func size(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
        return try await database.read { tx in
            DatabaseStatus(
                backend: onPostgres ? "postgres" : "sqlite",
                path: path,
                migrationsApplied: known.filter { applied.contains($0) },
                migrationsPending: known.filter { !applied.contains($0) },
                fileBytes: onPostgres ? try tx.maintenance.databaseBytes() : size(path),
                walBytes: onPostgres ? 0 : size(path + "-wal"),
                rows: try tx.maintenance.rowCounts(),
                oldestPendingWebhook: try tx.inbox.oldestPendingText(),
                oldestOutboxRow: try tx.outbox.oldestPendingSinceText(),
                oldestReservation: try tx.generations.oldestReservationText()
            )
        }
    }

    /// A PostgreSQL backup: `pg_dump --format=custom` of the database into a new file (written
    /// under a temporary name, renamed when `pg_dump` succeeded), with a manifest beside it. The
    /// ledger figures are read just before the dump; the dump is a snapshot at least as new.
    public func backupWithPgDump(to path: String, pgDump: String = "pg_dump") async throws -> BackupManifest {
        guard let postgres = database.postgres else { throw MaintenanceError.couldNotWrite(path, why: "not a PostgreSQL database") }
        let fileManager = FileManager.default
        guard !fileManager.fileExists(atPath: path) else { throw MaintenanceError.exists(path) }
        let facts = try await database.read { tx in
            let ledger = try tx.maintenance.ledgerEntryCountAndLastId()
            return (try tx.maintenance.schemaVersion(), ledger.count, ledger.lastId)
        }
        let partial = path + ".partial-\(getpid())"
        defer { try? fileManager.removeItem(atPath: partial) }
        let location = postgres.location
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            pgDump, "--format=custom", "--no-owner", "--file=\(partial)", "--host=\(location.host)", "--port=\(location.port)",
            "--username=\(location.username)", "--dbname=\(location.database)",
        ]
        var environment = ProcessInfo.processInfo.environment
        // The password travels in the environment, never on a command line `ps` shows.
        if let password = location.password { environment["PGPASSWORD"] = password }
        environment["PGSSLMODE"] = location.tls.libpqMode
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        do {
            try process.run()
        } catch {
            throw MaintenanceError.couldNotWrite(path, why: "could not run \(pgDump): \(error)")
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw MaintenanceError.couldNotWrite(path, why: "pg_dump failed: \(message.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300))")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: partial), options: .alwaysMapped)
        let manifest = BackupManifest(
            createdAt: Timestamps.timestamp(Date()),
            source: database.path,
            schemaVersion: facts.0 ?? "",
            ledgerEntries: facts.1,
            lastEntryId: facts.2,
            bytes: data.count,
            sha256: SHA256.hash(data: data).lowercaseHex
        )
        try fileManager.moveItem(atPath: partial, toPath: path)
        try JSONEncoder.pretty.encode(manifest).write(to: URL(fileURLWithPath: path + ".manifest.json"), options: .atomic)
        return manifest
    }
}

extension WebhookInbox {
    /// How many processed or ignored events received before `cutoff` still keep their body.
    public func prunable(before cutoff: Date) async throws -> Int {
        try await database.read { tx in try tx.inbox.prunableCount(before: cutoff) }
    }

    /// Drops the bodies and headers (emails, addresses) of processed and ignored events received
    /// before `cutoff`; their ids and outcomes stay, so a redelivery is still recognised. Failed
    /// and unprocessed events are kept whole. Audited with the count.
    public func prune(before cutoff: Date, by context: OperatorContext) async throws -> Int {
        try await database.write { tx in
            let pruned = try tx.inbox.prune(before: cutoff)
            try AuditLog.insert(
                context: context,
                userId: nil,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "pruned the bodies of \(pruned) webhook events received before \(Timestamps.timestamp(cutoff))",
                in: tx
            )
            return pruned
        }
    }
}

extension AppDatabase {
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
        try restored.writeAlone { tx in
            try AuditLog.insert(
                context: context,
                userId: nil,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "restored from \(backup); the file before is at \(aside)",
                in: tx
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

extension Maintenance {
    /// Erasure on request: the customer's email, the bodies and headers of webhook events naming
    /// them (their id or email), and the email in audit command lines go. The ledger's amounts,
    /// ids and the audit rows themselves stay, so balances still verify and what was done stays
    /// known; the Stripe customer is left to Stripe's own deletion. One transaction, audited.
    public func forgetCustomer(userId: String, dryRun: Bool, by context: OperatorContext) async throws -> ForgetReport {
        let work: @Sendable (StorageTransaction) throws -> ForgetReport = { tx in
            guard let customer = try tx.ledger.customer(userId: userId) else { throw LedgerError.unknownCustomer(userId: userId) }
            var needles = [userId]
            if let email = customer.email, !email.isEmpty { needles.append(email) }
            let bodies = try tx.inbox.countNaming(needles)
            let email = customer.email
            let auditLines = try email.map { try tx.audit.commandCount(containing: $0) } ?? 0
            let report = ForgetReport(userId: userId, emailRemoved: email != nil, webhookBodiesRemoved: bodies, auditCommandLinesScrubbed: auditLines)
            guard !dryRun else { return report }
            try tx.ledger.clearEmail(userId: userId)
            try tx.inbox.scrubNaming(needles)
            if let email { try tx.audit.scrubCommands(email) }
            try AuditLog.insert(
                context: OperatorContext(
                    operatorName: context.operatorName,
                    commandLine: email.map { context.commandLine.replacingOccurrences(of: $0, with: "[forgotten]") } ?? context.commandLine,
                    reason: context.reason
                ),
                userId: userId,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "forgot \(userId): email removed, \(bodies) webhook bodies removed, \(auditLines) audit command lines scrubbed",
                in: tx
            )
            return report
        }
        return dryRun ? try await database.read(work) : try await database.write(work)
    }
}
