import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("Ledger")
struct LedgerTests {
    @Test("openAccount creates the customer and grants 6 welcome tokens exactly once", arguments: TestBackend.available)
    func welcomeOnce(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        let first = try await fixture.database.ledger.openAccount(userId: "user_1", email: "a@example.com", actor: "api")
        #expect(first.replayed == false)
        #expect(first.balance.tokens == 6)
        let second = try await fixture.database.ledger.openAccount(userId: "user_1", email: nil, actor: "webhook:clerk")
        #expect(second.replayed == true)
        #expect(second.entry.id == first.entry.id)
        #expect(try await fixture.database.ledger.balance(userId: "user_1")?.tokens == 6)
        #expect(try await fixture.entryCount() == 1)
        #expect(try await fixture.database.ledger.customer(userId: "user_1")?.email == "a@example.com")
    }

    @Test("replaying an idempotency key with the same parameters returns the original and changes nothing", arguments: TestBackend.available)
    func idempotentReplay(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 0)
        let posting = LedgerPosting(
            userId: "user_1",
            kind: .purchase,
            delta: 50,
            idempotencyKey: "purchase:cs_1",
            reference: "cs_1",
            actor: "webhook:stripe",
            requestId: "req_a"
        )
        let original = try await fixture.database.ledger.post(posting)
        var retry = posting
        retry.requestId = "req_b"  // a retry arrives in another request
        retry.actor = "console:replay"
        let replay = try await fixture.database.ledger.post(retry)
        #expect(replay.replayed)
        #expect(replay.entry == original.entry)
        #expect(replay.entry.requestId == "req_a")
        let balance = try #require(try await fixture.database.ledger.balance(userId: "user_1"))
        #expect(balance.tokens == 50)
        #expect(balance.tokensPurchased == 50)
        #expect(try await fixture.entryCount() == 1)
    }

    @Test("reusing an idempotency key with other parameters is refused and writes nothing", arguments: TestBackend.available)
    func keyReuse(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 0)
        try await fixture.customer("user_2", tokens: 0)
        let posting = LedgerPosting(
            userId: "user_1",
            kind: .purchase,
            delta: 10,
            idempotencyKey: "purchase:cs_1",
            reference: "cs_1",
            actor: "webhook:stripe"
        )
        let original = try await fixture.database.ledger.post(posting)
        let entriesBefore = try await fixture.entryCount()

        var otherAmount = posting
        otherAmount.delta = 50
        var otherUser = posting
        otherUser.userId = "user_2"
        var otherKind = posting
        otherKind.kind = .transfer
        var otherReference = posting
        otherReference.reference = "cs_2"
        for variant in [otherAmount, otherUser, otherKind, otherReference] {
            await #expect(throws: LedgerError.idempotencyKeyReused(key: "purchase:cs_1", existingEntryId: original.entry.id!)) {
                try await fixture.database.ledger.post(variant)
            }
        }
        #expect(try await fixture.entryCount() == entriesBefore)
        #expect(try await fixture.database.ledger.balance(userId: "user_1")?.tokens == 10)
        #expect(try await fixture.database.ledger.balance(userId: "user_2")?.tokens == 0)
    }

    @Test("a consume that does not fit is refused with insufficient tokens and writes nothing", arguments: TestBackend.available)
    func insufficient(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 2)
        let entriesBefore = try await fixture.entryCount()
        await #expect(throws: LedgerError.insufficientTokens(userId: "user_1", available: 2, requested: 3)) {
            try await fixture.database.ledger.consume(userId: "user_1", amount: 3, idempotencyKey: "gen:1", actor: "api")
        }
        #expect(try await fixture.entryCount() == entriesBefore)
        let result = try await fixture.database.ledger.consume(userId: "user_1", amount: 2, idempotencyKey: "gen:2", actor: "api")
        #expect(result.balance.tokens == 0)
        #expect(result.balance.tokensUsed == 2)
        // The retry of a consume that succeeded is answered from the ledger, not refused.
        let retry = try await fixture.database.ledger.consume(userId: "user_1", amount: 2, idempotencyKey: "gen:2", actor: "api")
        #expect(retry.replayed)
        #expect(retry.balance.tokens == 0)
    }

    @Test("an operator adjustment cannot take a balance below zero", arguments: TestBackend.available)
    func adjustBelowZero(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 3)
        await #expect(throws: LedgerError.wouldGoNegative(userId: "user_1", field: "tokens", current: 3, change: -4)) {
            try await fixture.database.ledger.post(
                LedgerPosting(userId: "user_1", kind: .adjust, delta: -4, idempotencyKey: "adj:1", actor: "operator:ann", reason: "test")
            )
        }
        await #expect(throws: LedgerError.wouldGoNegative(userId: "user_1", field: "tokens_used", current: 0, change: -1)) {
            try await fixture.database.ledger.post(LedgerPosting(userId: "user_1", kind: .release, delta: 1, idempotencyKey: "rel:1", actor: "api"))
        }
        #expect(try await fixture.database.ledger.balance(userId: "user_1")?.tokens == 3)
    }

    @Test("postings with the wrong sign, no customer or a bad key are refused", arguments: TestBackend.available)
    func invalidPostings(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 5)
        let invalid: [LedgerPosting] = [
            LedgerPosting(userId: "user_1", kind: .consume, delta: 1, idempotencyKey: "k1", actor: "api"),
            LedgerPosting(userId: "user_1", kind: .purchase, delta: -1, idempotencyKey: "k2", actor: "api"),
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 0, idempotencyKey: "k3", actor: "api"),
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: "", actor: "api"),
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: String(repeating: "k", count: 256), actor: "api"),
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 2_000_000_000, idempotencyKey: "k4", actor: "api"),
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: "k5", actor: ""),
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: "k6", actor: "api", opening: OpeningBalance(tokensUsed: 1)),
        ]
        for posting in invalid {
            await #expect(throws: LedgerError.self) { try await fixture.database.ledger.post(posting) }
        }
        await #expect(throws: LedgerError.unknownCustomer(userId: "user_nobody")) {
            try await fixture.database.ledger.post(LedgerPosting(userId: "user_nobody", kind: .adjust, delta: 1, idempotencyKey: "k7", actor: "api"))
        }
        #expect(try await fixture.database.ledger.balance(userId: "user_1")?.tokens == 5)
        #expect(try await fixture.entryCount() == 1)
    }

    @Test("each kind moves the projection fields as documented", arguments: TestBackend.available)
    func projectionRules(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        let db = fixture.database
        try await db.ledger.createCustomer(userId: "user_1")
        _ = try await db.ledger.openAccount(userId: "user_1", email: nil, actor: "api")
        var balance = try #require(try await db.ledger.balance(userId: "user_1"))
        #expect((balance.tokens, balance.tokensUsed, balance.tokensPurchased, balance.tokensTransferred) == (6, 0, 0, 0))

        let transfer = try await db.ledger.post(
            LedgerPosting(userId: "user_1", kind: .transfer, delta: 2, idempotencyKey: "transfer:anon_1", actor: "api")
        )
        let purchase = try await db.ledger.post(
            LedgerPosting(userId: "user_1", kind: .purchase, delta: 10, idempotencyKey: "purchase:cs_1", actor: "webhook:stripe")
        )
        _ = try await db.ledger.consume(userId: "user_1", amount: 3, idempotencyKey: "gen:1", actor: "api")
        _ = try await db.ledger.post(LedgerPosting(userId: "user_1", kind: .release, delta: 1, idempotencyKey: "release:gen:1", actor: "api"))
        _ = try await db.ledger.post(
            LedgerPosting(userId: "user_1", kind: .refundCredit, delta: 2, idempotencyKey: "credit:1", actor: "operator:ann", reason: "failed job")
        )
        _ = try await db.ledger.post(
            LedgerPosting(userId: "user_1", kind: .paymentRefund, delta: -4, idempotencyKey: "refund:ch_1", actor: "webhook:stripe")
        )
        _ = try await db.ledger.post(
            LedgerPosting(userId: "user_1", kind: .adjust, delta: -1, idempotencyKey: "adj:1", actor: "operator:ann", reason: "typo")
        )
        balance = try #require(try await db.ledger.balance(userId: "user_1"))
        #expect(balance.tokens == 6 + 2 + 10 - 3 + 1 + 2 - 4 - 1)
        #expect(balance.tokensUsed == 2)
        #expect(balance.tokensPurchased == 6)
        #expect(balance.tokensTransferred == 2)
        #expect(balance.lastPurchase == purchase.entry.createdAt)
        #expect(balance.transferDate == transfer.entry.createdAt)

        try await db.ledger.createCustomer(userId: "user_legacy")
        let lastPurchase = try #require(Timestamps.parse("2025-03-01"))
        let imported = try await db.ledger.post(
            LedgerPosting(
                userId: "user_legacy",
                kind: .import,
                delta: 17,
                idempotencyKey: "import:user_legacy",
                actor: "import",
                opening: OpeningBalance(tokensUsed: 40, tokensPurchased: 50, tokensTransferred: 1, lastPurchase: lastPurchase, transferDate: nil)
            )
        )
        #expect(imported.balance.tokens == 17)
        #expect(imported.balance.tokensUsed == 40)
        #expect(imported.balance.tokensPurchased == 50)
        #expect(imported.balance.tokensTransferred == 1)
        #expect(imported.balance.lastPurchase.map(Timestamps.day) == "2025-03-01")
        #expect(try await db.ledger.verify().isClean)
    }

    @Test("ledger entries cannot be updated or deleted, even with raw SQL", arguments: TestBackend.available)
    func appendOnly(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 5)
        await #expect(throws: (any Error).self) { try await fixture.execute("UPDATE ledger_entries SET delta = 500") }
        await #expect(throws: (any Error).self) { try await fixture.execute("DELETE FROM ledger_entries") }
        #expect(try await fixture.entryCount() == 1)
        #expect(try await fixture.database.ledger.verify().isClean)
    }

    @Test("with 1 token left and 50 concurrent consumers exactly one succeeds", arguments: TestBackend.available)
    func concurrentConsumersOneToken(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 1)
        let database = fixture.database
        let outcomes = await withTaskGroup(of: String.self) { group in
            for index in 0..<50 {
                group.addTask {
                    do {
                        _ = try await database.ledger.consume(userId: "user_1", idempotencyKey: "gen:\(index)", actor: "api")
                        return "ok"
                    } catch LedgerError.insufficientTokens {
                        return "insufficient"
                    } catch {
                        return "error: \(error)"
                    }
                }
            }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == "ok" }.count == 1)
        #expect(outcomes.filter { $0 == "insufficient" }.count == 49)
        #expect(try await database.ledger.balance(userId: "user_1")?.tokens == 0)
        let consumes = try await fixture.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'consume'")
        #expect(consumes == 1)
        #expect(try await database.ledger.verify().isClean)
    }

    @Test("many tasks consuming, replaying and funding at once leave an exact, verifiable ledger", arguments: TestBackend.available)
    func concurrentMixedLoad(backend: TestBackend) async throws {
        let fixture = try await LedgerFixture(backend)
        defer { fixture.close() }
        try await fixture.customer("user_1", tokens: 100)
        let database = fixture.database
        // 300 consumes over 150 distinct keys (each sent twice) race 20 purchases of 1 token. Each
        // outcome is counted: the only failure allowed is "not enough tokens".
        enum Outcome: Sendable {
            case consumed(String)
            case replayed, insufficient, purchased
            case unexpected(String)
        }
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for index in 0..<300 {
                group.addTask {
                    let key = "gen:\(index / 2)"
                    do {
                        let result = try await database.ledger.consume(userId: "user_1", idempotencyKey: key, actor: "api")
                        return result.replayed ? .replayed : .consumed(key)
                    } catch LedgerError.insufficientTokens {
                        return .insufficient
                    } catch {
                        return .unexpected("\(error)")
                    }
                }
            }
            for index in 0..<20 {
                group.addTask {
                    do {
                        _ = try await database.ledger.post(
                            LedgerPosting(userId: "user_1", kind: .purchase, delta: 1, idempotencyKey: "purchase:\(index)", actor: "webhook:stripe")
                        )
                        return .purchased
                    } catch {
                        return .unexpected("\(error)")
                    }
                }
            }
            return await group.reduce(into: [Outcome]()) { $0.append($1) }
        }
        let unexpected = outcomes.compactMap { if case .unexpected(let error) = $0 { error } else { nil } }
        #expect(unexpected.isEmpty, "\(unexpected)")
        #expect(outcomes.filter { if case .purchased = $0 { true } else { false } }.count == 20)
        let succeeded = Set(outcomes.compactMap { if case .consumed(let key) = $0 { key } else { nil } })
        let consumedCount = outcomes.filter { if case .consumed = $0 { true } else { false } }.count
        let replayed = outcomes.filter { if case .replayed = $0 { true } else { false } }.count
        let insufficient = outcomes.filter { if case .insufficient = $0 { true } else { false } }.count
        // No key is consumed twice, and every request is accounted for.
        #expect(consumedCount == succeeded.count)
        #expect(consumedCount + replayed + insufficient == 300)
        // How many consumes fit depends on when the purchases land; the books must balance anyway.
        let balance = try #require(try await database.ledger.balance(userId: "user_1"))
        #expect(succeeded.count >= 100 && succeeded.count <= 120)
        #expect(balance.tokensUsed == succeeded.count)
        #expect(balance.tokensPurchased == 20)
        #expect(balance.tokens == 100 + 20 - succeeded.count)
        let consumes = try await fixture.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'consume'")
        #expect(consumes == succeeded.count)
        #expect(try await database.ledger.verify().isClean)
    }
}

