import Foundation
import GRDB
import Logging
import PostgresNIO
import Synchronization

/// The MyBA database: every read and write of the ledger goes through this type.
///
/// It wraps an injected `DatabaseWriter` so production uses a `DatabasePool` on a file shared by
/// the server and the console, while tests may use a temporary file or an in-memory queue.
public struct AppDatabase: Sendable {
    /// The database behind: an SQLite file (GRDB's writer, storage's own, and the group commit
    /// this process's writes share), or PostgreSQL. Everything else goes through `read`, `write`
    /// and the stores of `StorageTransaction`, the one seam both backends fill.
    private let engine: Engine
    /// Users known to have an account (see `openAccountOnFirstRequest`).
    let knownAccounts = KnownAccounts()

    private enum Engine: Sendable {
        case sqlite(writer: any DatabaseWriter, groupCommit: GroupCommitQueue)
        case postgres(PostgresEngine)
    }

    /// Wraps `writer` and brings its schema up to date.
    public init(_ writer: any DatabaseWriter) throws {
        engine = .sqlite(writer: writer, groupCommit: GroupCommitQueue(writer: writer))
        try Self.migrator.migrate(writer)
    }

    private init(postgres: PostgresEngine) {
        engine = .postgres(postgres)
    }

    /// The database on PostgreSQL, its schema brought up to date (once, however many servers
    /// start together).
    public static func open(postgres: PostgresEngine) async throws -> AppDatabase {
        try await postgres.migrate()
        return AppDatabase(postgres: postgres)
    }

    /// Opens what `location` (`MYBA_DATABASE`, the console's `--db`) names: a `postgres://`
    /// URL opens PostgreSQL (the password from the URL or `PGPASSWORD` in `environment`), any
    /// other text the SQLite file at that path, with `options`.
    public static func open(
        _ location: String,
        options: FileOptions = .init(),
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "myba.database")
    ) async throws -> AppDatabase {
        switch try DatabaseLocation.parse(location, environment: environment) {
        case .sqlite(let path):
            return try openFile(at: path, options: options)
        case .postgres(let postgres):
            let engine = PostgresEngine(location: postgres, logger: logger)
            do {
                return try await open(postgres: engine)
            } catch {
                await engine.shutdown()
                throw error
            }
        }
    }

    /// PostgreSQL's engine, nil on SQLite.
    public var postgres: PostgresEngine? {
        guard case .postgres(let engine) = engine else { return nil }
        return engine
    }

    /// Closes PostgreSQL's connections (nothing to do for SQLite, whose pool closes with it).
    public func close() async {
        await postgres?.shutdown()
    }

    /// The database's path, or a PostgreSQL URL without its password.
    public var path: String {
        switch engine {
        case .sqlite(let writer, _): return writer.path
        case .postgres(let postgres): return postgres.location.description
        }
    }

    /// The raw connection, for tests that inspect or damage rows on purpose (SQLite only).
    var writerForTests: any DatabaseWriter {
        guard case .sqlite(let writer, _) = engine else { preconditionFailure("writerForTests on PostgreSQL") }
        return writer
    }

    /// The group commit of this process's writes (SQLite only; its tests read its queue).
    var groupCommit: GroupCommitQueue {
        guard case .sqlite(_, let groupCommit) = engine else { preconditionFailure("groupCommit on PostgreSQL") }
        return groupCommit
    }

    /// A raw write in the group commit, for tests of the group commit itself and for tests
    /// that change rows in ways no store offers.
    func writeRawForTests<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await groupCommit.write(body)
    }

    /// SQLite's writer, for what only SQLite does; on PostgreSQL an error naming `what`.
    private func sqliteWriter(_ what: String) throws -> any DatabaseWriter {
        guard case .sqlite(let writer, _) = engine else { throw StorageError.notOnPostgres(concern: what) }
        return writer
    }
}

// MARK: - Opening files

extension AppDatabase {
    /// Options for opening a database file.
    public struct FileOptions: Sendable {
        /// How long a writer waits for another connection's lock before failing with `SQLITE_BUSY`.
        public var busyTimeout: TimeInterval
        /// Create the file (and its directory) when missing. The console opens with `false` so a
        /// mistyped `--db` fails instead of silently creating an empty ledger.
        public var createIfMissing: Bool
        /// How long opening waits for the lock beside the file (another process opening or
        /// migrating it) before failing with the holder's pid.
        public var lockTimeout: Duration

