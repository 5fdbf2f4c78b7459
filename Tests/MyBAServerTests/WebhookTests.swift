import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Testing

@testable import MyBAOps
@testable import MyBAServer

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Webhooks")
struct WebhookTests {
    @Test("the same checkout.session.completed delivered 10 times at once grants the tokens once")
    func concurrentDuplicates() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        let body = Deliveries.checkoutCompleted(
            eventId: "evt_dup_1",
            sessionId: "cs_dup_1",
            userId: "user_buyer",
            tokens: 50,
            amount: 1600,
            paymentIntent: "pi_dup_1"
        )
        try await fixture.application().test(.live) { client in
            let port = try #require(client.port)
            let receipts = try await withThrowingTaskGroup(of: (Int, Bool?).self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/api/webhook/stripe")!)
                        request.httpMethod = "POST"
                        for field in Deliveries.stripeHeaders(body) { request.setValue(field.value, forHTTPHeaderField: field.name.rawName) }
                        request.httpBody = Data(body.utf8)
                        let (data, response) = try await URLSession.shared.data(for: request)
                        return (
                            (response as! HTTPURLResponse).statusCode, try jsonObject(String(decoding: data, as: UTF8.self))["duplicate"] as? Bool
                        )
                    }
                }
                return try await group.reduce(into: [(Int, Bool?)]()) { $0.append($1) }
            }
            #expect(receipts.allSatisfy { $0.0 == 200 })
            #expect(receipts.filter { $0.1 == false }.count == 1)
            #expect(receipts.filter { $0.1 == true }.count == 9)
        }
        let database = try fixture.database()
        let balance = try #require(try await database.ledger.balance(userId: "user_buyer"))
        #expect(balance.tokens == 50)
        #expect(balance.tokensPurchased == 50)
        #expect(balance.lastPurchase != nil)
        let event = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_dup_1"))
        #expect(event.status == .processed)
        #expect(event.entryIds.count == 1)
        #expect(event.headers["stripe-signature"]?.hasPrefix("t=") == true)
        #expect(try await database.ledger.customer(userId: "user_buyer")?.stripeCustomerId == "cus_user_buyer")
        #expect(try await database.ledger.verify().isClean)
    }

    @Test("bad, missing, stale or wrongly keyed signatures are 400 and store nothing")
    func rejected() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        let body = Deliveries.checkoutCompleted(
            eventId: "evt_bad",
            sessionId: "cs_bad",
            userId: "user_x",
            tokens: 10,
            amount: 400,
            paymentIntent: "pi_bad"
        )
        let clerkBody = Deliveries.clerkUser(type: "user.created", userId: "user_x", email: "x@example.com")
        try await fixture.application().test(.router) { client in
            var tampered = Deliveries.stripeHeaders(body)
            let altered = body.replacingOccurrences(of: "\"10\"", with: "\"1000\"")
            var noHeader = Deliveries.stripeHeaders(body)
            noHeader[HTTPField.Name("Stripe-Signature")!] = nil
            tampered[.contentType] = "application/json"
            let cases: [(HTTPFields, String)] = [
                (Deliveries.stripeHeaders(body, secret: "whsec_wrong"), body),
                (Deliveries.stripeHeaders(body, at: Date().addingTimeInterval(-600)), body),
                (noHeader, body),
                (tampered, altered),
            ]
            for (headers, payload) in cases {
                try await client.execute(uri: "/api/webhook/stripe", method: .post, headers: headers, body: ByteBuffer(string: payload)) { response in
                    #expect(response.status == .badRequest)
                    #expect(response.errorCode == "invalid_signature")
                }
            }
            for date in [Date().addingTimeInterval(-600), Date().addingTimeInterval(600)] {
                try await client.execute(
                    uri: "/api/webhook/clerk",
                    method: .post,
                    headers: Deliveries.svixHeaders(clerkBody, id: "msg_1", at: date),
                    body: ByteBuffer(string: clerkBody)
                ) { response in
                    #expect(response.status == .badRequest)
                }
            }
        }
        let stored = try await fixture.database().writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_events")! }
        #expect(stored == 0)
        #expect(try fixture.logLines().filter { $0["msg"] as? String == "webhook rejected" }.allSatisfy { $0["request.id"] != nil })
        #expect(try fixture.logLines().filter { $0["msg"] as? String == "webhook rejected" }.count == 6)
    }

    @Test("purchase, partial refund, full refund; a refund larger than the balance stops at zero and records the shortfall")
    func refunds() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            func deliver(_ body: String) async throws -> [String: Any] {
                try await client.execute(
                    uri: "/api/webhook/stripe",
                    method: .post,
                    headers: Deliveries.stripeHeaders(body),
                    body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .ok)
                    return try response.json
                }
            }
            _ = try await deliver(
                Deliveries.checkoutCompleted(
                    eventId: "evt_p1",
                    sessionId: "cs_p1",
                    userId: "user_r",
                    tokens: 50,
                    amount: 2000,
                    paymentIntent: "pi_p1"
                )
            )
            // 25 % refunded: 12 of 50 tokens go back (rounded down, in the customer's favour).
            _ = try await deliver(Deliveries.chargeRefunded(eventId: "evt_r1", paymentIntent: "pi_p1", amount: 2000, refunded: 500))
            var balance = try #require(try await fixture.database().ledger.balance(userId: "user_r"))
            #expect(balance.tokens == 50 - 12)
            #expect(balance.tokensPurchased == 50 - 12)
            // The customer spends most of what is left, then the rest is refunded.
            let database = try fixture.database()
            _ = try await database.ledger.consume(userId: "user_r", amount: 30, idempotencyKey: "spend", actor: "test")
            let receipt = try await deliver(Deliveries.chargeRefunded(eventId: "evt_r2", paymentIntent: "pi_p1", amount: 2000, refunded: 2000))
            #expect(receipt["status"] as? String == "processed")
            balance = try #require(try await database.ledger.balance(userId: "user_r"))
            #expect(balance.tokens == 0)
            let refund = try #require(try await database.ledger.entries(userId: "user_r", limit: 1).first)
            #expect(refund.kind == .paymentRefund)
            #expect(refund.delta == -8)
            #expect(refund.shortfall == 30)
            // Stripe re-sends the same cumulative refund as a new event: nothing more is taken.
            _ = try await deliver(Deliveries.chargeRefunded(eventId: "evt_r3", paymentIntent: "pi_p1", amount: 2000, refunded: 2000))
            #expect(try await database.ledger.entries(userId: "user_r", limit: 10).filter { $0.kind == .paymentRefund }.count == 2)
            #expect(try await database.ledger.verify().isClean)
            let outcome = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_r2")?.outcome)
            #expect(outcome.contains("shortfall 30"))
        }
    }

    @Test("a refund that arrives before its purchase fails, then succeeds on retry once the purchase is in")
    func outOfOrder() async throws {
        // The retry worker's own pass must not race the assertions on a loaded machine: it runs
        // at start-up (nothing is due then) and not again within the test.
        let fixture = try webhookFixture { $0.webhookRetryIntervalSeconds = 3600 }
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        try await app.test(.router) { client in
            let refund = Deliveries.chargeRefunded(eventId: "evt_early", paymentIntent: "pi_late", amount: 500, refunded: 500, userId: "user_o")
            try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(refund),
                body: ByteBuffer(string: refund)
            ) { response in
                #expect(response.status == .ok)
                #expect(response.object["status"] as? String == "failed")
            }
            let purchase = Deliveries.checkoutCompleted(
                eventId: "evt_late",
                sessionId: "cs_late",
                userId: "user_o",
                tokens: 10,
                amount: 500,
                paymentIntent: "pi_late"
            )
            _ = try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(purchase),
                body: ByteBuffer(string: purchase)
            )
        }
        let database = try fixture.database()
        let failed = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_early"))
        #expect(failed.status == .failed)
        // The purchase made it due again at once, its attempts counted anew.
        #expect(failed.attempts == 0)
        #expect(failed.lastError?.contains("pi_late") == true)
        // The retry worker's pass, once the backoff has elapsed.
        let due = try await database.inbox.due(now: Date().addingTimeInterval(60), maxAttempts: WebhookProcessor.maxAttempts)
        #expect(due.map(\.1) == ["evt_early"])
        let processor = WebhookProcessor(database: database)
        _ = try await processor.process(source: .stripe, eventId: "evt_early", logger: .init(label: "test"))
        #expect(try await database.inbox.event(source: .stripe, eventId: "evt_early")?.status == .processed)
        #expect(try await database.ledger.balance(userId: "user_o")?.tokens == 0)
        #expect(try await database.ledger.verify().isClean)
    }

    @Test(
        "Clerk user.created opens the customer with its primary email and the welcome grant, shared with the API's lazy grant; user.deleted keeps the ledger"
    )
    func clerkUsers() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let created = Deliveries.clerkUser(type: "user.created", userId: "user_clerk", email: "ada@example.com")
            for _ in 0..<2 {
                try await client.execute(
                    uri: "/api/webhook/clerk",
                    method: .post,
                    headers: Deliveries.svixHeaders(created, id: "msg_created"),
                    body: ByteBuffer(string: created)
                ) { response in
                    #expect(response.status == .ok)
                }
            }
            try await client.execute(uri: "/api/user-tokens/user_clerk", method: .get, headers: bearer("dev:user_clerk")) { response in
                #expect(response.object["tokens"] as? Int == 6)
            }
            let deleted = Deliveries.clerkUser(type: "user.deleted", userId: "user_clerk")
            _ = try await client.execute(
                uri: "/api/webhook/clerk",
                method: .post,
                headers: Deliveries.svixHeaders(deleted, id: "msg_deleted"),
                body: ByteBuffer(string: deleted)
            )
            let other = Deliveries.clerkUser(type: "session.created", userId: "user_clerk", email: "ada@example.com")
            try await client.execute(
                uri: "/api/webhook/clerk",
                method: .post,
                headers: Deliveries.svixHeaders(other, id: "msg_other"),
                body: ByteBuffer(string: other)
            ) { response in
                #expect(response.object["status"] as? String == "ignored")
            }
        }
        let database = try fixture.database()
        let customer = try #require(try await database.ledger.customer(userId: "user_clerk"))
        #expect(customer.email == "ada@example.com")
        #expect(customer.deletedAt != nil)
        #expect(try await database.ledger.entries(userId: "user_clerk", limit: 10).map(\.kind) == [.welcome])
        #expect(try await database.inbox.event(source: .clerk, eventId: "msg_deleted")?.status == .processed)
    }
}