@Suite("Storage settings")
struct StorageSettingsTests {
    @Test(
        "the file is in WAL mode with synchronous=FULL and foreign keys on, on every connection; a writer waits out another process's lock (polling every millisecond, up to the busy timeout) instead of failing"
    )
    func pragmas() async throws {
        let fixture = try LedgerFixture()
        defer { fixture.directory.remove() }
        let writer = try await fixture.database.writerForTests.write { db in
            [try Int.fetchOne(db, sql: "PRAGMA synchronous")!, try Int.fetchOne(db, sql: "PRAGMA foreign_keys")!]
        }
        /// Another process (Python's sqlite3) holding the file's write lock for `seconds`.
        func holdWriteLock(for seconds: Double) async throws -> ChildProcess {
            let holder = try ChildProcess.start(
                "/usr/bin/env",
                [
                    "python3", "-c",
                    "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE'); "
                        + "print('locked', flush=True); time.sleep(float(sys.argv[2])); c.execute('COMMIT')",
                    fixture.database.path, String(seconds),
                ]
            )
            _ = try await holder.waitForOutput("locked")
            return holder
        }
        // Another process holds the write lock for 300 ms: a write here waits for it, then commits.
        let holder = try await holdWriteLock(for: 0.3)
        let started = ContinuousClock.now
        try await fixture.customer("user_waits", tokens: 1)
        #expect(ContinuousClock.now - started >= .milliseconds(200), "the write did not wait for the lock")
        #expect(try await holder.wait().status == 0)

        // A lock held past the busy timeout fails the write after about that long (wall clock,
        // however long each retry's sleep takes), not when the lock is given up. The lock is held
        // far longer than the bound checked, so a test process the machine keeps waiting for a
        // few seconds (a loaded CI run did) still tells the two apart; the holder is stopped after.
        let impatient = try AppDatabase.openFile(at: fixture.database.path, options: .init(busyTimeout: 0.3))
        let longHolder = try await holdWriteLock(for: 30)
        let tried = ContinuousClock.now
        await #expect(throws: (any Error).self) {
            _ = try await impatient.ledger.post(
                LedgerPosting(userId: "user_waits", kind: .adjust, delta: 1, idempotencyKey: "impatient", actor: "test", reason: "busy")
            )
        }
        let waited = ContinuousClock.now - tried
        #expect(waited >= .milliseconds(250) && waited < .milliseconds(5000), "\(waited)")
        longHolder.send(SIGKILL)
        _ = try? await longHolder.wait()
        let reader = try await fixture.database.writerForTests.read { db in
            [try Int.fetchOne(db, sql: "PRAGMA synchronous")!, try Int.fetchOne(db, sql: "PRAGMA foreign_keys")!]
        }
        let journal = try await fixture.database.writerForTests.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode")! }
        #expect(journal == "wal")
        #expect(writer == [2, 1])
        #expect(reader == [2, 1])
    }
}

