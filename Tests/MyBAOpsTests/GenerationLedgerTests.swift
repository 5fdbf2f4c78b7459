import Foundation
import GRDB
import Logging
import MyBATestSupport
import Testing
@testable import MyBAOps

@Suite("Generations and anonymous sessions in the ledger")
struct GenerationLedgerTests {
    @Test("a generation abandoned after charging gets its token back once, and a retry charges a new attempt")
    func abandoned() async throws {
        let fixture = try LedgerFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        _ = try await database.openAccount(userId: "user_1", email: nil, actor: "test")
        let session = try await database.startAnonymousSession(fingerprint: "fp", clientAddress: "127.0.0.1", settings: AnonymousSettings())
        // What a process leaves behind when it dies during the provider call.
        let retry = GenerationRequest(input: "Add search", userId: "user_1", idempotencyKey: "user_1:req_a", requestId: "req_a2")
        let hash = TicketGenerator.inputHash(retry)
        try await database.writer.write { db in
            let then = SQLTimestamp.string(Date().addingTimeInterval(-3600))
            for (key, kind, payer) in [("user_1:req_a", "account", "user_1"), ("\(session.session.id):req_b", "session", session.session.id)] {
                try db.execute(sql: "INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 'reserved', 1, ?, ?)",
                               arguments: [key, kind, payer, hash, then, then])
            }
            _ = try AppDatabase.post(LedgerPosting(userId: "user_1", kind: .consume, delta: -1, idempotencyKey: TicketGenerator.chargeKey("user_1:req_a", attempt: 1), actor: "api"), now: Date(), in: db)
            _ = try AppDatabase.chargeSession(sessionId: session.session.id, amount: 1, idempotencyKey: TicketGenerator.chargeKey("\(session.session.id):req_b", attempt: 1), requestId: nil, now: Date(), in: db)
        }
        #expect(try await database.balance(userId: "user_1")?.tokens == 5)
        #expect(try await database.releaseAbandonedGenerations(reservedBefore: Date().addingTimeInterval(-60)) == 2)
        #expect(try await database.releaseAbandonedGenerations(reservedBefore: Date()) == 0)
        #expect(try await database.balance(userId: "user_1")?.tokens == 6)
        #expect(try await database.anonymousSession(id: session.session.id)?.remaining == 3)
        #expect(try await database.verify().isClean)

        // The retry of the abandoned request is a second attempt, charged once.
        let generator = TicketGenerator(database: database, settings: AISettings(), http: CurlHTTPClient())
        let result = try await generator.generate(retry, logger: Logger(label: "test"))
        #expect(result.tokensRemaining == 5)
        #expect(try await database.verify().isClean)
    }

    @Test("verify reports an anonymous session whose count disagrees with its charges or its transfer")
    func sessionVerify() async throws {
        let fixture = try LedgerFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        let started = try await database.startAnonymousSession(fingerprint: "fp", clientAddress: "127.0.0.1", settings: AnonymousSettings())
        _ = try await database.chargeAnonymousSession(sessionId: started.session.id, idempotencyKey: "c1", requestId: nil)
        _ = try await database.chargeAnonymousSession(sessionId: started.session.id, idempotencyKey: "c1", requestId: nil)
        let moved = try await database.transferAnonymousSession(sessionId: started.session.id, to: "user_1", actor: "api", requestId: nil)
        #expect(moved.transferred == 2)
        #expect(moved.balance.tokens == 8)
        #expect(try await database.verify().isClean)
        try await database.writer.write { db in
            try db.execute(sql: "UPDATE anonymous_sessions SET used = 0, transferred_tokens = 3")
        }
        let report = try await database.verify()
        #expect(report.violations.map(\.kind) == [.sessionMismatch])
        #expect(report.violations.first?.field == "used")
        try await database.writer.write { db in try db.execute(sql: "UPDATE anonymous_sessions SET used = 1") }
        let second = try await database.verify()
        #expect(second.violations.first?.field == "transferred_tokens")
        #expect(second.violations.first?.expected == "2")
    }
}