        public init(busyTimeout: TimeInterval = 5, createIfMissing: Bool = true, lockTimeout: Duration = .seconds(30)) {
            self.busyTimeout = busyTimeout
            self.createIfMissing = createIfMissing
            self.lockTimeout = lockTimeout
        }
    }

    /// Opens (creating when allowed) the SQLite file at `path` as a WAL-mode `DatabasePool` and
    /// migrates it. Safe to call from several processes at once.
    public static func openFile(at path: String, options: FileOptions = .init()) throws -> AppDatabase {
        // A PostgreSQL URL must not become a file named `postgres:`.
        if case .postgres(let location) = try DatabaseLocation.parse(path, environment: [:]) {
            throw StorageError.notOnPostgres(concern: "Opening \(location) as a file (use AppDatabase.open)")
        }
        let fileManager = FileManager.default
        let url = URL(fileURLWithPath: path)
        if !fileManager.fileExists(atPath: url.path) {
            guard options.createIfMissing else { throw StorageError.databaseMissing(path: url.path) }
            try fileManager.createDirectory(
                at: url.deletingLastPathComponent(),
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
            // The ledger is customers' data: the owner's only. SQLite gives the WAL and shared-
            // memory files the database file's mode.
            guard fileManager.createFile(atPath: url.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw StorageError.lockFailed(path: url.path, errno: errno)
            }
        }
        // Two processes migrating a brand-new file at the same moment can both try to create the
        // tables; an exclusive lock beside the file serialises opening and migrating.
        let lock = try FileLock(path: url.path + ".lock", timeout: options.lockTimeout)
        return try lock.withExclusiveLock {
            try checkIsMyBAFile(at: url.path, busyTimeout: options.busyTimeout)
            let pool = try DatabasePool(path: url.path, configuration: makeConfiguration(busyTimeout: options.busyTimeout))
            // GRDB switches its writer connection to synchronous=NORMAL when it enables WAL,
            // after `prepareDatabase` ran: a committed entry could then vanish on power loss.
            // Group commit puts each write in a savepoint, and SQLite keeps the pages a savepoint
            // may have to restore in a sub-journal that spills to a temporary file past 64 KiB:
            // a file created, written and deleted per batch. The writer keeps it in memory.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                try db.execute(sql: "PRAGMA temp_store = MEMORY")
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 10000")
            }
            return try AppDatabase(pool)
        }
    }

    /// `PRAGMA application_id` of MyBA's files: "MyBA" in ASCII.
    public static let applicationId: Int32 = 0x4D79_4241
    static let firstMigration = "2026-11-25 customers, ledger entries, balances"

    /// Refuses, without changing it, an existing file that is not MyBA's: a mistyped `--db` or
    /// `MYBA_DATABASE` must not add MyBA's tables to another application's database, switch it
    /// to WAL, and report an empty ledger. MyBA's files carry its application id (or, made before
    /// it was set, its first migration); an empty file is new.
    static func checkIsMyBAFile(at path: String, busyTimeout: TimeInterval) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size > 0 else { return }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(busyTimeout)
        let found: (applicationId: Int32, tables: Int, migrated: Bool)
        do {
            found = try DatabaseQueue(path: path, configuration: configuration).read { db in
                let tables = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'") ?? 0
                let migrated =
                    try db.tableExists("grdb_migrations")
                    && (try Bool.fetchOne(db, sql: "SELECT 1 FROM grdb_migrations WHERE identifier = ?", arguments: [firstMigration]) ?? false)
                return (Int32(truncatingIfNeeded: try Int.fetchOne(db, sql: "PRAGMA application_id") ?? 0), tables, migrated)
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            throw StorageError.notMyBADatabase(path: path, detail: "it is not an SQLite database")
        }
        if found.applicationId == applicationId || found.migrated || (found.tables == 0 && found.applicationId == 0) { return }
        throw StorageError.notMyBADatabase(
            path: path,
            detail: "application id \(found.applicationId), \(found.tables) table(s) and none of MyBA's migrations"
        )
    }

