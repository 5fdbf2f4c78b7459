import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Synchronization
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// Refunds that fail at Stripe, and refunds of payments that are not MyBA's (issue 24): signed
/// events over HTTP, in either order, each delivered twice.
@Suite("Refund outcomes")
struct RefundOutcomeTests {

    @Test(
        "a refund that fails at Stripe gives back what it took, whichever of its events comes first; a failed refund forgives the shortfall before it gives anything back"
    )
    func failedRefundsGiveTokensBack() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        let t = Int(Date().timeIntervalSince1970) - 1000
        try await fixture.application().test(.router) { client in
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.checkoutCompleted(
                        eventId: "evt_buy",
                        sessionId: "cs_rf",
                        userId: "user_rf",
                        tokens: 10,
                        amount: 500,
                        paymentIntent: "pi_rf"
                    )
                ],
                to: client
            )
            let database = try fixture.database()
            _ = try await database.ledger.consume(userId: "user_rf", amount: 8, idempotencyKey: "spend-8", actor: "test")

            // Refund re_1 failed; its failure is delivered before the charge snapshot that
            // still counted it. Nothing is ever taken.
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.refundFailed(
                        eventId: "evt_re1_failed",
                        refundId: "re_1",
                        paymentIntent: "pi_rf",
                        amount: 500,
                        refundCreated: t,
                        created: t + 10
                    ),
                    Deliveries.chargeRefunded(
                        eventId: "evt_re1",
                        paymentIntent: "pi_rf",
                        amount: 500,
                        refunded: 500,
                        userId: "user_rf",
                        created: t + 1
                    ),
                ],
                to: client
            )
            #expect(try await database.ledger.balance(userId: "user_rf")?.tokens == 2)
            #expect(try await database.payments.payment(id: "pi_rf")?.refundedAmount == 0)

            // Refund re_2 (the charge snapshot after re_1's failure no longer counts it): the 2
            // tokens left are taken, 8 are short.
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.chargeRefunded(
                        eventId: "evt_re2",
                        paymentIntent: "pi_rf",
                        amount: 500,
                        refunded: 500,
                        userId: "user_rf",
                        created: t + 20
                    )
                ],
                to: client
            )
            #expect(try await database.ledger.balance(userId: "user_rf")?.tokens == 0)

            // re_2 fails too: the 8 short are forgiven, the 2 taken come back.
            let statuses = try await Deliveries.deliverTwice(
                [
                    Deliveries.refundFailed(
                        eventId: "evt_re2_failed",
                        refundId: "re_2",
                        paymentIntent: "pi_rf",
                        amount: 500,
                        refundCreated: t + 19,
                        created: t + 30
                    )
                ],
                to: client
            )
            #expect(statuses == ["processed", "processed"])
            #expect(try await database.ledger.balance(userId: "user_rf")?.tokens == 2)
            let event = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_re2_failed"))
            #expect(event.outcome?.contains("gave back 2 tokens") == true, "\(event.outcome ?? "")")

            // An old snapshot delivered late (taken before re_2 failed) changes nothing.
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.chargeRefunded(
                        eventId: "evt_re2_again",
                        paymentIntent: "pi_rf",
                        amount: 500,
                        refunded: 500,
                        userId: "user_rf",
                        created: t + 20
                    )
                ],
                to: client
            )
            let balance = try #require(try await database.ledger.balance(userId: "user_rf"))
            #expect(balance.tokens == 2)
            #expect(balance.tokensPurchased == 10)
            let refundEntries = try await database.ledger.entries(userId: "user_rf", limit: 20).filter { $0.kind == .paymentRefund }.map(\.delta)
                .sorted()
            #expect(refundEntries == [-2, 2])
            #expect(try await database.ledger.verify().isClean)
        }
    }

    @Test("a canceled refund is given back like a failed one; a pending or succeeded refund update changes nothing")
    func canceledAndPendingUpdates() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        let t = Int(Date().timeIntervalSince1970) - 1000
        try await fixture.application().test(.router) { client in
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.checkoutCompleted(
                        eventId: "evt_buy_c",
                        sessionId: "cs_c",
                        userId: "user_c",
                        tokens: 10,
                        amount: 500,
                        paymentIntent: "pi_c"
                    ),
                    Deliveries.chargeRefunded(
                        eventId: "evt_half",
                        paymentIntent: "pi_c",
                        amount: 500,
                        refunded: 250,
                        userId: "user_c",
                        created: t + 1
                    ),
                ],
                to: client
            )
            let database = try fixture.database()
            #expect(try await database.ledger.balance(userId: "user_c")?.tokens == 5)
            let pending = try await Deliveries.deliverTwice(
                [
                    Deliveries.refundFailed(
                        eventId: "evt_pending",
                        refundId: "re_c",
                        paymentIntent: "pi_c",
                        amount: 250,
                        refundCreated: t,
                        created: t + 2,
                        status: "pending"
                    )
                ],
                to: client
            )
            #expect(pending == ["ignored", "ignored"])
            #expect(try await database.ledger.balance(userId: "user_c")?.tokens == 5)
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.refundFailed(
                        eventId: "evt_canceled",
                        refundId: "re_c",
                        paymentIntent: "pi_c",
                        amount: 250,
                        refundCreated: t,
                        created: t + 3,
                        status: "canceled"
                    )
                ],
                to: client
            )
            #expect(try await database.ledger.balance(userId: "user_c")?.tokens == 10)
            #expect(try await database.ledger.verify().isClean)
        }
    }

    @Test("a refund of a payment MyBA never sold is ignored with its reason (not retried); one that names a MyBA user waits for its purchase")
    func foreignRefundIgnored() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let foreign = try await Deliveries.deliverTwice(
                [Deliveries.chargeRefunded(eventId: "evt_foreign", paymentIntent: "pi_other_product", amount: 900, refunded: 900)],
                to: client
            )
            #expect(foreign == ["ignored", "ignored"])
            let ours = try await Deliveries.deliverTwice(
                [Deliveries.chargeRefunded(eventId: "evt_ours_early", paymentIntent: "pi_ours", amount: 500, refunded: 500, userId: "user_ours")],
                to: client
            )
            #expect(ours.first == "failed")
        }
        let database = try fixture.database()
        let event = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_foreign"))
        #expect(event.outcome?.contains("not a MyBA payment") == true, "\(event.outcome ?? "")")
        #expect(
            try await database.inbox.due(now: Date().addingTimeInterval(86400), maxAttempts: WebhookProcessor.maxAttempts).map(\.1) == [
                "evt_ours_early"
            ]
        )
        #expect(try await database.ledger.verify().isClean)
    }
}

