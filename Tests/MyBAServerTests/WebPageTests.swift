import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// The web page's server side as a client meets it; the page itself runs in Chromium in
/// `Tests/browser/journey.py` (run by `scripts/test.sh`).
@Suite("Web page and account endpoints")
struct WebPageTests {
    @Test("pages and modules: strict CSP, nosniff, ETag revalidation (304), unknown files 404 JSON; development config")
    func pagesAndAssets() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            var etag = ""
            for path in ["/", "/pricing", "/payment-success"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                    let policy = response.headers[.contentSecurityPolicy] ?? ""
                    #expect(
                        policy.contains("default-src 'none'") && policy.contains("script-src 'self';") && policy.contains("frame-ancestors 'none'")
                    )
                    #expect(!policy.contains("unsafe-inline"), "\(policy)")
                    #expect(response.headers[.xContentTypeOptions] == "nosniff")
                    #expect(String(buffer: response.body).contains("data-test=\"ticket-input\""))
                    etag = response.headers[.eTag] ?? ""
                }
            }
            try await client.execute(uri: "/", method: .get, headers: [.ifNoneMatch: etag]) { response in
                #expect(response.status == .notModified)
                #expect(response.body.readableBytes == 0)
            }
            try await client.execute(uri: "/app/app.js", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/javascript; charset=utf-8")
            }
            for path in ["/app/..%2F..%2Fetc%2Fpasswd", "/app/secrets.json"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .notFound, "\(path)")
                    #expect(response.errorCode == "not_found")
                }
            }
            try await client.execute(uri: "/api/config", method: .get) { response in
                let config = try response.json
                #expect(config["authMode"] as? String == "development")
                #expect(config["clerkScriptURL"] == nil)
                #expect(config["anonymousTokens"] as? Int == 3)
            }
        }
    }

    @Test("with a publishable key the CSP admits Clerk's Frontend API and the config names the SDK's URL")
    func clerkPolicy() async throws {
        let fixture = try ServerFixture { settings in
            settings.auth.jwksURL = URL(string: "https://clever-cat-12.clerk.accounts.dev/.well-known/jwks.json")
            settings.auth.publishableKey = "pk_test_" + Data("clever-cat-12.clerk.accounts.dev$".utf8).base64EncodedString()
        }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                let policy = response.headers[.contentSecurityPolicy] ?? ""
                #expect(policy.contains("script-src 'self' https://clever-cat-12.clerk.accounts.dev"), "\(policy)")
                #expect(policy.contains("connect-src 'self' https://clever-cat-12.clerk.accounts.dev"), "\(policy)")
            }
            try await client.execute(uri: "/api/config", method: .get) { response in
                let config = try response.json
                #expect(config["authMode"] as? String == "clerk")
                #expect(config["clerkScriptURL"] as? String == "https://clever-cat-12.clerk.accounts.dev/npm/@clerk/clerk-js@5/dist/clerk.browser.js")
            }
        }
        #expect(AuthSettings.frontendAPIHost(publishableKey: "pk_test_" + Data("evil.example/x\"$".utf8).base64EncodedString()) == nil)
        #expect(AuthSettings.frontendAPIHost(publishableKey: "sk_test_abc") == nil)
    }

    @Test("/api/account reports the welcome grant once; another user's purchase reads as pending; a malformed session id is 400")
    func accountAndPurchases() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let alice: HTTPFields = [.authorization: "Bearer dev:user_alice"]
            try await client.execute(uri: "/api/account", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/api/account", method: .get, headers: alice) { response in
                let account = try response.json
                #expect(account["welcomeGranted"] as? Int == 6)
                #expect(account["tokens"] as? Int == 6)
                #expect(account["firstPurchaseDiscountPercent"] as? Int == 20)
            }
            try await client.execute(uri: "/api/account", method: .get, headers: alice) { response in
                let again = try response.json
                #expect(again["welcomeGranted"] == nil)
            }
            // Bob's paid session, asked about by Alice: pending, nothing told.
            try await client.execute(uri: "/api/account", method: .get, headers: [.authorization: "Bearer dev:user_bob"]) { _ in }
            let event = Deliveries.checkoutCompleted(
                eventId: "evt_bob_1",
                sessionId: "cs_bob_1",
                userId: "user_bob",
                tokens: 10,
                amount: 400,
                paymentIntent: "pi_bob_1"
            )
            try await client.execute(
                uri: "/api/webhook/stripe",
                method: .post,
                headers: Deliveries.stripeHeaders(event),
                body: ByteBuffer(string: event)
            ) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/api/account/purchases/cs_bob_1", method: .get, headers: alice) { response in
                let status = try response.json
                #expect(status["status"] as? String == "pending")
                #expect(status["tokens"] == nil)
            }
            try await client.execute(uri: "/api/account/purchases/cs_bob_1", method: .get, headers: [.authorization: "Bearer dev:user_bob"]) {
                response in
                let status = try response.json
                #expect(status["status"] as? String == "granted")
                #expect(status["tokens"] as? Int == 10)
            }
            try await client.execute(uri: "/api/account/purchases/cs%27%3B--", method: .get, headers: alice) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test("balance listeners: woken after an entry commits, at most the limit per account, forgotten when they end")
    func balanceChanges() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        let database = try AppDatabase.openFile(at: fixture.settings.databasePath)
        _ = try await database.ledger.openAccount(userId: "user_listener", email: nil, actor: "test", requestId: nil)
        let changes = BalanceChanges.shared
        var subscriptions = (0..<AccountController.streamsPerAccount).compactMap { _ in
            changes.subscribe(userId: "user_listener", limit: AccountController.streamsPerAccount)
        }
        #expect(subscriptions.count == AccountController.streamsPerAccount)
        #expect(changes.subscribe(userId: "user_listener", limit: AccountController.streamsPerAccount) == nil)
        _ = try await database.ledger.post(
            LedgerPosting(userId: "user_listener", kind: .adjust, delta: 2, idempotencyKey: "web:adjust:1", actor: "operator:test", reason: "test")
        )
        // Woken, within a bound: a missing notification fails here instead of hanging the run.
        let wakeUps = subscriptions[0].wakeUps
        let woken = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                var iterator = wakeUps.makeAsyncIterator()
                return await iterator.next() != nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(woken, "the listener was not woken by the committed entry")
        for subscription in subscriptions { subscription.cancel() }
        subscriptions.removeAll()
        #expect(changes.listenerCount(userId: "user_listener") == 0)
    }
}
