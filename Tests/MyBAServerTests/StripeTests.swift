import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import NIOCore
import StripeEmulator
import Testing

@testable import MyBAOps
@testable import MyBAServer

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Stripe client against the emulator")
struct StripeClientTests {
    @Test("customers: create, retrieve, merge and unset metadata, list newest first across pages")
    func customers() async throws {
        try await withStripeEmulator { _, base in
            let stripe = try stripeClient(base)
            var ids: [String] = []
            for index in 0..<5 {
                let customer = try await stripe.createCustomer(
                    email: "c\(index)@example.com",
                    metadata: ["user_id": "user_\(index)", "tokens": "6"],
                    idempotencyKey: "k\(index)"
                )
                ids.append(customer.id)
            }
            let updated = try await stripe.updateCustomerMetadata(
                ids[0],
                metadata: ["tokens": "9", "last_purchase": nil, "tokens_used": "1"],
                idempotencyKey: "u1"
            )
            #expect(updated.metadata?.values == ["user_id": "user_0", "tokens": "9", "tokens_used": "1"])
            let unset = try await stripe.updateCustomerMetadata(ids[0], metadata: ["tokens_used": nil], idempotencyKey: "u2")
            #expect(unset.metadata?["tokens_used"] == nil)
            #expect(try await stripe.retrieveCustomer(ids[0]).email == "c0@example.com")
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await stripe.listCustomers(limit: 2, startingAfter: cursor)
                seen += page.data.map(\.id)
                cursor = page.hasMore ? seen.last : nil
            } while cursor != nil
            #expect(seen == ids.reversed())
        }
    }

    @Test("an Idempotency-Key replays the first answer; the same key with other parameters is Stripe's idempotency_error")
    func idempotency() async throws {
        try await withStripeEmulator { _, base in
            let stripe = try stripeClient(base)
            let first = try await stripe.createCustomer(email: "a@example.com", metadata: [:], idempotencyKey: "same-key")
            let again = try await stripe.createCustomer(email: "a@example.com", metadata: [:], idempotencyKey: "same-key")
            #expect(first.id == again.id)
            let error = try await #require(throws: StripeError.self) {
                _ = try await stripe.createCustomer(email: "b@example.com", metadata: [:], idempotencyKey: "same-key")
            }
            #expect(error.type == "idempotency_error")
            #expect(error.status == 400)
            #expect(try await stripe.listCustomers().data.count == 1)
        }
    }

    @Test("a publishable key is refused with 401 and a message saying so")
    func keyCheck() async throws {
        try await withStripeEmulator { _, base in
            let stripe = try StripeClient(settings: StripeSettings(secretKey: "sk_placeholder", apiBase: base), http: CurlHTTPClient())
            _ = try await stripe.listCustomers()
            var request = URLRequest(url: base.appendingPathComponent("v1/customers"))
            request.setValue("Bearer pk_test_123", forHTTPHeaderField: "Authorization")
            let (data, response) = try await URLSession.shared.data(for: request)
            #expect((response as! HTTPURLResponse).statusCode == 401)
            #expect(String(decoding: data, as: UTF8.self).contains("invalid_request_error"))
        }
    }

    @Test("429 and 500 are retried as stripe-python does; a request still failing reports an actionable error")
    func retries() async throws {
        try await withStripeEmulator(StripeEmulator(faults: StripeFaults(serverErrorShare: 1))) { emulator, base in
            var stripe = try stripeClient(base)
            stripe.maxRetries = 2
            let error = try await #require(throws: StripeError.self) { _ = try await stripe.listCustomers() }
            #expect(error.status == 500)
            #expect(error.description.contains("Stripe had an internal error"))
            #expect(await emulator.requestCount() == 3)
            // 30 % of requests refused: with 12 retries a request fails only with 0.3^13 ≈ 2e-7.
            await emulator.setFaults(StripeFaults(rateLimitShare: 0.3))
            for index in 0..<10 {
                stripe.maxRetries = 12
                _ = try await stripe.createCustomer(email: nil, metadata: ["n": "\(index)"], idempotencyKey: "retry-\(index)")
            }
            await emulator.setFaults(StripeFaults(dropShare: 1))
            stripe.maxRetries = 1
            let dropped = try await #require(throws: StripeError.self) { _ = try await stripe.listCustomers() }
            #expect(dropped.status == nil)
            #expect(dropped.description.contains("could not be reached"))
            await emulator.setFaults(StripeFaults())
            #expect(try await stripe.listCustomers().data.count == 10)
        }
    }
}