@Suite("A database held by another process")
struct DatabaseBusyTests {
    @Test(
        "while another process holds the write lock past the busy timeout, a webhook answers 503 database_busy (JSON error) and is stored once the lock is free"
    )
    func busyIsA503() async throws {
        let fixture = try webhookFixture { $0.busyTimeoutSeconds = 0.2 }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let purchase = Deliveries.checkoutCompleted(
                eventId: "evt_busy",
                sessionId: "cs_busy",
                userId: "user_busy",
                tokens: 10,
                amount: 500,
                paymentIntent: "pi_busy"
            )
            // Another process (a raw SQLite connection) takes the write lock and keeps it. It
            // waits its turn if the server's own start-up work is writing: a holder that could
            // not take the lock would otherwise leave this test waiting forever.
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            let holder = try DatabaseQueue(path: fixture.settings.databasePath, configuration: configuration)
            let release = DispatchSemaphore(value: 0)
            let held = DispatchSemaphore(value: 0)
            let locked = Mutex(false)
            let thread = Thread {
                do {
                    try holder.writeWithoutTransaction { db in
                        try db.execute(sql: "BEGIN IMMEDIATE")
                        locked.withLock { $0 = true }
                        held.signal()
                        release.wait()
                        try db.execute(sql: "ROLLBACK")
                    }
                } catch {
                    held.signal()
                }
            }
            thread.start()
            _ = held.wait(timeout: .now() + 30)
            try #require(locked.withLock { $0 }, "the holder could not take the write lock")
            try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(purchase),
                body: ByteBuffer(string: purchase)
            ) { response in
                #expect(response.status == .serviceUnavailable)
                let error = try response.json["error"] as? [String: Any]
                #expect(error?["code"] as? String == "database_busy")
            }
            release.signal()
            try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(purchase),
                body: ByteBuffer(string: purchase)
            ) { response in
                #expect(response.status == .ok)
            }
        }
        #expect(try await fixture.database().ledger.balance(userId: "user_busy")?.tokens == 10)
    }
}