    /// The connection configuration shared by every MyBA process.
    public static func makeConfiguration(busyTimeout: TimeInterval) -> Configuration {
        var config = Configuration()
        // SQLite's own timeout handler sleeps up to 100 ms between tries. Against a writer that
        // commits back to back (the server under load) a process waiting that long keeps missing
        // the moments the lock is free: a console reap took a second per batch. Trying every
        // millisecond, up to the same timeout, finds those moments.
        config.busyMode = .callback { retries in
            // Wall-clock time, not the count of sleeps: on a loaded machine a 1 ms sleep takes
            // longer, and counting them would stretch the timeout several-fold. The start is
            // kept per thread: a connection's busy waits run on its own thread, one at a time.
            let now = ContinuousClock.now
            if retries == 0 { BusyWait.started = now }
            guard now - (BusyWait.started ?? now) < .milliseconds(Int64(busyTimeout * 1000)) else { return false }
            usleep(1_000)
            return true
        }
        config.foreignKeysEnabled = true
        config.prepareDatabase { db in
            // A committed token movement must survive power loss, not only a process crash.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        return config
    }
}

/// When the current thread's wait for another process's lock began.
enum BusyWait {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in pointer.map { Unmanaged<Box>.fromOpaque($0).release() } }
        return key
    }()

    private final class Box {
        var instant: ContinuousClock.Instant?
    }

    static var started: ContinuousClock.Instant? {
        get { pthread_getspecific(key).map { Unmanaged<Box>.fromOpaque($0).takeUnretainedValue().instant } ?? nil }
        set {
            if let pointer = pthread_getspecific(key) {
                Unmanaged<Box>.fromOpaque(pointer).takeUnretainedValue().instant = newValue
            } else {
                let box = Box()
                box.instant = newValue
                pthread_setspecific(key, Unmanaged.passRetained(box).toOpaque())
            }
        }
    }
}

/// Storage failures that an operator can act on.
public enum StorageError: Error, Equatable, CustomStringConvertible, Sendable {
    /// Another process holds the database lock past the busy timeout: retry shortly.
    case busy
    case databaseMissing(path: String)
    case lockFailed(path: String, errno: Int32)
    /// Another process held the lock beside the database for longer than the wait allows.
    case lockTimedOut(path: String, holder: String?, waited: Duration)
    /// The file exists and belongs to something else; it was not changed.
    case notMyBADatabase(path: String, detail: String)
    /// What only an SQLite file has (its writer, pages, pragmas) was asked of PostgreSQL.
    case notOnPostgres(concern: String)

    /// Whether `error` is PostgreSQL aborting the transaction for a deadlock or a serialization
    /// failure: nothing of it is kept, and the whole transaction runs again (`PostgresEngine`).
    static func isTransient(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        return PostgresEngine.isRetryable(error)
    }

    /// `error` as a storage failure a shell can answer without knowing the database library, or nil.
    public static func classify(_ error: any Error) -> StorageError? {
        if let error = error as? StorageError { return error }
        guard let error = error as? DatabaseError, error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED else { return nil }
        return .busy
    }

    public var description: String {
        switch self {
        case .busy:
            return "the database is busy; retry shortly"
        case .databaseMissing(let path):
            return "no database at \(path) (start the server once or pass --db with the right path)"
        case .lockFailed(let path, let code):
            return "cannot lock \(path): \(String(cString: strerror(code)))"
        case .lockTimedOut(let path, let holder, let waited):
            return
                "waited \(waited) for \(path), held by \(holder ?? "another process"); is a migration or another start-up stuck? Stop that process or retry"
        case .notMyBADatabase(let path, let detail):
            return "\(path) is not a MyBA database (\(detail)); nothing was changed. Check --db or MYBA_DATABASE"
        case .notOnPostgres(let concern):
            return "\(concern) is SQLite's; it has no meaning on PostgreSQL (see README, Several servers on PostgreSQL)"
        }
    }
}

// MARK: - Transactions

