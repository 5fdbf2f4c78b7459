import Foundation
import GRDB
import Logging
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("Generations and anonymous sessions in the ledger")
struct GenerationLedgerTests {
    @Test("a generation abandoned after charging gets its token back once, and a retry charges a new attempt", arguments: TestBackend.available)
    func abandoned(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        let database = fixture.database
        _ = try await database.ledger.openAccount(userId: "user_1", email: nil, actor: "test")
        let session = try await database.sessions.start(fingerprint: "fp", clientAddress: "127.0.0.1", settings: AnonymousSettings())
        // What a process leaves behind when it dies during the provider call.
        let retry = GenerationRequest(input: "Add search", userId: "user_1", idempotencyKey: "user_1:req_a", requestId: "req_a2")
        let hash = TicketGenerator.inputHash(retry)
        try await database.write { tx in
            let then = Date().addingTimeInterval(-3600)
            for (key, kind, payer) in [("user_1:req_a", "account", "user_1"), ("\(session.session.id):req_b", "session", session.session.id)] {
                try tx.sql.execute(
                    "INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 'reserved', 1, ?, ?)",
                    [key, kind, payer, hash, then, then]
                )
            }
            _ = try Ledger.post(
                LedgerPosting(
                    userId: "user_1",
                    kind: .consume,
                    delta: -1,
                    idempotencyKey: TicketGenerator.chargeKey("user_1:req_a", attempt: 1),
                    actor: "api"
                ),
                now: Date(),
                in: tx
            )
            _ = try AnonymousSessions.chargeSession(
                sessionId: session.session.id,
                amount: 1,
                idempotencyKey: TicketGenerator.chargeKey("\(session.session.id):req_b", attempt: 1),
                requestId: nil,
                now: Date(),
                in: tx
            )
        }
        #expect(try await database.ledger.balance(userId: "user_1")?.tokens == 5)
        #expect(try await database.generations.releaseAbandoned(reservedBefore: Date().addingTimeInterval(-60)).released == 2)
        #expect(try await database.generations.releaseAbandoned(reservedBefore: Date()) == AbandonedGenerationsReport(released: 0, unapplied: []))
        #expect(try await database.ledger.balance(userId: "user_1")?.tokens == 6)
        #expect(try await database.sessions.session(id: session.session.id)?.remaining == 3)
        #expect(try await database.ledger.verify().isClean)

        // The retry of the abandoned request is a second attempt, charged once.
        let generator = TicketGenerator(database: database, settings: AISettings(), http: CurlHTTPClient())
        let result = try await generator.generate(retry, logger: Logger(label: "test"))
        #expect(result.tokensRemaining == 5)
        #expect(try await database.ledger.verify().isClean)
    }

    @Test(
        "a reservation whose session is gone is closed with the reason recorded, without stopping the releases beside it; the reap spares sessions with a reserved generation",
        arguments: TestBackend.available
    )
    func unapplicableRelease(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        let database = fixture.database
        _ = try await database.ledger.openAccount(userId: "user_1", email: nil, actor: "test")
        let gone = try await database.sessions.start(fingerprint: "fp-gone", clientAddress: "127.0.0.1", settings: AnonymousSettings()).session
            .id
        let kept = try await database.sessions.start(fingerprint: "fp-kept", clientAddress: "127.0.0.1", settings: AnonymousSettings()).session
            .id
        try await database.write { tx in
            let then = Date().addingTimeInterval(-3600)
            for (key, kind, payer) in [("\(gone):k", "session", gone), ("\(kept):k", "session", kept), ("user_1:k", "account", "user_1")] {
                try tx.sql.execute(
                    "INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, created_at, updated_at) VALUES (?, ?, ?, 'h', 'reserved', 1, ?, ?)",
                    [key, kind, payer, then, then]
                )
            }
            for session in [gone, kept] {
                _ = try AnonymousSessions.chargeSession(
                    sessionId: session,
                    amount: 1,
                    idempotencyKey: TicketGenerator.chargeKey("\(session):k", attempt: 1),
                    requestId: nil,
                    now: Date(),
                    in: tx
                )
            }
            _ = try Ledger.post(
                LedgerPosting(
                    userId: "user_1",
                    kind: .consume,
                    delta: -1,
                    idempotencyKey: TicketGenerator.chargeKey("user_1:k", attempt: 1),
                    actor: "api"
                ),
                now: Date(),
                in: tx
            )
            try tx.sql.execute("UPDATE anonymous_sessions SET last_seen_at = ?", [then])
        }
        // The reap leaves both sessions alone while their generations are reserved.
        #expect(try await database.sessions.reap(lastSeenBefore: Date(), batch: 100, dryRun: false).removed == 0)
        // A session removed anyway (by hand, or by an older reap).
        try await database.write { tx in try tx.sql.execute("DELETE FROM anonymous_sessions WHERE id = ?", [gone]) }

        let report = try await database.generations.releaseAbandoned(reservedBefore: Date().addingTimeInterval(-60))
        #expect(report.released == 2)
        #expect(report.unapplied.count == 1)
        #expect(report.unapplied.first?.contains(SessionDigest.of(gone)) == true)
        #expect(report.unapplied.first?.contains(gone) == false)
        let rows = try await database.read { tx in
            try tx.sql.fetchAll("SELECT idempotency_key, status, error FROM generations ORDER BY idempotency_key").map {
                (try $0.get("idempotency_key", as: String.self), try $0.get("status", as: String.self), try $0.get("error", as: String?.self))
            }
        }
        #expect(rows.allSatisfy { $0.1 == "failed" })
        #expect(rows.first { $0.0 == "\(gone):k" }?.2?.contains("could not be given back") == true)
        #expect(try await database.sessions.session(id: kept)?.remaining == 3)
        #expect(try await database.ledger.balance(userId: "user_1")?.tokens == 6)
        #expect(try await database.ledger.verify().isClean)
        // Settled, the sessions may be reaped.
        #expect(try await database.sessions.reap(lastSeenBefore: Date(), batch: 100, dryRun: false).removed == 1)
    }

