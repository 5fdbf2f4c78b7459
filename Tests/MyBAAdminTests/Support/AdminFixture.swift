import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

/// `myba-admin` as operators and cron run it: the real binary, a real database file.
struct AdminFixture {
    let directory: TemporaryDirectory
    let path: String
    let database: AppDatabase

    init() async throws {
        directory = try TemporaryDirectory("myba-admin")
        path = directory.file("myba.sqlite")
        database = try AppDatabase.openFile(at: path)
        _ = try await database.ledger.openAccount(userId: "user_alice", email: "alice@example.com", actor: "api", requestId: "req_1")
        _ = try await database.ledger.post(
            LedgerPosting(
                userId: "user_alice",
                kind: .purchase,
                delta: 50,
                idempotencyKey: "purchase:cs_1",
                reference: "cs_1",
                actor: "webhook:stripe"
            )
        )
        _ = try await database.ledger.consume(userId: "user_alice", amount: 2, idempotencyKey: "gen:1", actor: "api", requestId: "req_2")
    }

    func admin(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) async throws -> ProcessResult {
        try await BuiltProduct.run("myba-admin", arguments, environment: environment, stdin: stdin)
    }
}