@Suite("Manual credits for a payment")
struct ManualPurchaseCreditTests {
    @Test(
        "a hand credit naming a MyBA checkout is refused for anyone but its buyer (the late purchase would be settled against the wrong account), plan and post alike"
    )
    func onlyTheBuyer() async throws {
        let fixture = try LedgerFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        try await fixture.customer("user_buyer", tokens: 0)
        try await fixture.customer("user_other", tokens: 0)
        _ = try await database.payments.recordCheckout(id: "cs_test_owned", userId: "user_buyer", planId: "starter", amount: 500, discounted: false)
        let context = OperatorContext(operatorName: "ops", commandLine: "tokens adjust", reason: "ticket 1")
        let posting = LedgerPosting(
            userId: "user_other",
            kind: .adjust,
            delta: 10,
            idempotencyKey: ManualPurchaseCredit.key("cs_test_owned"),
            reference: "cs_test_owned",
            actor: "operator:ops"
        )
        let planned = await #expect(throws: LedgerError.self) {
            _ = try await database.payments.planManualCredit(posting, checkoutSessionId: "cs_test_owned")
        }
        #expect("\(planned.map { "\($0)" } ?? "")".contains("opened by user_buyer"))
        await #expect(throws: LedgerError.self) {
            _ = try await database.payments.postManualCredit(userId: "user_other", tokens: 10, checkoutSessionId: "cs_test_owned", by: context)
        }
        #expect(try await database.ledger.balance(userId: "user_other")?.tokens == 0)
        let credited = try await database.payments.postManualCredit(userId: "user_buyer", tokens: 10, checkoutSessionId: "cs_test_owned", by: context)
        #expect(credited.balance.tokens == 10)
        #expect(try await database.ledger.verify().isClean)
    }
}