@Suite("Checkout, purchases and the Stripe mirror", .serialized)
struct CheckoutTests {
    @Test("checkout prices the first purchase 20 % off, the emulator pays, the signed webhook grants the tokens once")
    func checkoutToTokens() async throws {
        try await withStripeEmulator { emulator, stripeBase in
            let fixture = try webhookFixture { settings in
                settings.stripe.secretKey = "sk_test_myba"
                settings.stripe.apiBase = stripeBase
                settings.publicURL = "https://app.example"
            }
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                await emulator.addWebhookEndpoint(
                    EmulatorWebhookEndpoint(url: "http://127.0.0.1:\(client.port!)/api/webhook/stripe", secret: stripeWebhookSecret)
                )
                let stripe = try stripeClient(stripeBase)
                var sessions: [[String: Any]] = []
                for _ in 0..<2 {
                    let created = try await client.execute(
                        uri: "/api/create-checkout-session",
                        method: .post,
                        headers: bearer("dev:user_buyer"),
                        body: jsonBody(["planId": "starter", "userId": "user_buyer"])
                    ) { response in
                        #expect(response.status == .ok)
                        return try response.json
                    }
                    let sessionId = try #require(created["sessionId"] as? String)
                    // The emulator's hosted checkout page for this session.
                    #expect((created["url"] as? String)?.hasSuffix("/checkout/\(sessionId)") == true)
                    let session = try await stripe.request("GET", "/v1/checkout/sessions/\(sessionId)")
                    sessions.append(session)
                    // The customer pays; the emulator delivers checkout.session.completed to the server.
                    let paid = try await stripe.request("POST", "/test/checkout/sessions/\(sessionId)/complete")
                    // The charge carries the user, so its refunds and disputes are known as MyBA's
                    // even before the purchase event.
                    let intent = try await stripe.request("GET", "/v1/payment_intents/\(try #require(paid["payment_intent"] as? String))")
                    let charge = try await stripe.request("GET", "/v1/charges/\(try #require(intent["latest_charge"] as? String))")
                    #expect((charge["metadata"] as? [String: Any])?["user_id"] as? String == "user_buyer")
                }
                #expect(sessions.map { $0["amount_total"] as? Int } == [400, 500])
                let metadata = try #require(sessions.first?["metadata"] as? [String: Any])
                #expect(metadata["user_id"] as? String == "user_buyer")
                #expect(metadata["plan_id"] as? String == "starter")
                #expect(metadata["tokens"] as? String == "10")
                #expect(sessions.first?["client_reference_id"] as? String == "user_buyer")
                #expect((sessions.first?["success_url"] as? String)?.hasPrefix("https://app.example/") == true)

                try await client.execute(uri: "/api/user-tokens/user_buyer", method: .get, headers: bearer("dev:user_buyer")) { response in
                    let body = try response.json
                    #expect(body["tokens"] as? Int == 6 + 10 + 10)
                    #expect(body["tokensPurchased"] as? Int == 20)
                }
                try await client.execute(
                    uri: "/api/create-checkout-session",
                    method: .post,
                    headers: bearer("dev:user_buyer"),
                    body: jsonBody(["planId": "platinum"])
                ) { response in
                    #expect(response.status == .badRequest)
                    #expect(response.errorCode == "unknown_plan")
                }
                try await client.execute(
                    uri: "/api/create-checkout-session",
                    method: .post,
                    headers: bearer("dev:user_buyer"),
                    body: jsonBody(["planId": "starter", "userId": "user_other"])
                ) { response in
                    #expect(response.status == .forbidden)
                }

                // A refund through Stripe comes back as charge.refunded and takes the tokens back.
                let paymentIntent = try #require(
                    try await stripe.request("GET", "/v1/checkout/sessions/\(sessions[1]["id"] as! String)")["payment_intent"] as? String
                )
                _ = try await stripe.createRefund(
                    paymentIntent: paymentIntent,
                    amount: nil,
                    reason: "requested_by_customer",
                    idempotencyKey: "refund-1"
                )
                let database = try fixture.database()
                let deadline = Date().addingTimeInterval(10)
                while try await database.ledger.balance(userId: "user_buyer")?.tokens != 16, Date() < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(try await database.ledger.balance(userId: "user_buyer")?.tokens == 16)
                let overRefund = try await #require(throws: StripeError.self) {
                    _ = try await stripe.createRefund(paymentIntent: paymentIntent, amount: 1, reason: nil, idempotencyKey: "refund-2")
                }
                #expect(overRefund.status == 400)
                #expect(try await database.ledger.verify().isClean)
            }
        }
    }

    @Test("Clerk user.created with Stripe configured gets a Stripe customer with email, user_id and the balance keys")
    func clerkUserGetsStripeCustomer() async throws {
        try await withStripeEmulator { _, stripeBase in
            let fixture = try webhookFixture { settings in
                settings.stripe.secretKey = "sk_test_myba"
                settings.stripe.apiBase = stripeBase
                settings.mirrorIntervalMilliseconds = 50
            }
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                let created = Deliveries.clerkUser(type: "user.created", userId: "user_new", email: "new@example.com")
                _ = try await client.execute(
                    uri: "/api/webhook/clerk",
                    method: .post,
                    headers: Deliveries.svixHeaders(created, id: "msg_new"),
                    body: ByteBuffer(string: created)
                )
                let database = try fixture.database()
                let deadline = Date().addingTimeInterval(10)
                while Date() < deadline {
                    let linked = try await database.ledger.customer(userId: "user_new")?.stripeCustomerId != nil
                    let drained = try await database.outbox.status().depth == 0
                    if linked && drained { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let customers = try await stripeClient(stripeBase).listCustomers().data
                #expect(customers.count == 1)
                #expect(customers.first?.email == "new@example.com")
                let metadata = customers.first?.metadata?.values
                #expect(metadata?["user_id"] == "user_new")
                #expect(metadata?["tokens"] == "6")
                #expect(metadata?["tokens_used"] == "0")
            }
        }
    }

    @Test("without a Stripe key checkout answers 503 payments_disabled")
    func paymentsDisabled() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(
                uri: "/api/create-checkout-session",
                method: .post,
                headers: bearer("dev:user_a"),
                body: jsonBody(["planId": "starter"])
            ) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.errorCode == "payments_disabled")
            }

        }
    }

    @Test("with Stripe down users keep consuming; when it returns the outbox drains and metadata equals the ledger for every customer")
    func mirrorThroughOutage() async throws {
        try await withStripeEmulator(StripeEmulator(faults: StripeFaults(serverErrorShare: 1))) { emulator, stripeBase in
            let fixture = try ServerFixture { settings in
                settings.stripe.secretKey = "sk_test_myba"
                settings.stripe.apiBase = stripeBase
                settings.mirrorIntervalMilliseconds = 50
            }
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                for user in 0..<5 {
                    for index in 0..<3 {
                        try await client.execute(
                            uri: "/api/generate",
                            method: .post,
                            headers: bearer("dev:user_m\(user)"),
                            body: jsonBody(["input": "ticket \(index)"])
                        ) { response in
                            #expect(response.status == .ok)
                        }
                    }
                }
                try await client.execute(uri: "/api/health", method: .get) { response in
                    let body = response.object
                    #expect(body["status"] as? String == "ok")
                    #expect(body["outboxDepth"] as? Int == 5)
                }
                await emulator.setFaults(StripeFaults())
                let database = try fixture.database()
                let deadline = Date().addingTimeInterval(20)
                while try await database.outbox.status().depth > 0, Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
                #expect(try await database.outbox.status().depth == 0)
                let stripe = try stripeClient(stripeBase)
                let customers = try await stripe.listCustomers().data
                #expect(customers.count == 5)
                for customer in customers {
                    let metadata = try #require(customer.metadata?.values)
                    let userId = try #require(metadata["user_id"])
                    let balance = try #require(try await database.ledger.balance(userId: userId))
                    #expect(metadata["tokens"] == "3")
                    #expect(metadata["tokens_used"] == "3")
                    #expect(metadata["tokens_purchased"] == "0")
                    #expect(metadata["tokens"] == String(balance.tokens))
                    #expect(try await database.ledger.customer(userId: userId)?.stripeCustomerId == customer.id)
                }
            }
        }
    }
}

