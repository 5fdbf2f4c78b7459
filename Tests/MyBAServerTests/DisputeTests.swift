import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// Chargebacks (issue 14): Stripe's signed dispute events over HTTP, in every order and count.
@Suite("Disputes")
struct DisputeTests {
    static func dispute(eventId: String, type: String, disputeId: String, paymentIntent: String, amount: Int, status: String) -> String {
        Deliveries.stripeEvent(
            id: eventId,
            type: type,
            object: [
                "id": disputeId, "object": "dispute", "amount": amount, "currency": "usd", "charge": "ch_\(paymentIntent)",
                "payment_intent": paymentIntent, "reason": "fraudulent", "status": status,
            ]
        )
    }

    @Test(
        "a dispute holds back what is left of the purchase's tokens (never below zero, the rest as shortfall) and a won dispute gives them back, once each however often delivered"
    )
    func openedThenWon() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let purchase = Deliveries.checkoutCompleted(
                eventId: "evt_buy",
                sessionId: "cs_disp",
                userId: "user_disp",
                tokens: 10,
                amount: 500,
                paymentIntent: "pi_disp"
            )
            _ = try await Deliveries.deliverTwice([purchase], to: client)
            // The buyer (opened by the purchase, so no welcome grant) spends 4 of the 10 bought;
            // the dispute holds back the 6 left, 4 short.
            for index in 0..<4 {
                var headers = bearer("dev:user_disp")
                headers[.contentType] = "application/json"
                _ = try await client.execute(uri: "/api/generate", method: .post, headers: headers, body: jsonBody(["input": "Ticket \(index)"]))
            }
            _ = try await Deliveries.deliverTwice(
                [
                    Self.dispute(
                        eventId: "evt_dp1",
                        type: "charge.dispute.created",
                        disputeId: "dp_1",
                        paymentIntent: "pi_disp",
                        amount: 500,
                        status: "needs_response"
                    )
                ],
                to: client
            )
        }
        let database = try fixture.database()
        #expect(try await database.ledger.balance(userId: "user_disp")?.tokens == 0)
        let opened = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_dp1"))
        #expect(opened.outcome?.contains("held back 6 tokens") == true && opened.outcome?.contains("shortfall 4") == true, "\(opened.outcome ?? "")")
        try await fixture.application().test(.router) { client in
            _ = try await Deliveries.deliverTwice(
                [
                    Self.dispute(
                        eventId: "evt_dp1_won",
                        type: "charge.dispute.closed",
                        disputeId: "dp_1",
                        paymentIntent: "pi_disp",
                        amount: 500,
                        status: "won"
                    )
                ],
                to: client
            )
        }
        #expect(try await database.ledger.balance(userId: "user_disp")?.tokens == 6)
        let kinds = try await database.ledger.entries(userId: "user_disp", limit: 20).filter { $0.idempotencyKey.hasPrefix("dispute") }.map {
            ($0.idempotencyKey, $0.delta)
        }
        #expect(kinds.map(\.0).sorted() == ["dispute:dp_1", "dispute_won:dp_1"])
        #expect(kinds.map(\.1).sorted() == [-6, 6])
        #expect(try await database.ledger.verify().isClean)
    }

    @Test("a spent purchase is held back only down to zero, the rest recorded as shortfall; a lost dispute keeps what it held")
    func shortfallAndLost() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.checkoutCompleted(
                        eventId: "evt_buy2",
                        sessionId: "cs_spent",
                        userId: "user_spent",
                        tokens: 10,
                        amount: 500,
                        paymentIntent: "pi_spent"
                    )
                ],
                to: client
            )
        }
        let database = try fixture.database()
        _ = try await database.ledger.post(LedgerPosting(userId: "user_spent", kind: .consume, delta: -10, idempotencyKey: "spent-10", actor: "test"))
        try await fixture.application().test(.router) { client in
            _ = try await Deliveries.deliverTwice(
                [
                    Self.dispute(
                        eventId: "evt_dp2",
                        type: "charge.dispute.created",
                        disputeId: "dp_2",
                        paymentIntent: "pi_spent",
                        amount: 500,
                        status: "needs_response"
                    ),
                    Self.dispute(
                        eventId: "evt_dp2_lost",
                        type: "charge.dispute.closed",
                        disputeId: "dp_2",
                        paymentIntent: "pi_spent",
                        amount: 500,
                        status: "lost"
                    ),
                ],
                to: client
            )
        }
        #expect(try await database.ledger.balance(userId: "user_spent")?.tokens == 0)
        let event = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_dp2"))
        #expect(event.outcome?.contains("shortfall 10") == true, "\(event.outcome ?? "")")
        #expect(try await database.ledger.verify().isClean)
    }

    @Test("out of order: won before opened holds nothing ever; lost before opened still holds when the opening arrives")
    func outOfOrder() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            _ = try await Deliveries.deliverTwice(
                [
                    Deliveries.checkoutCompleted(
                        eventId: "evt_buy3",
                        sessionId: "cs_won",
                        userId: "user_won",
                        tokens: 10,
                        amount: 500,
                        paymentIntent: "pi_won"
                    ),
                    Deliveries.checkoutCompleted(
                        eventId: "evt_buy4",
                        sessionId: "cs_lost",
                        userId: "user_lost",
                        tokens: 10,
                        amount: 500,
                        paymentIntent: "pi_lost"
                    ),
                    Self.dispute(
                        eventId: "evt_dp3_won",
                        type: "charge.dispute.closed",
                        disputeId: "dp_3",
                        paymentIntent: "pi_won",
                        amount: 500,
                        status: "won"
                    ),
                    Self.dispute(
                        eventId: "evt_dp3",
                        type: "charge.dispute.created",
                        disputeId: "dp_3",
                        paymentIntent: "pi_won",
                        amount: 500,
                        status: "needs_response"
                    ),
                    Self.dispute(
                        eventId: "evt_dp4_lost",
                        type: "charge.dispute.closed",
                        disputeId: "dp_4",
                        paymentIntent: "pi_lost",
                        amount: 500,
                        status: "lost"
                    ),
                    Self.dispute(
                        eventId: "evt_dp4",
                        type: "charge.dispute.created",
                        disputeId: "dp_4",
                        paymentIntent: "pi_lost",
                        amount: 500,
                        status: "needs_response"
                    ),
                ],
                to: client
            )
        }
        let database = try fixture.database()
        #expect(try await database.ledger.balance(userId: "user_won")?.tokens == 10)
        #expect(try await database.ledger.balance(userId: "user_lost")?.tokens == 0)
        #expect(try await database.ledger.verify().isClean)
    }
}

