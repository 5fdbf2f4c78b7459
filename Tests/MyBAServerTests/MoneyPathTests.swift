import Foundation
import HTTPTypes
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// Issue 14, at the level a caller meets it: the real `myba-server` binary over loopback, with
/// OpenRouter played by `FakeUpstream`.
@Suite("Money path: who pays for what", .serialized)
struct MoneyPathTests {
    static let json: HTTPFields = [.contentType: "application/json"]

    func object(_ data: Data) throws -> [String: Any] { try jsonObject(String(decoding: data, as: UTF8.self)) }

    @Test(
        "provider myba calls only MYBA_AI_MODELS: another model is 400 unknown_model naming the allowed ones, nothing spent and nothing sent upstream; an allowed model goes first; the caller's own key may name any model"
    )
    func mybaModelsOnly() async throws {
        let directory = try TemporaryDirectory("myba-models")
        defer { directory.remove() }
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let server = try await RunningServer.start(environment: [
                "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": directory.file("myba.jsonl"),
                "OPENROUTER_API_KEY": "sk-or-server-key", "OPENROUTER_API_BASE": base.appendingPathComponent("api/v1").absoluteString,
                "OPENAI_API_BASE": base.appendingPathComponent("v1").absoluteString, "MYBA_AI_MODELS": "ok-json,ok-markdown",
            ])
            defer { server.stop() }
            let session = try object(try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-models"}"#, headers: Self.json).1)
            let sessionId = try #require(session["sessionId"] as? String)

            // A free anonymous session asks for an expensive model.
            let (status, body) = try await server.post(
                "/api/generate",
                body: #"{"input":"Export reports as CSV","sessionId":"\#(sessionId)","model":"openai/o1-pro"}"#,
                headers: Self.json
            )
            #expect(status == 400)
            let error = try #require(try object(body)["error"] as? [String: Any])
            #expect(error["code"] as? String == "unknown_model")
            #expect((error["message"] as? String)?.contains("ok-json, ok-markdown") == true)
            #expect(upstream.requests.filter { $0.path == "openrouter" }.isEmpty)
            let again = try object(try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-models"}"#, headers: Self.json).1)
            #expect(again["tokensRemaining"] as? Int == 3)

            // One of MyBA's models, named: tried first.
            var user = Self.json
            user[.authorization] = "Bearer dev:user_models"
            let (okStatus, okBody) = try await server.post(
                "/api/generate",
                body: #"{"input":"Export reports as CSV","model":"ok-markdown"}"#,
                headers: user
            )
            #expect(okStatus == 200)
            #expect(try object(okBody)["model"] as? String == "ok-markdown")
            #expect(upstream.requests.filter { $0.path == "openrouter" }.map { $0.body["model"] as? String } == ["ok-markdown"])

            // The caller's own key pays for itself: any model.
            let (ownStatus, ownBody) = try await server.post(
                "/api/generate",
                body: #"{"input":"Export reports as CSV","provider":"openai","apiKey":"sk-caller-own","model":"gpt-anything"}"#,
                headers: user
            )
            #expect(ownStatus == 200)
            #expect(try object(ownBody)["model"] as? String == "gpt-anything")
        }
    }

    @Test("an anonymous session id never reaches the log: creation, a failed generation, a replay and the transfer log its digest instead")
    func sessionIdsStayOutOfLogs() async throws {
        let directory = try TemporaryDirectory("myba-session-logs")
        defer { directory.remove() }
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let logPath = directory.file("myba.jsonl")
            let server = try await RunningServer.start(environment: [
                "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": logPath,
                "OPENROUTER_API_KEY": "sk-or-server-key", "OPENROUTER_API_BASE": base.appendingPathComponent("api/v1").absoluteString,
                "MYBA_AI_MODELS": "fail-401,ok-json",
            ])
            defer { server.stop() }
            let session = try object(try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-logs"}"#, headers: Self.json).1)
            let sessionId = try #require(session["sessionId"] as? String)
            var keyed = Self.json
            keyed[.idempotencyKey] = "ticket-1"
            // fail-401 stops the chain: the generation fails and its token is released.
            #expect(
                try await server.post("/api/generate", body: #"{"input":"Export reports as CSV","sessionId":"\#(sessionId)"}"#, headers: Self.json).0
                    == 502
            )
            #expect(
                try await server.post(
                    "/api/generate",
                    body: #"{"input":"Export reports as CSV","sessionId":"\#(sessionId)","model":"ok-json"}"#,
                    headers: keyed
                ).0 == 200
            )
            #expect(
                try await server.post(
                    "/api/generate",
                    body: #"{"input":"Export reports as CSV","sessionId":"\#(sessionId)","model":"ok-json"}"#,
                    headers: keyed
                ).0 == 200
            )
            var user = Self.json
            user[.authorization] = "Bearer dev:user_logs"
            #expect(try await server.post("/api/transfer-anonymous-tokens", body: #"{"sessionId":"\#(sessionId)"}"#, headers: user).0 == 200)

            let log = try String(contentsOfFile: logPath, encoding: .utf8)
            let digest = SessionDigest.of(sessionId)
            #expect(!log.contains(sessionId), "the session id is in the log")
            for message in ["anonymous session created", "generation failed; token released", "generation replayed", "anonymous tokens transferred"] {
                let line = log.split(separator: "\n").first { $0.contains("\"msg\":\"\(message)\"") }
                #expect(line?.contains(digest) == true, "\(message): \(line ?? "no line")")
            }
        }
    }

    @Test(
        "one account receives at most MYBA_MAX_SESSION_TRANSFERS anonymous sessions: the answer says how many are left, the next is 409 transfer_limit_reached and that session keeps its tokens"
    )
    func transferCap() async throws {
        let directory = try TemporaryDirectory("myba-transfer-cap")
        defer { directory.remove() }
        let server = try await RunningServer.start(environment: [
            "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": directory.file("myba.jsonl"),
            "MYBA_MAX_SESSION_TRANSFERS": "2",
        ])
        defer { server.stop() }
        var sessions: [String] = []
        for index in 0..<3 {
            let session = try object(
                try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-cap-\#(index)"}"#, headers: Self.json).1
            )
            sessions.append(try #require(session["sessionId"] as? String))
        }
        var farmer = Self.json
        farmer[.authorization] = "Bearer dev:user_farmer"
        var answers: [[String: Any]] = []
        var statuses: [Int] = []
        for sessionId in sessions {
            let (status, body) = try await server.post("/api/transfer-anonymous-tokens", body: #"{"sessionId":"\#(sessionId)"}"#, headers: farmer)
            statuses.append(status)
            answers.append(try object(body))
        }
        #expect(statuses == [200, 200, 409])
        #expect(answers[0]["transfersLeft"] as? Int == 1)
        #expect(answers[1]["transfersLeft"] as? Int == 0)
        #expect(answers[1]["tokens"] as? Int == 12)
        #expect((answers[2]["error"] as? [String: Any])?["code"] as? String == "transfer_limit_reached")
        // The refused session keeps its tokens; another account may still receive it.
        let kept = try object(try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-cap-2"}"#, headers: Self.json).1)
        #expect(kept["tokensRemaining"] as? Int == 3)
        var other = Self.json
        other[.authorization] = "Bearer dev:user_other"
        let (otherStatus, otherBody) = try await server.post(
            "/api/transfer-anonymous-tokens",
            body: #"{"sessionId":"\#(sessions[2])"}"#,
            headers: other
        )
        #expect(otherStatus == 200)
        #expect(try object(otherBody)["transferred"] as? Int == 3)
        // Repeating a transfer already made still answers, moving nothing.
        let (again, againBody) = try await server.post("/api/transfer-anonymous-tokens", body: #"{"sessionId":"\#(sessions[0])"}"#, headers: farmer)
        #expect(again == 200)
        #expect(try object(againBody)["transferred"] as? Int == 0)
        let (_, balance) = try await server.get("/api/user-tokens/user_farmer", headers: farmer)
        #expect(try object(balance)["tokens"] as? Int == 12)
    }

    @Test(
        "after Clerk's user.deleted the user's session tokens are refused with 403 account_deleted on every route, at once for spending; a user deleted before any request, or whose user.created arrives late, never gets a welcome grant"
    )
    func deletedUsersStopSpending() async throws {
        let directory = try TemporaryDirectory("myba-deleted-user")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let server = try await RunningServer.start(environment: [
            "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": directory.file("myba.jsonl"), "CLERK_WEBHOOK_SECRET": clerkWebhookSecret,
        ])
        defer { server.stop() }
        var user = Self.json
        user[.authorization] = "Bearer dev:user_gone"
        #expect(try await server.post("/api/generate", body: #"{"input":"Export reports as CSV"}"#, headers: user).0 == 200)

        let deleted = Deliveries.clerkUser(type: "user.deleted", userId: "user_gone")
        #expect(try await server.post("/api/webhook/clerk", body: deleted, headers: Deliveries.svixHeaders(deleted, id: "msg_gone")).0 == 200)
        // Spending is refused at once, the signed-in cache notwithstanding.
        let spend = try await server.post("/api/generate", body: #"{"input":"Export reports as CSV"}"#, headers: user)
        #expect(spend.0 == 403)
        #expect((try object(spend.1)["error"] as? [String: Any])?["code"] as? String == "account_deleted")
        // Every route, once the few seconds the sign-in check trusts what it saw have passed.
        try await Task.sleep(for: .seconds(5.2))
        let session = try object(try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-gone"}"#, headers: Self.json).1)
        let routes: [(String, String?)] = [
            ("/api/user-tokens/user_gone", nil), ("/api/generate", #"{"input":"Export reports as CSV"}"#),
            ("/api/transfer-anonymous-tokens", #"{"sessionId":"\#(session["sessionId"] as? String ?? "")"}"#),
            ("/api/create-checkout-session", #"{"planId":"starter"}"#),
        ]
        for (path, body) in routes {
            let answer = body == nil ? try await server.get(path, headers: user) : try await server.post(path, body: body!, headers: user)
            #expect(answer.0 == 403, "\(path): \(String(decoding: answer.1, as: UTF8.self))")
            #expect((try object(answer.1)["error"] as? [String: Any])?["code"] as? String == "account_deleted", "\(path)")
        }

        // Deleted before any request; then a late user.created: no account, no welcome grant.
        let early = Deliveries.clerkUser(type: "user.deleted", userId: "user_early")
        #expect(try await server.post("/api/webhook/clerk", body: early, headers: Deliveries.svixHeaders(early, id: "msg_early")).0 == 200)
        let late = Deliveries.clerkUser(type: "user.created", userId: "user_early", email: "early@example.com")
        let lateAnswer = try object(try await server.post("/api/webhook/clerk", body: late, headers: Deliveries.svixHeaders(late, id: "msg_late")).1)
        #expect(lateAnswer["status"] as? String == "ignored")
        var early_user = Self.json
        early_user[.authorization] = "Bearer dev:user_early"
        #expect(try await server.get("/api/user-tokens/user_early", headers: early_user).0 == 403)
        let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
        #expect(try await database.ledger.entries(userId: "user_early", limit: 10).isEmpty)
        #expect(try await database.ledger.balance(userId: "user_gone")?.tokens == 5)
        #expect(try await database.ledger.verify().isClean)
    }

    @Test(
        "the first-purchase discount is paid at most once: a new discounted checkout expires the open one, a paid one ends the discount, five opened at once leave one payable at the discount; checkouts are limited per hour"
    )
    func discountOnce() async throws {
        let directory = try TemporaryDirectory("myba-discount")
        defer { directory.remove() }
        try await withStripeEmulator { emulator, base in
            let server = try await RunningServer.start(environment: [
                "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": directory.file("myba.jsonl"),
                "STRIPE_SECRET_KEY": "sk_test_discount", "STRIPE_API_BASE": base.absoluteString, "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret,
                "MYBA_CHECKOUTS_PER_HOUR": "8",
            ])
            defer { server.stop() }
            await emulator.addWebhookEndpoint(
                EmulatorWebhookEndpoint(url: "http://127.0.0.1:\(server.port)/api/webhook/stripe", secret: stripeWebhookSecret)
            )
            let stripe = try stripeClient(base)
            func open(_ user: String) async throws -> (status: Int, id: String?, retryAfter: String?) {
                var headers = Self.json
                headers[.authorization] = "Bearer dev:\(user)"
                let (status, body) = try await server.post("/api/create-checkout-session", body: #"{"planId":"starter"}"#, headers: headers)
                let object = try object(body)
                return (status, object["sessionId"] as? String, (object["error"] as? [String: Any])?["code"] as? String)
            }
            func session(_ id: String) async throws -> [String: Any] { try await stripe.request("GET", "/v1/checkout/sessions/\(id)") }
            func pay(_ id: String) async -> Bool { (try? await stripe.request("POST", "/test/checkout/sessions/\(id)/complete")) != nil }

            // Two discounted checkouts one after the other: the first is expired, only the second can be paid.
            let a = try #require(try await open("user_disc").id)
            let b = try #require(try await open("user_disc").id)
            #expect(try await session(a)["status"] as? String == "expired")
            #expect(try await session(b)["amount_total"] as? Int == 400)
            #expect(await pay(a) == false)
            #expect(await pay(b))
            var purchased = 0
            for _ in 0..<100 where purchased == 0 {
                try await Task.sleep(for: .milliseconds(50))
                var user = Self.json
                user[.authorization] = "Bearer dev:user_disc"
                purchased = try object(try await server.get("/api/user-tokens/user_disc", headers: user).1)["tokensPurchased"] as? Int ?? 0
            }
            #expect(purchased == 10)
            let c = try #require(try await open("user_disc").id)
            #expect(try await session(c)["amount_total"] as? Int == 500)

            // Five at once: however they are paid, at most one pays the discount.
            let opened = try await withThrowingTaskGroup(of: String?.self) { group in
                for _ in 0..<5 { group.addTask { try await open("user_race").id } }
                return try await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
            }
            #expect(!opened.isEmpty)
            var paidAtDiscount = 0
            var stillOpenDiscounted = 0
            for id in opened {
                let state = try await session(id)
                if state["status"] as? String == "open", state["amount_total"] as? Int == 400 { stillOpenDiscounted += 1 }
            }
            #expect(stillOpenDiscounted <= 1, "\(stillOpenDiscounted) discounted sessions left open")
            for id in opened where await pay(id) {
                if try await session(id)["amount_total"] as? Int == 400 { paidAtDiscount += 1 }
            }
            #expect(paidAtDiscount <= 1)

            // The hour's limit: 8 opened, the 9th refused with Retry-After.
            var statuses: [Int] = []
            for _ in 0..<9 { statuses.append(try await open("user_many").status) }
            #expect(statuses == Array(repeating: 200, count: 8) + [429], "\(statuses)")
        }
    }

    @Test(
        "generations on the caller's own key are limited per account and per client address and hour (429 with Retry-After); a replay of an answered key is not counted"
    )
    func ownKeyLimits() async throws {
        let directory = try TemporaryDirectory("myba-own-key")
        defer { directory.remove() }
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let server = try await RunningServer.start(environment: [
                "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": directory.file("myba.jsonl"),
                "OPENAI_API_BASE": base.appendingPathComponent("v1").absoluteString,
                "MYBA_OWN_KEY_PER_HOUR_ADDRESS": "4", "MYBA_OWN_KEY_PER_HOUR_ACCOUNT": "2",
            ])
            defer { server.stop() }
            func ownKey(_ user: String, key: String) async throws -> (Int, String?, String?) {
                var headers = Self.json
                headers[.authorization] = "Bearer dev:\(user)"
                headers[.idempotencyKey] = key
                let (status, body) = try await server.post(
                    "/api/generate",
                    body: #"{"input":"Export reports as CSV","provider":"openai","apiKey":"sk-caller-own"}"#,
                    headers: headers
                )
                let error = try object(body)["error"] as? [String: Any]
                return (status, error?["code"] as? String, nil)
            }
            #expect(try await ownKey("user_a", key: "a1").0 == 200)
            #expect(try await ownKey("user_a", key: "a2").0 == 200)
            let third = try await ownKey("user_a", key: "a3")
            #expect(third.0 == 429 && third.1 == "rate_limited")
            // A replay of an answered key is the stored answer, not a new call.
            #expect(try await ownKey("user_a", key: "a1").0 == 200)
            #expect(try await ownKey("user_b", key: "b1").0 == 200)
            #expect(try await ownKey("user_c", key: "c1").0 == 200)
            // The address has had its 4 this hour, whoever signs in.
            var headers = Self.json
            headers[.authorization] = "Bearer dev:user_d"
            let (status, _) = try await server.post(
                "/api/generate",
                body: #"{"input":"Export reports as CSV","provider":"openai","apiKey":"sk-caller-own"}"#,
                headers: headers
            )
            #expect(status == 429)
            #expect(upstream.requests.filter { $0.path == "openai" }.count == 4)
        }
    }

    @Test(
        "a session token whose header carries a newline and a fake log line is refused without echoing it: not in the 401 body, not in the log, not as a line of its own in logs tail"
    )
    func tokenContentsNeverEchoed() async throws {
        let directory = try TemporaryDirectory("myba-token-echo")
        defer { directory.remove() }
        let factory = try TokenFactory()
        let logPath = directory.file("myba.jsonl")
        let server = try await RunningServer.start(environment: [
            "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": logPath, "CLERK_JWT_KEY": factory.publicKeyPEM,
        ])
        defer { server.stop() }
        let injected = "RS256\n{\"ts\":\"2026-12-04T23:59:59.000Z\",\"level\":\"critical\",\"msg\":\"FAKE operator alert\"}"
        for header in [["alg": injected, "kid": "k"], ["alg": "RS256", "kid": injected]] {
            let token =
                Base64URL.encode(try JSONSerialization.data(withJSONObject: header)) + "."
                + Base64URL.encode(Data(#"{"sub":"user_x","exp":9999999999}"#.utf8)) + "." + Base64URL.encode(Data("sig".utf8))
            var headers = Self.json
            headers[.authorization] = "Bearer \(token)"
            let (status, body) = try await server.get("/api/user-tokens/user_x", headers: headers)
            #expect(status == 401)
            #expect(!String(decoding: body, as: UTF8.self).contains("FAKE"))
        }
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(!log.contains("FAKE"))
        let tail = try await BuiltProduct.run("myba-admin", ["logs", "tail", "--lines", "50", "--file", logPath])
        #expect(!tail.stdout.contains("FAKE"))
    }

    @Test(
        "a Stripe customer deleted at Stripe never breaks checkout: customer.deleted unlinks it, and a checkout that meets the 404 unlinks it and makes a new one"
    )
    func deletedStripeCustomer() async throws {
        let directory = try TemporaryDirectory("myba-stripe-customer")
        defer { directory.remove() }
        try await withStripeEmulator { emulator, base in
            let databasePath = directory.file("myba.sqlite")
            let server = try await RunningServer.start(environment: [
                "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": directory.file("myba.jsonl"),
                "STRIPE_SECRET_KEY": "sk_test_deleted", "STRIPE_API_BASE": base.absoluteString, "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret,
            ])
            defer { server.stop() }
            let stripe = try stripeClient(base)
            let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
            var user = Self.json
            user[.authorization] = "Bearer dev:user_cus"
            func checkout() async throws -> Int {
                let (status, body) = try await server.post("/api/create-checkout-session", body: #"{"planId":"starter"}"#, headers: user)
                if status != 200 { Issue.record("checkout: \(String(decoding: body, as: UTF8.self))") }
                return status
            }

            // Deleted while no webhook reaches us: the checkout meets Stripe's 404 and recovers.
            #expect(try await checkout() == 200)
            let first = try #require(try await database.ledger.customer(userId: "user_cus")?.stripeCustomerId)
            _ = try await stripe.request("DELETE", "/v1/customers/\(first)")
            #expect(try await checkout() == 200)
            let second = try #require(try await database.ledger.customer(userId: "user_cus")?.stripeCustomerId)
            #expect(second != first)
            #expect((try await stripe.retrieveCustomer(second).metadata)?["user_id"] == "user_cus")

            // Deleted with our webhook endpoint listening: customer.deleted unlinks it at once.
            await emulator.addWebhookEndpoint(
                EmulatorWebhookEndpoint(url: "http://127.0.0.1:\(server.port)/api/webhook/stripe", secret: stripeWebhookSecret)
            )
            _ = try await stripe.request("DELETE", "/v1/customers/\(second)")
            var linked: String? = second
            for _ in 0..<100 where linked != nil {
                try await Task.sleep(for: .milliseconds(50))
                linked = try await database.ledger.customer(userId: "user_cus")?.stripeCustomerId
            }
            #expect(linked == nil)
            #expect(try await checkout() == 200)
            let third = try #require(try await database.ledger.customer(userId: "user_cus")?.stripeCustomerId)
            #expect(![first, second].contains(third))
        }
    }

    @Test(
        "a Stripe customer creation that timed out and a balance change after it leave no orphan customer and no idempotency_error: the next checkout gets the same customer"
    )
    func customerCreationRetried() async throws {
        let directory = try TemporaryDirectory("myba-stripe-create")
        defer { directory.remove() }
        try await withStripeEmulator { emulator, base in
            let server = try await RunningServer.start(environment: [
                "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": directory.file("myba.jsonl"),
                "STRIPE_SECRET_KEY": "sk_test_create", "STRIPE_API_BASE": base.absoluteString, "MYBA_STRIPE_TIMEOUT_MS": "300",
            ])
            defer { server.stop() }
            let stripe = try stripeClient(base)
            var user = Self.json
            user[.authorization] = "Bearer dev:user_idem"
            #expect(try await server.get("/api/user-tokens/user_idem", headers: user).0 == 200)
            // Stripe answers after our timeout: the customer is made there, we never hear of it.
            await emulator.setFaults(StripeFaults(latencyMilliseconds: 800))
            #expect(try await server.post("/api/create-checkout-session", body: #"{"planId":"starter"}"#, headers: user).0 == 502)
            try await Task.sleep(for: .seconds(1))
            await emulator.setFaults(StripeFaults())
            // The balance changes meanwhile.
            #expect(try await server.post("/api/generate", body: #"{"input":"Export reports as CSV"}"#, headers: user).0 == 200)
            let (status, body) = try await server.post("/api/create-checkout-session", body: #"{"planId":"starter"}"#, headers: user)
            #expect(status == 200, "\(String(decoding: body, as: UTF8.self))")
            let customers = try await stripe.listCustomers().data.filter { $0.metadata?["user_id"] == "user_idem" }
            #expect(customers.count == 1)
        }
    }
}