@Suite("Webhook claims")
struct WebhookClaimTests {
    @Test(
        "an asynchronous payment: checkout.session.completed unpaid is ignored, async_payment_succeeded grants the tokens, once however often delivered"
    )
    func asyncPaymentGrants() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let unpaid = Deliveries.checkoutCompleted(
                eventId: "evt_async_1",
                sessionId: "cs_async",
                userId: "user_async",
                tokens: 10,
                amount: 500,
                paymentIntent: "pi_async",
                paid: false
            )
            let first = try await Deliveries.deliverTwice([unpaid], to: client)
            #expect(first.first == "ignored")
            let paid = Deliveries.stripeEvent(
                id: "evt_async_2",
                type: "checkout.session.async_payment_succeeded",
                object: [
                    "id": "cs_async", "object": "checkout.session", "amount_total": 500, "currency": "usd", "customer": "cus_user_async",
                    "client_reference_id": "user_async", "metadata": ["user_id": "user_async", "plan_id": "starter", "tokens": "10"],
                    "mode": "payment", "payment_intent": "pi_async", "payment_status": "paid", "status": "complete",
                ]
            )
            let second = try await Deliveries.deliverTwice([paid], to: client)
            #expect(second == ["processed", "processed"])
        }
        let balance = try #require(try await fixture.database().ledger.balance(userId: "user_async"))
        #expect((balance.tokens, balance.tokensPurchased) == (10, 10))
        #expect(try await fixture.database().ledger.verify().isClean)
    }

    @Test("the retry schedule: 5 s, 10 s, 20 s … doubling up to an hour, and an event stops being due after ten attempts")
    func retrySchedule() async throws {
        #expect((1...12).map { WebhookProcessor.backoff(attempts: $0) } == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600])
        #expect(WebhookProcessor.maxAttempts == 10)
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        let database = try AppDatabase.openFile(at: fixture.settings.databasePath)
        let refund = Deliveries.chargeRefunded(eventId: "evt_retry", paymentIntent: "pi_missing", amount: 500, refunded: 500, userId: "user_x")
        _ = try await database.inbox.store(
            WebhookDelivery(source: .stripe, eventId: "evt_retry", type: "charge.refunded", body: refund, headers: [:], requestId: nil)
        )
        let processor = WebhookProcessor(database: database)
        for attempt in 1...WebhookProcessor.maxAttempts {
            // The failure is stamped between these two instants, however loaded the machine.
            let before = Date().addingTimeInterval(-0.001)
            #expect(try await processor.process(source: .stripe, eventId: "evt_retry", logger: .init(label: "test")).status == .failed)
            let after = Date().addingTimeInterval(0.001)
            let event = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_retry"))
            #expect(event.attempts == attempt)
            let next = try #require(event.nextAttemptAt)
            let backoff = WebhookProcessor.backoff(attempts: attempt)
            #expect(
                next >= before.addingTimeInterval(backoff) && next <= after.addingTimeInterval(backoff),
                "attempt \(attempt): next at \(next), expected \(backoff) s after the failure"
            )
        }
        let due = try await database.inbox.due(now: Date().addingTimeInterval(86400), maxAttempts: WebhookProcessor.maxAttempts)
        #expect(!due.map(\.1).contains("evt_retry"))
    }
}