@Suite("Stripe events of other products")
struct ForeignEventTests {
    @Test("a paid Checkout Session that names no MyBA user is stored as ignored with the reason, not failed and retried")
    func checkoutWithoutUser() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let body = Deliveries.stripeEvent(
                id: "evt_other_product",
                type: "checkout.session.completed",
                object: [
                    "id": "cs_other", "object": "checkout.session", "amount_total": 900, "currency": "usd", "payment_status": "paid",
                    "payment_intent": "pi_other", "metadata": [String: String](),
                ]
            )
            try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(body),
                body: ByteBuffer(string: body)
            ) { response in
                #expect(response.status == .ok)
                #expect(response.object["status"] as? String == "ignored")
            }
        }
        let event = try #require(try await fixture.database().inbox.event(source: .stripe, eventId: "evt_other_product"))
        #expect(event.status == .ignored)
        #expect(event.outcome?.contains("not a MyBA purchase") == true)
        #expect(try await fixture.database().inbox.due(now: Date().addingTimeInterval(3600), maxAttempts: WebhookProcessor.maxAttempts).isEmpty)
    }
}

@Suite("Clerk user.updated")
struct ClerkUserUpdatedTests {
    @Test("user.updated keeps the customer's email its primary address")
    func emailFollowsClerk() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let created = Deliveries.clerkUser(type: "user.created", userId: "user_moved", email: "old@example.com")
            _ = try await client.execute(
                uri: "/api/webhook/clerk",
                method: .post,
                headers: Deliveries.svixHeaders(created, id: "msg_c"),
                body: ByteBuffer(string: created)
            )
            let updated = Deliveries.clerkUser(type: "user.updated", userId: "user_moved", email: "new@example.com")
            try await client.execute(
                uri: "/api/webhook/clerk",
                method: .post,
                headers: Deliveries.svixHeaders(updated, id: "msg_u"),
                body: ByteBuffer(string: updated)
            ) { response in
                #expect(response.object["status"] as? String == "processed")
            }
        }
        #expect(try await fixture.database().ledger.customer(userId: "user_moved")?.email == "new@example.com")
    }
}

@Suite("Events that arrive before their purchase")
struct LatePurchaseTests {
    @Test("a refund whose retries ran out before its purchase arrived is applied once the purchase is in")
    func refundAppliedWhenPurchaseArrives() async throws {
        let fixture = try webhookFixture { $0.webhookRetryIntervalSeconds = 1 }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let refund = Deliveries.chargeRefunded(
                eventId: "evt_refund_first",
                paymentIntent: "pi_late_buy",
                amount: 500,
                refunded: 500,
                userId: "user_late"
            )
            _ = try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(refund),
                body: ByteBuffer(string: refund)
            )
            // Its retries ran out while the purchase was missing.
            try await fixture.database().writerForTests.write { db in
                try db.execute(
                    sql: "UPDATE webhook_events SET attempts = ? WHERE event_id = 'evt_refund_first'",
                    arguments: [WebhookProcessor.maxAttempts]
                )
            }
            let purchase = Deliveries.checkoutCompleted(
                eventId: "evt_buy_late",
                sessionId: "cs_late_buy",
                userId: "user_late",
                tokens: 10,
                amount: 500,
                paymentIntent: "pi_late_buy"
            )
            _ = try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(purchase),
                body: ByteBuffer(string: purchase)
            )
            var status: WebhookEvent.Status?
            for _ in 0..<100 where status != .processed {
                try await Task.sleep(for: .milliseconds(100))
                status = try await fixture.database().inbox.event(source: .stripe, eventId: "evt_refund_first")?.status
            }
            #expect(status == .processed)
        }
        #expect(try await fixture.database().ledger.balance(userId: "user_late")?.tokens == 0)
        #expect(try await fixture.database().ledger.verify().isClean)
    }
}
