import Foundation
import Logging
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// MyBA's PostgreSQL backend: a pool of connections (postgres-nio's `PostgresClient`) and the
/// transactions the rules run in.
///
/// The rules are written once, synchronously, against ``StorageTransaction``, as GRDB runs them
/// on SQLite. On PostgreSQL a transaction's rule code runs on a pool thread of its own that waits for
/// each statement's answer, so the same code serves both backends and no thread of Swift's
/// cooperative pool ever blocks. Concurrency between servers is PostgreSQL's: a write locks the
/// balance row it reads (`SELECT … FOR UPDATE`), so writers of one account queue on that row
/// and writers of different accounts do not wait for each other (docs/ledger.md). A transaction
/// that PostgreSQL aborts for a deadlock or a serialization failure runs again, whole.
public final class PostgresEngine: Sendable {
    let client: PostgresClient
    public let location: PostgresLocation
    /// The threads transactions' rule code runs on, one per connection: each waits for its
    /// statements' answers, so no thread of Swift's cooperative pool blocks.
    private let threads: NIOThreadPool
    let logger: Logger
    private let running: Task<Void, Never>
    /// The relay of other servers' balance changes, once started.
    private let relay = Mutex<Task<Void, Never>?>(nil)

    /// Starts a pool of at most `maxConnections` connections to `location`. Nothing connects
    /// until the first transaction.
    public init(location: PostgresLocation, maxConnections: Int = 16, logger: Logger = Logger(label: "myba.postgres")) {
        let tls: PostgresClient.Configuration.TLS
        var unchecked = TLSConfiguration.makeClientConfiguration()
        unchecked.certificateVerification = .none
        switch location.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(unchecked)
        case .require: tls = .require(unchecked)
        case .verify: tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: location.host,
            port: location.port,
            username: location.username,
            password: location.password,
            database: location.database,
            tls: tls
        )
        configuration.options.maximumConnections = maxConnections
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        threads = NIOThreadPool(numberOfThreads: maxConnections)
        threads.start()
        self.location = location
        self.logger = logger
        // Started at once (up to its first wait), so that no transaction asks the pool for a
        // connection before it runs.
        running = Task.immediate { await client.run() }
    }

    /// Closes the pool's connections.
    public func shutdown() async {
        let relaying = relay.withLock { $0 }
        relaying?.cancel()
        await relaying?.value
        running.cancel()
        await running.value
        try? await threads.shutdownGracefully()
    }

    /// The channel every ledger entry notifies, with its user id, in its own transaction:
    /// PostgreSQL delivers it when (and only if) the entry commits.
    static let balanceChannel = "myba_balance"

    /// Relays balance changes committed by any server on this database to this process's
    /// listeners (`BalanceChanges`, the web page's balance stream), over one connection kept
    /// listening; reconnects after a failure. Started once; ends at `shutdown`.
    public func relayBalanceChanges() {
        relay.withLock { relay in
            guard relay == nil else { return }
            relay = Task { [client, logger] in
                var delay = Duration.milliseconds(100)
                while !Task.isCancelled {
                    do {
                        try await client.withConnection { connection in
                            try await connection.listen(on: Self.balanceChannel) { notifications in
                                delay = .milliseconds(100)
                                for try await notification in notifications {
                                    BalanceChanges.shared.notify(userId: notification.payload)
                                }
                            }
                        }
                    } catch {
                        if Task.isCancelled { return }
                        logger.warning("balance relay lost its connection; reconnecting", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(5))
                }
            }
        }
    }

    /// Runs `body` in one transaction (`READ COMMITTED`, or a `REPEATABLE READ READ ONLY`
    /// snapshot for reads) and returns once it committed; what it asked to run after commit runs
    /// then. Deadlocks and serialization failures run it again, up to five times.
    func transaction<T: Sendable>(
        writing: Bool,
        rollingBack: Bool = false,
        _ body: @escaping @Sendable (StorageTransaction) throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await client.withConnection { connection in
                    let logger = self.logger
                    return try await self.threads.runIfActive {
                        let session = PostgresSession(connection: connection, writing: writing, logger: logger)
                        // A read is one snapshot, as on SQLite: `ledger verify` and `db status`
                        // must not see half of a write that commits while they read.
                        try session.execute(writing ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        let result: T
                        do {
                            result = try body(StorageTransaction(postgres: session))
                            try session.execute(rollingBack ? "ROLLBACK" : "COMMIT")
                        } catch {
                            try? session.execute("ROLLBACK")
                            throw error
                        }
                        if !rollingBack { session.runAfterCommit() }
                        return result
                    }
                }
            } catch let error as PSQLError where Self.isRetryable(error) && attempt < 5 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << attempt))))
            }
        }
    }

    /// Runs one statement on its own, outside any transaction (`CREATE DATABASE` must).
    func runOutsideTransaction(_ sql: String) async throws {
        try await client.withConnection { connection in
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: self.logger)
        }
    }

    /// A deadlock (40P01) or a serialization failure (40001): nothing of the transaction was
    /// kept, and running it again is the documented answer.
    static func isRetryable(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }
}

/// One connection inside one transaction, used by one thread: each statement is sent and its
/// rows awaited before the next (see ``PostgresEngine``).
final class PostgresSession: @unchecked Sendable {
    let connection: PostgresConnection
    /// A write transaction: rows read to be changed are locked (`FOR UPDATE`).
    let writing: Bool
    let logger: Logger
    private var afterCommitActions: [@Sendable () -> Void] = []

    init(connection: PostgresConnection, writing: Bool, logger: Logger) {
        self.connection = connection
        self.writing = writing
        self.logger = logger
    }

    /// Sends `query` and returns its rows, blocking this (non-cooperative) thread meanwhile.
    @discardableResult
    func rows(_ query: PostgresQuery) throws -> [PostgresRow] {
        try result(query).rows
    }

    /// Sends `query` and returns its rows and command tag (how many rows it changed), blocking
    /// this thread meanwhile: the event loop answers the future, this thread only waits.
    func result(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try connection.query(query, logger: logger).wait()
    }

    func execute(_ sql: String) throws {
        try rows(PostgresQuery(unsafeSQL: sql))
    }

    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        afterCommitActions.append(action)
    }

    func runAfterCommit() {
        for action in afterCommitActions { action() }
        afterCommitActions.removeAll()
    }
}