/// The real binary, killed between storing a delivery and processing it.
@Suite("Webhook crash recovery", .serialized)
struct WebhookCrashTests {
    @Test("a server killed (SIGKILL) after storing a delivery processes it exactly once after restart")
    func killedAfterStore() async throws {
        let directory = try TemporaryDirectory("myba-webhook-crash")
        defer { directory.remove() }
        let environment = [
            "PORT": "0", "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret, "MYBA_DATABASE": directory.file("myba.sqlite"),
            "MYBA_LOG_FILE": directory.file("myba.jsonl"), "MYBA_WEBHOOK_RETRY_SECONDS": "1",
        ]
        let body = Deliveries.checkoutCompleted(
            eventId: "evt_crash",
            sessionId: "cs_crash",
            userId: "user_crash",
            tokens: 10,
            amount: 400,
            paymentIntent: "pi_crash"
        )

        let doomed = try await RunningServer.start(environment: environment.merging(["MYBA_FAULT_INJECTION": "kill-after-webhook-store"]) { $1 })
        _ = try? await doomed.post("/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body))
        let ending = try await doomed.process.wait(timeout: .seconds(30))
        #expect(ending.bySignal && ending.status == SIGKILL)

        let database = try AppDatabase.openFile(at: directory.file("myba.sqlite"), options: .init(createIfMissing: false))
        #expect(try await database.inbox.event(source: .stripe, eventId: "evt_crash")?.status == .received)
        #expect(try await database.ledger.balance(userId: "user_crash") == nil)

        let restarted = try await RunningServer.start(environment: environment)
        defer { restarted.stop() }
        // Stripe retries the delivery too: the redelivery must not grant a second time.
        let (status, _) = try await restarted.post("/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body))
        #expect(status == 200)
        let deadline = Date().addingTimeInterval(10)
        while try await database.inbox.event(source: .stripe, eventId: "evt_crash")?.status != .processed, Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await database.inbox.event(source: .stripe, eventId: "evt_crash")?.status == .processed)
        #expect(try await database.ledger.balance(userId: "user_crash")?.tokens == 10)
        #expect(try await database.ledger.verify().isClean)
    }
}
