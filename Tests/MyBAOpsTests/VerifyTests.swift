import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("Ledger verify")
struct VerifyTests {
    /// Two customers with a little history, clean.
    func populated(_ backend: TestBackend) async throws -> LedgerFixture {
        let fixture = try await LedgerFixture(backend)
        _ = try await fixture.database.ledger.openAccount(userId: "user_1", email: nil, actor: "api")
        _ = try await fixture.database.ledger.openAccount(userId: "user_2", email: nil, actor: "api")
        _ = try await fixture.database.ledger.post(
            LedgerPosting(userId: "user_1", kind: .purchase, delta: 10, idempotencyKey: "purchase:cs_1", actor: "webhook:stripe")
        )
        _ = try await fixture.database.ledger.consume(userId: "user_1", amount: 4, idempotencyKey: "gen:1", actor: "api")
        let clean = try await fixture.database.ledger.verify()
        #expect(clean.isClean)
        #expect(clean.checkedCustomers == 2)
        #expect(clean.checkedEntries == 4)
        return fixture
    }

    @Test("a projection edited behind the ledger's back is reported field by field", arguments: TestBackend.available)
    func editedProjection(backend: TestBackend) async throws {
        let fixture = try await populated(backend)
        defer { fixture.close() }
        try await fixture.execute("UPDATE balances SET tokens = 100, tokens_used = 0 WHERE user_id = 'user_1'")
        let report = try await fixture.database.ledger.verify()
        #expect(report.violations.count == 2)
        let tokens = try #require(report.violations.first { $0.field == "tokens" })
        #expect(tokens.kind == .projectionMismatch)
        #expect(tokens.userId == "user_1")
        #expect(tokens.expected == "12")
        #expect(tokens.actual == "100")
        #expect(report.violations.contains { $0.field == "tokens_used" && $0.expected == "4" && $0.actual == "0" })
    }

    @Test("a negative stored balance is reported even when the entries agree", arguments: TestBackend.available)
    func negativeBalance(backend: TestBackend) async throws {
        let fixture = try await populated(backend)
        defer { fixture.close() }
        // Only a hand edit with CHECK constraints switched off (SQLite) or dropped (PostgreSQL) can store this.
        switch backend {
        case .sqlite:
            try await fixture.database.writerForTests.write { db in
                try db.execute(sql: "PRAGMA ignore_check_constraints = ON")
                try db.execute(sql: "UPDATE balances SET tokens = -3 WHERE user_id = 'user_2'")
                try db.execute(sql: "PRAGMA ignore_check_constraints = OFF")
            }
        case .postgres:
            try await fixture.execute("ALTER TABLE balances DROP CONSTRAINT balances_tokens_check")
            try await fixture.execute("UPDATE balances SET tokens = -3 WHERE user_id = 'user_2'")
        }
        let report = try await fixture.database.ledger.verify()
        #expect(report.violations.contains { $0.kind == .negativeBalance && $0.userId == "user_2" && $0.actual == "-3" })
        #expect(report.violations.contains { $0.kind == .projectionMismatch && $0.userId == "user_2" && $0.field == "tokens" })
    }

    @Test("an entry inserted by hand that breaks its kind's rule or overdraws is reported", arguments: TestBackend.available)
    func rogueEntry(backend: TestBackend) async throws {
        let fixture = try await populated(backend)
        defer { fixture.close() }
        try await fixture.execute(
            """
            INSERT INTO ledger_entries (user_id, kind, delta, used_delta, idempotency_key, actor, created_at)
            VALUES ('user_2', 'consume', -10, 0, 'rogue:1', 'nobody', '2026-11-25 10:00:00.000')
            """
        )
        let report = try await fixture.database.ledger.verify()
        #expect(report.violations.contains { $0.kind == .entryBreaksRule && $0.userId == "user_2" && $0.entryId != nil })
        #expect(report.violations.contains { $0.kind == .negativeBalance && $0.userId == "user_2" && $0.actual == "-4" })
        #expect(report.violations.contains { $0.kind == .projectionMismatch && $0.userId == "user_2" && $0.field == "tokens" && $0.expected == "-4" })
    }

    @Test("a missing projection row is reported", arguments: TestBackend.available)
    func missingProjection(backend: TestBackend) async throws {
        let fixture = try await populated(backend)
        defer { fixture.close() }
        try await fixture.execute("DELETE FROM balances WHERE user_id = 'user_2'")
        let report = try await fixture.database.ledger.verify()
        #expect(report.violations.map(\.kind) == [.missingProjection])
        #expect(report.violations.first?.userId == "user_2")
    }
}