@Suite("Checkout idempotency keys")
struct CheckoutIdempotencyKeyTests {
    @Test("the same request maps to the same key, another plan or price to another, and no key exceeds Stripe's 255 characters")
    func keys() {
        let key = StripeClient.checkoutIdempotencyKey(userId: "user_1", planId: "starter", amount: 400, requestKey: "req_1")
        #expect(key == StripeClient.checkoutIdempotencyKey(userId: "user_1", planId: "starter", amount: 400, requestKey: "req_1"))
        #expect(key != StripeClient.checkoutIdempotencyKey(userId: "user_1", planId: "professional", amount: 400, requestKey: "req_1"))
        #expect(key != StripeClient.checkoutIdempotencyKey(userId: "user_1", planId: "starter", amount: 500, requestKey: "req_1"))
        let longUser = String(repeating: "u", count: 128)
        let longKey = String(repeating: "k", count: 128)
        let long = StripeClient.checkoutIdempotencyKey(userId: longUser, planId: "enterprise", amount: 6000, requestKey: longKey)
        #expect(long.utf8.count <= 255)
        #expect(
            long
                != StripeClient.checkoutIdempotencyKey(
                    userId: longUser,
                    planId: "enterprise",
                    amount: 6000,
                    requestKey: String(longKey.dropLast()) + "j"
                )
        )
    }
}
