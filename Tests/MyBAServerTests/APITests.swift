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

extension TestResponse {
    var errorCode: String? {
        (try? jsonObject(String(buffer: body)))?["error"].flatMap { $0 as? [String: Any] }?["code"] as? String
    }
}

@Suite("Public API")
struct APITests {
    @Test("the visitor journey over real HTTP: session, two tickets, sign-in, transfer of what is left, balance 7, second transfer moves 0")
    func visitorJourney() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.live) { client in
            let session = try await client.execute(
                uri: "/api/anonymous-session",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["fingerprint": "fp-visitor"])
            ) { try $0.json }
            let sessionId = try #require(session["sessionId"] as? String)
            #expect(session["tokens"] as? Int == 3)
            #expect(session["tokensRemaining"] as? Int == 3)
            for expected in [2, 1] {
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: jsonHeaders,
                    body: jsonBody(["input": "Users cannot reset their password from the login page", "sessionId": sessionId])
                ) { response in
                    #expect(response.status == .ok)
                    let body = try response.json
                    #expect(body["tokensRemaining"] as? Int == expected)
                    #expect(body["provider"] as? String == "mock")
                    let ticket = try #require(body["ticket"] as? [String: Any])
                    #expect((ticket["title"] as? String)?.isEmpty == false)
                    #expect((ticket["acceptanceCriteria"] as? [String])?.isEmpty == false)
                    #expect((body["markdown"] as? String)?.hasPrefix("# ") == true)
                }
            }
            // The same fingerprint gets the same session, with its count kept.
            let again = try await client.execute(
                uri: "/api/anonymous-session",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["fingerprint": "fp-visitor"])
            ) { try $0.json }
            #expect(again["sessionId"] as? String == sessionId)
            #expect(again["tokensRemaining"] as? Int == 1)

            let transfer = try await client.execute(
                uri: "/api/transfer-anonymous-tokens",
                method: .post,
                headers: bearer("dev:user_visitor"),
                body: jsonBody(["sessionId": sessionId, "userId": "user_visitor", "remainingTokens": 100])
            ) { try $0.json }
            #expect(transfer["transferred"] as? Int == 1)
            #expect(transfer["tokens"] as? Int == 7)
            let balance = try await client.execute(uri: "/api/user-tokens/user_visitor", method: .get, headers: bearer("dev:user_visitor")) {
                try $0.json
            }
            #expect(balance["tokens"] as? Int == 7)
            #expect(balance["tokensTransferred"] as? Int == 1)
            #expect((balance["transferDate"] as? String)?.count == 10)
            #expect(balance["lastPurchase"] is NSNull)
            let second = try await client.execute(
                uri: "/api/transfer-anonymous-tokens",
                method: .post,
                headers: bearer("dev:user_visitor"),
                body: jsonBody(["sessionId": sessionId])
            ) { try $0.json }
            #expect(second["transferred"] as? Int == 0)
            #expect(second["tokens"] as? Int == 7)
            // The session's tokens now live in the account: the session cannot spend them again.
            try await client.execute(
                uri: "/api/generate",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["input": "x", "sessionId": sessionId])
            ) { response in
                #expect(response.status == .conflict)
                #expect(response.errorCode == "session_transferred")
            }
        }
        #expect(
            try fixture.logLines().contains {
                $0["msg"] as? String == "client claimed a different remaining count; the server's count moved" && $0["tokens.claimed"] as? Int == 100
            }
        )
        #expect(try await fixture.database().ledger.verify().isClean)
    }

    @Test("no tokens left answers 402 insufficient_tokens and spends nothing")
    func insufficient() async throws {
        let fixture = try ServerFixture { $0.anonymous.freeTokens = 1 }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let session = try await client.execute(
                uri: "/api/anonymous-session",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["fingerprint": "fp-1"])
            ) { try $0.json }
            let sessionId = try #require(session["sessionId"] as? String)
            _ = try await client.execute(
                uri: "/api/generate",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["input": "one", "sessionId": sessionId])
            )
            try await client.execute(
                uri: "/api/generate",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["input": "two", "sessionId": sessionId])
            ) { response in
                #expect(response.status.code == 402)
                #expect(response.errorCode == "insufficient_tokens")
            }
            // A signed-in user with an empty balance.
            _ = try await client.execute(uri: "/api/user-tokens/user_poor", method: .get, headers: bearer("dev:user_poor"))
            let db = try fixture.database()
            _ = try await db.ledger.post(
                LedgerPosting(userId: "user_poor", kind: .adjust, delta: -6, idempotencyKey: "drain", actor: "test", reason: "empty")
            )
            try await client.execute(uri: "/api/generate", method: .post, headers: bearer("dev:user_poor"), body: jsonBody(["input": "three"])) {
                response in
                #expect(response.status.code == 402)
                #expect(response.errorCode == "insufficient_tokens")
            }
            #expect(try await db.ledger.balance(userId: "user_poor")?.tokens == 0)
            #expect(try await db.sessions.session(id: sessionId)?.used == 1)
        }
    }

    @Test("100 parallel generate calls on a balance of 5 produce exactly 5 tickets and leave 0")
    func parallelGenerate() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        let db = try fixture.database()
        _ = try await db.ledger.openAccount(userId: "user_busy", email: nil, actor: "test")
        _ = try await db.ledger.post(
            LedgerPosting(userId: "user_busy", kind: .adjust, delta: -1, idempotencyKey: "to-five", actor: "test", reason: "fixture")
        )
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/api/generate")!)
                        request.httpMethod = "POST"
                        request.setValue("Bearer dev:user_busy", forHTTPHeaderField: "Authorization")
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        request.httpBody = try JSONSerialization.data(withJSONObject: ["input": "ticket number \(index)"])
                        let (_, response) = try await URLSession.shared.data(for: request)
                        return (response as! HTTPURLResponse).statusCode
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 5)
            #expect(statuses.filter { $0 == 402 }.count == 95)
        }
        let balance = try #require(try await db.ledger.balance(userId: "user_busy"))
        #expect(balance.tokens == 0)
        #expect(balance.tokensUsed == 5)
        #expect(try await db.ledger.verify().isClean)
    }

    @Test("a retried request with the same Idempotency-Key gets the same ticket and is charged once")
    func idempotentGenerate() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            var headers = bearer("dev:user_retry")
            headers[.idempotencyKey] = "gen-abc-1"
            let firstBody = try await client.execute(
                uri: "/api/generate",
                method: .post,
                headers: headers,
                body: jsonBody(["input": "Add dark mode"])
            ) { response in
                #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                return String(buffer: response.body)
            }
            let secondBody = try await client.execute(
                uri: "/api/generate",
                method: .post,
                headers: headers,
                body: jsonBody(["input": "Add dark mode"])
            ) { String(buffer: $0.body) }
            // The stored answer is sent as it is: a retry gets the same bytes.
            #expect(secondBody == firstBody)
            let first = try jsonObject(firstBody)
            let second = try jsonObject(secondBody)
            #expect(first["tokensRemaining"] as? Int == 5)
            #expect(second["tokensRemaining"] as? Int == 5)
            #expect(NSDictionary(dictionary: first["ticket"] as! [String: Any]) == NSDictionary(dictionary: second["ticket"] as! [String: Any]))
            try await client.execute(uri: "/api/generate", method: .post, headers: headers, body: jsonBody(["input": "Something else"])) { response in
                #expect(response.status == .unprocessableContent)
                #expect(response.errorCode == "idempotency_key_reused")
            }
        }
        #expect(try await fixture.database().ledger.balance(userId: "user_retry")?.tokensUsed == 1)
    }

    @Test("bad generate input is a 400 with a JSON error and spends nothing")
    func badInput() async throws {
        let fixture = try ServerFixture { $0.maxBodyBytes = 64 * 1024 }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let cases: [[String: Any]] = [
                ["input": ""], ["input": "   \n "], ["input": String(repeating: "a", count: 10_001)],
                ["input": "ok", "provider": "gemini"], ["input": "ok", "provider": "openai"],
                ["input": "ok", "apiKey": "sk-something"], ["nothing": true],
            ]
            for body in cases {
                try await client.execute(uri: "/api/generate", method: .post, headers: bearer("dev:user_bad"), body: jsonBody(body)) { response in
                    #expect(response.status == .badRequest, "\(body.keys)")
                    #expect(response.errorCode != nil)
                }
            }
            try await client.execute(uri: "/api/generate", method: .post, headers: bearer("dev:user_bad"), body: ByteBuffer(string: "{not json")) {
                response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(
                uri: "/api/generate",
                method: .post,
                headers: bearer("dev:user_bad"),
                body: jsonBody(["input": String(repeating: "é", count: 10_000)])
            ) { response in
                #expect(response.status == .ok)
            }
        }
        #expect(try await fixture.database().ledger.balance(userId: "user_bad")?.tokensUsed == 1)
    }

    @Test("user endpoints: 401 without or with a bad token, 403 for someone else's id, 404 for an unknown session")
    func authorization() async throws {
        let factory = try TokenFactory()
        let fixture = try ServerFixture { $0.auth = AuthSettings(jwtPublicKeyPEM: factory.publicKeyPEM) }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/api/user-tokens/user_2abc", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(response.errorCode == "unauthorized")
            }
            for token in ["dev:user_2abc", try factory.token(exp: -60), try TokenFactory().token(), "garbage"] {
                try await client.execute(uri: "/api/user-tokens/user_2abc", method: .get, headers: bearer(token)) { response in
                    #expect(response.status == .unauthorized)
                }
            }
            let token = try factory.token(sub: "user_2abc")
            try await client.execute(uri: "/api/user-tokens/user_2abc", method: .get, headers: bearer(token)) { response in
                #expect(response.status == .ok)
                let body = try response.json
                #expect(body["tokens"] as? Int == 6)
            }
            try await client.execute(uri: "/api/user-tokens/user_other", method: .get, headers: bearer(token)) { response in
                #expect(response.status == .forbidden)
            }
            try await client.execute(
                uri: "/api/transfer-anonymous-tokens",
                method: .post,
                headers: bearer(token),
                body: jsonBody(["sessionId": "anon_nope"])
            ) { response in
                #expect(response.status == .notFound)
                #expect(response.errorCode == "session_not_found")
            }
            try await client.execute(
                uri: "/api/transfer-anonymous-tokens",
                method: .post,
                headers: bearer(token),
                body: jsonBody(["sessionId": "anon_nope", "userId": "user_other"])
            ) { response in
                #expect(response.status == .forbidden)
            }
            try await client.execute(
                uri: "/api/transfer-anonymous-tokens",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["sessionId": "anon_nope"])
            ) { response in
                #expect(response.status == .unauthorized)
            }

        }
        // The first authenticated request opened the account with the welcome grant, once.
        let entries = try await fixture.database().ledger.entries(userId: "user_2abc", limit: 10)
        #expect(entries.map(\.kind) == [.welcome])
    }

    @Test("new anonymous sessions are limited per address with 429 and Retry-After; X-Forwarded-For counts only behind a trusted proxy")
    func sessionRateLimit() async throws {
        for trustedProxies in [0, 1] {
            let fixture = try ServerFixture {
                $0.anonymous.sessionsPerHour = 2
                $0.anonymous.trustedProxies = trustedProxies
            }
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                var statuses: [HTTPResponse.Status] = []
                var retryAfter: String?
                for index in 0..<4 {
                    var headers = jsonHeaders
                    headers[.xForwardedFor] = "203.0.113.\(index)"
                    try await client.execute(
                        uri: "/api/anonymous-session",
                        method: .post,
                        headers: headers,
                        body: jsonBody(["fingerprint": "fp-\(index)"])
                    ) { response in
                        statuses.append(response.status)
                        if response.status == .tooManyRequests {
                            retryAfter = response.headers[.retryAfter]
                            #expect(response.errorCode == "rate_limited")
                        }
                    }
                }
                if trustedProxies == 1 {
                    #expect(statuses == [.ok, .ok, .ok, .ok])
                } else {
                    #expect(statuses == [.ok, .ok, .tooManyRequests, .tooManyRequests])
                    #expect(retryAfter.flatMap(Int.init).map { $0 > 3000 && $0 <= 3600 } == true)
                }
                // An existing fingerprint is never limited.
                try await client.execute(uri: "/api/anonymous-session", method: .post, headers: jsonHeaders, body: jsonBody(["fingerprint": "fp-0"]))
                { response in
                    #expect(response.status == .ok)
                }
            }
            // Fingerprints are stored hashed.
            let raw = try await fixture.database().writerForTests.read { db in
                try String.fetchAll(db, sql: "SELECT fingerprint_hash FROM anonymous_sessions")
            }
            #expect(!raw.isEmpty && raw.allSatisfy { $0.count == 64 && !$0.contains("fp-") })
        }
    }

    @Test(
        "behind one trusted proxy, addresses the client writes to the left of the proxy's own entry are ignored; malformed entries count as the proxy; IPv6 clients count by their /64"
    )
    func forgedForwardedFor() async throws {
        let fixture = try ServerFixture {
            $0.anonymous.sessionsPerHour = 3
            $0.anonymous.trustedProxies = 1
        }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            func statuses(_ forwarded: (Int) -> String, prefix: String) async throws -> [Int: Int] {
                var counts: [Int: Int] = [:]
                for index in 0..<20 {
                    var headers = jsonHeaders
                    headers[.xForwardedFor] = forwarded(index)
                    try await client.execute(
                        uri: "/api/anonymous-session",
                        method: .post,
                        headers: headers,
                        body: jsonBody(["fingerprint": "\(prefix)-\(index)"])
                    ) { response in
                        counts[Int(response.status.code), default: 0] += 1
                    }
                }
                return counts
            }
            // nginx appends the real peer (198.51.100.7) after whatever the client sent.
            let forged = try await statuses({ "10.0.\($0).1, 192.0.2.\($0), 198.51.100.7" }, prefix: "forged")
            #expect(forged == [200: 3, 429: 17])
            // One IPv6 subscriber cycling through addresses of its /64.
            let subnet = try await statuses({ "2001:db8:aa:bb::\(String($0 + 1, radix: 16))" }, prefix: "v6")
            #expect(subnet == [200: 3, 429: 17])
            // Entries that are not addresses never make a new client.
            let junk = try await statuses({ "garbage-\($0)" }, prefix: "junk")
            #expect(junk == [200: 3, 429: 17])
        }
    }
}