    @Test(
        "finished own-key generations older than the cut-off are removed in batches; reserved ones and token-paid ones stay",
        arguments: TestBackend.available
    )
    func ownKeyPrune(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        let database = fixture.database
        try await database.write { tx in
            let old = Date().addingTimeInterval(-2 * 86_400)
            let new = Date()
            let rows: [(String, String, String, Date)] = [
                ("own:1", "own_key", "completed", old), ("own:2", "own_key", "failed", old), ("own:3", "own_key", "reserved", old),
                ("own:4", "own_key", "completed", new), ("acct:1", "account", "completed", old),
            ]
            for (key, kind, status, at) in rows {
                try tx.sql.execute(
                    "INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, created_at, updated_at) VALUES (?, ?, 'u', 'h', ?, 1, ?, ?)",
                    [key, kind, status, at, at]
                )
            }
        }
        #expect(try await database.generations.pruneOwnKey(createdBefore: Date().addingTimeInterval(-86_400), limit: 1) == 1)
        #expect(try await database.generations.pruneOwnKey(createdBefore: Date().addingTimeInterval(-86_400)) == 1)
        let left = try await database.read { tx in
            try tx.sql.values("SELECT idempotency_key FROM generations ORDER BY idempotency_key", as: String.self)
        }
        #expect(left == ["acct:1", "own:3", "own:4"])
    }

    @Test("verify reports an anonymous session whose count disagrees with its charges or its transfer", arguments: TestBackend.available)
    func sessionVerify(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        let database = fixture.database
        let started = try await database.sessions.start(fingerprint: "fp", clientAddress: "127.0.0.1", settings: AnonymousSettings())
        _ = try await database.sessions.charge(sessionId: started.session.id, idempotencyKey: "c1", requestId: nil)
        _ = try await database.sessions.charge(sessionId: started.session.id, idempotencyKey: "c1", requestId: nil)
        let moved = try await database.sessions.transfer(sessionId: started.session.id, to: "user_1", actor: "api", requestId: nil)
        #expect(moved.transferred == 2)
        #expect(moved.balance.tokens == 8)
        #expect(try await database.ledger.verify().isClean)
        try await database.write { tx in
            try tx.sql.execute("UPDATE anonymous_sessions SET used = 0, transferred_tokens = 3")
        }
        let report = try await database.ledger.verify()
        #expect(report.violations.map(\.kind) == [.sessionMismatch])
        #expect(report.violations.first?.field == "used")
        try await database.write { tx in try tx.sql.execute("UPDATE anonymous_sessions SET used = 1") }
        let second = try await database.ledger.verify()
        #expect(second.violations.first?.field == "transferred_tokens")
        #expect(second.violations.first?.expected == "2")
    }
}
