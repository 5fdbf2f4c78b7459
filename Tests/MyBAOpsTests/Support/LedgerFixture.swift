import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

/// A ledger on a real SQLite file in a temporary directory.
struct LedgerFixture {
    let directory: TemporaryDirectory
    let database: AppDatabase

    init() throws {
        directory = try TemporaryDirectory("myba-ledger")
        database = try AppDatabase.openFile(at: directory.file("myba.sqlite"))
    }

    func entryCount() async throws -> Int {
        try await database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries")! }
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