extension AppDatabase {
    /// Runs `body` in one read transaction: a consistent snapshot, never blocked by writers.
    func read<T: Sendable>(_ body: @escaping @Sendable (StorageTransaction) throws -> T) async throws -> T {
        switch engine {
        case .sqlite(let writer, _): return try await writer.read { db in try body(StorageTransaction(db)) }
        case .postgres(let postgres): return try await postgres.transaction(writing: false, body)
        }
    }

    /// Synchronous `read`, for callers that cannot await (readline's completion callback).
    func readSync<T: Sendable>(_ body: @escaping @Sendable (StorageTransaction) throws -> T) throws -> T {
        switch engine {
        case .sqlite(let writer, _): return try writer.read { db in try body(StorageTransaction(db)) }
        case .postgres(let postgres): return try Self.waitOffPool { try await postgres.transaction(writing: false, body) }
        }
    }

    /// Runs `work` and waits for it, for a synchronous caller on a thread of its own (readline's
    /// callbacks, tools); never call it from Swift's cooperative pool.
    private static func waitOffPool<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            let result: Result<T, any Error>
            do { result = .success(try await work()) } catch { result = .failure(error) }
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }

    /// Runs `body` in an IMMEDIATE transaction: the write lock is taken at BEGIN, so a
    /// read-check-write sequence cannot be interleaved with another process's writer, and waiting
    /// for the lock honours the busy timeout instead of failing on a lock upgrade. Writes that
    /// arrive together share one durable commit, each in its own savepoint (`GroupCommitQueue`);
    /// it returns once its changes are durable. On PostgreSQL: a transaction of its own, the
    /// rows it changes locked (see `PostgresEngine`).
    func write<T: Sendable>(_ body: @escaping @Sendable (StorageTransaction) throws -> T) async throws -> T {
        switch engine {
        case .sqlite(_, let groupCommit): return try await groupCommit.write { db in try body(StorageTransaction(db)) }
        case .postgres(let postgres): return try await postgres.transaction(writing: true, body)
        }
    }

    /// `write` in a transaction of its own, synchronously, for callers without an async context
    /// (benchmarks, tools).
    func writeAlone<T: Sendable>(_ body: @escaping @Sendable (StorageTransaction) throws -> T) throws -> T {
        if case .postgres(let postgres) = engine {
            return try Self.waitOffPool { try await postgres.transaction(writing: true, body) }
        }
        return try sqliteWriter("a synchronous write").writeWithoutTransaction { db in
            var result: T?
            try db.inTransaction(.immediate) {
                result = try body(StorageTransaction(db))
                return .commit
            }
            return result!
        }
    }

    /// Runs `body` in an IMMEDIATE transaction that is always rolled back: what a write would
    /// do, with nothing kept (dry runs that must see exactly what the real run would).
    func writeAndRollBack<T: Sendable>(_ body: @escaping @Sendable (StorageTransaction) throws -> T) async throws -> T {
        switch engine {
        case .sqlite(let writer, _):
            return try await writer.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(StorageTransaction(db))
                    return .rollback
                }
                return result!
            }
        case .postgres(let postgres):
            return try await postgres.transaction(writing: true, rollingBack: true, body)
        }
    }

    /// How long this process's writes have waited on a writer that committed nothing meanwhile
    /// (zero when none waits): a stuck disk or a lock held elsewhere shows here. PostgreSQL has
    /// no single writer to watch: zero.
    public func writerStalledFor() -> Duration {
        guard case .sqlite(_, let groupCommit) = engine else { return .zero }
        return groupCommit.stalledFor()
    }

    /// Copies the database, online, into a new file at `path` (SQLite's backup API, a step of
    /// pages at a time so writers wait only briefly), as one self-contained file.
    func copyPages(to path: String, progress: @escaping @Sendable (_ done: Int, _ total: Int) -> Void) throws {
        let destination = try DatabaseQueue(path: path)
        try sqliteWriter("db backup (use pg_dump)").backup(to: destination, pagesPerStep: 256) { step in
            progress(step.completedPageCount, step.totalPageCount)
        }
        // The copy keeps the source's WAL mode: back to a single self-contained file.
        try destination.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode = DELETE") }
        try destination.close()
    }
}
