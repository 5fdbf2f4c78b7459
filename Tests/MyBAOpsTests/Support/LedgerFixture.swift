import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

/// A ledger on a real SQLite file in a temporary directory, or on a fresh database of the
/// PostgreSQL test cluster: the suites that take a `TestBackend` run on both.
struct LedgerFixture {
    let directory: TemporaryDirectory
    let database: AppDatabase
    private let postgres: PostgresFixture?

    init() throws {
        let directory = try TemporaryDirectory("myba-ledger")
        self.init(directory: directory, database: try AppDatabase.openFile(at: directory.file("myba.sqlite")), postgres: nil)
    }

    init(_ backend: TestBackend) async throws {
        switch backend {
        case .sqlite:
            try self.init()
        case .postgres:
            let postgres = try await PostgresFixture.make()
            self.init(directory: try TemporaryDirectory("myba-ledger"), database: try await postgres.database(maxConnections: 8), postgres: postgres)
        }
    }

    private init(directory: TemporaryDirectory, database: AppDatabase, postgres: PostgresFixture?) {
        self.directory = directory
        self.database = database
        self.postgres = postgres
    }

    /// Removes the file, or closes the connections and drops the database (in the background:
    /// called from `defer`).
    func close() {
        directory.remove()
        guard let postgres else { return }
        let database = database
        Task {
            await database.close()
            await postgres.remove()
        }
    }

    func entryCount() async throws -> Int {
        try await count("SELECT COUNT(*) FROM ledger_entries")
    }

    /// The integer the query answers, read on either backend.
    func count(_ sql: String) async throws -> Int {
        try await database.read { tx in try tx.sql.value(sql, as: Int.self) ?? 0 }
    }

    /// Runs a statement no store offers (damage on purpose), on either backend.
    func execute(_ sql: String) async throws {
        _ = try await database.write { tx in try tx.sql.execute(sql) }
    }

    /// A customer holding `tokens`, funded by an operator adjustment.
    func customer(_ userId: String, tokens: Int) async throws {
        try await database.ledger.createCustomer(userId: userId)
        if tokens > 0 {
            _ = try await database.ledger.post(
                LedgerPosting(userId: userId, kind: .adjust, delta: tokens, idempotencyKey: "fund:\(userId)", actor: "test", reason: "fixture")
            )
        }
    }
}
