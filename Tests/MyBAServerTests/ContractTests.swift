import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import NIOCore
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// Every table's row count and the sum of balances: a request that "changes nothing" leaves this
/// exactly as it was.
func storedState(_ database: AppDatabase) async throws -> [String: Int] {
    try await database.writerForTests.read { db in
        var state: [String: Int] = [:]
        for table in [
            "customers", "ledger_entries", "balances", "anonymous_sessions", "anonymous_charges", "generations", "webhook_events", "stripe_outbox",
            "audit_log",
        ] {
            state[table] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? -1
        }
        state["tokens"] = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(tokens), 0) FROM balances") ?? -1
        state["session_used"] = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(used), 0) FROM anonymous_sessions") ?? -1
        return state
    }
}

@Suite("OpenAPI contract")
struct ContractTests {
    @Test("/openapi.json documents every route; any other method on a documented path is 405 with Allow")
    func routesMatchTheDocument() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        let dependencies = try await buildDependencies(settings: fixture.settings, logger: Logger(label: "test"))
        let routes = Set(buildRouter(dependencies).routes.map { "\($0.method) \($0.path)" })

        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        #expect((document["openapi"] as? String)?.hasPrefix("3.") == true)
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, operations) in paths {
            for (method, operation) in operations {
                documented.insert("\(method.uppercased()) \(path)")
                let responses = try #require((operation as? [String: Any])?["responses"] as? [String: Any], "\(method) \(path)")
                #expect(responses.keys.contains("200"), "\(method) \(path) documents no success")
            }
        }
        #expect(routes == documented, "only routed: \(routes.subtracting(documented)); only documented: \(documented.subtracting(routes))")
        let documentedRoutes = documented

        try await fixture.application().test(.router) { client in
            // Any other method on a documented path, even one without a name in HTTPTypes, is
            // 405 with the served methods in Allow.
            let paths = Set(documentedRoutes.map { String($0.split(separator: " ")[1]) })
            for path in paths {
                let served = Set(documentedRoutes.filter { $0.hasSuffix(" " + path) }.map { String($0.split(separator: " ")[0]) })
                let uri = path.replacingOccurrences(of: "{userId}", with: "user_a")
                for method in ["GET", "POST", "PUT", "DELETE", "QUERY"] where !served.contains(method) {
                    try await client.execute(uri: uri, method: HTTPRequest.Method(method)!) { response in
                        #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                        let allowed = Set((response.headers[.allow] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                        #expect(served.isSubset(of: allowed), "\(method) \(path): Allow \(allowed)")
                        #expect(response.errorCode == "method_not_allowed")
                    }
                }
            }
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                #expect(String(buffer: response.body) == OpenAPIDocument.json)
            }
        }
    }

    @Test("hostile and malformed input gets a 4xx JSON error and changes nothing", arguments: HostileCase.all)
    func hostileInput(_ hostile: HostileCase) async throws {
        // Payments and webhooks on (Stripe itself unreachable): the checks must refuse before
        // anything is called or stored.
        let fixture = try ServerFixture {
            $0.stripe.secretKey = "sk_test_contract"
            $0.stripe.apiBase = URL(string: "http://127.0.0.1:9")!
            $0.stripe.webhookSecret = stripeWebhookSecret
        }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            // A customer and an anonymous session exist, so ids that look like theirs are tempting.
            _ = try await client.execute(uri: "/api/user-tokens/user_a", method: .get, headers: bearer("dev:user_a")) { $0.status }
            let sessionA = try await client.execute(
                uri: "/api/anonymous-session",
                method: .post,
                headers: jsonHeaders,
                body: jsonBody(["fingerprint": "fp-a"])
            ) { try #require(try $0.json["sessionId"] as? String) }
            let database = try fixture.database()
            let before = try await storedState(database)
            var headers = hostile.headers
            if headers[.contentType] == nil, hostile.body != nil { headers[.contentType] = "application/json" }
            // A case aimed at the real session names it SESSION_A.
            var body = hostile.body
            if let bytes = body, let text = String(validating: bytes, as: UTF8.self), text.contains("SESSION_A") {
                body = Array(text.replacingOccurrences(of: "SESSION_A", with: sessionA).utf8)
            }
            try await client.execute(uri: hostile.path, method: hostile.method, headers: headers, body: body.map { ByteBuffer(bytes: $0) }) {
                response in
                #expect((400...499).contains(Int(response.status.code)), "\(hostile.name): \(response.status) \(String(buffer: response.body))")
                if let expected = hostile.status { #expect(response.status.code == expected, "\(hostile.name): \(String(buffer: response.body))") }
                let error = (try? jsonObject(String(buffer: response.body)))?["error"] as? [String: Any]
                #expect(
                    error?["code"] is String && error?["message"] is String && error?["requestId"] is String,
                    "\(hostile.name): \(String(buffer: response.body))"
                )
            }
            #expect(try await storedState(database) == before, "\(hostile.name) changed stored state")
            #expect(try await database.ledger.verify().isClean)
        }
    }
}

struct HostileCase: Sendable, CustomTestStringConvertible {
    var name: String
    var method: HTTPRequest.Method = .post
    var path: String
    var headers: HTTPFields = [:]
    var body: [UInt8]?
    var status: Int?

    var testDescription: String { name }

    static func json(_ text: String) -> [UInt8] { Array(text.utf8) }

    static let userA = bearer("dev:user_a")

    static let all: [HostileCase] = [
        HostileCase(
            name: "oversized body",
            path: "/api/generate",
            headers: userA,
            body: json(#"{"input":""# + String(repeating: "x", count: 64 * 1024) + #""}"#),
            status: 413
        ),
        HostileCase(
            name: "form-encoded body",
            path: "/api/anonymous-session",
            headers: [.contentType: "application/x-www-form-urlencoded"],
            body: json("fingerprint=abc"),
            status: 415
        ),
        HostileCase(
            name: "JSON sent as text/plain",
            path: "/api/generate",
            headers: userA.merging([.contentType: "text/plain"]),
            body: json(#"{"input":"Fix login"}"#),
            status: 415
        ),
        HostileCase(name: "broken JSON", path: "/api/generate", headers: userA, body: json(#"{"input": "Fix login"#), status: 400),
        HostileCase(name: "JSON array instead of object", path: "/api/anonymous-session", body: json(#"["fingerprint"]"#), status: 400),
        HostileCase(name: "empty body", path: "/api/generate", headers: userA, body: [], status: 400),
        HostileCase(
            name: "invalid UTF-8 in a string",
            path: "/api/anonymous-session",
            body: Array(#"{"fingerprint":""#.utf8) + [0xC3, 0x28, 0xFF] + Array(#""}"#.utf8),
            status: 400
        ),
        HostileCase(name: "lone surrogate escape", path: "/api/generate", headers: userA, body: json(#"{"input":"\ud800"}"#), status: 400),
        HostileCase(
            name: "only zero-width and bidi characters",
            path: "/api/generate",
            headers: userA,
            body: json(#"{"input":"\u200b\u202e\u2066 \n\t"}"#),
            status: 400
        ),
        HostileCase(
            name: "fingerprint of 513 characters",
            path: "/api/anonymous-session",
            body: json(#"{"fingerprint":""# + String(repeating: "é", count: 513) + #""}"#),
            status: 400
        ),
        // 400 code points that make far fewer characters: lengths count code points, as the contract's maxLength does.
        HostileCase(
            name: "fingerprint of 513 code points in few graphemes",
            path: "/api/anonymous-session",
            body: json(#"{"fingerprint":"x"# + String(repeating: "\u{1F3FB}", count: 512) + #""}"#),
            status: 400
        ),
        HostileCase(name: "number where a string belongs", path: "/api/anonymous-session", body: json(#"{"fingerprint":12345}"#), status: 400),
        HostileCase(
            name: "huge remainingTokens",
            path: "/api/transfer-anonymous-tokens",
            headers: userA,
            body: json(#"{"sessionId":"anon_x","remainingTokens":1e30}"#),
            status: 400
        ),
        HostileCase(
            name: "negative remainingTokens for an unknown session",
            path: "/api/transfer-anonymous-tokens",
            headers: userA,
            body: json(#"{"sessionId":"anon_x","remainingTokens":-5}"#),
            status: 400
        ),
        HostileCase(
            name: "negative remainingTokens for a real session",
            path: "/api/transfer-anonymous-tokens",
            headers: userA,
            body: json(#"{"sessionId":"SESSION_A","remainingTokens":-5}"#),
            status: 400
        ),
        HostileCase(
            name: "integer overflow",
            path: "/api/transfer-anonymous-tokens",
            headers: userA,
            body: json(#"{"sessionId":"anon_x","remainingTokens":9223372036854775808}"#),
            status: 400
        ),
        HostileCase(
            name: "SQL in a session id",
            path: "/api/transfer-anonymous-tokens",
            headers: userA,
            body: json(#"{"sessionId":"x' OR '1'='1"}"#),
            status: 404
        ),
        HostileCase(
            name: "SQL in a session id for generation",
            path: "/api/generate",
            body: json(#"{"input":"Fix login","sessionId":"'; DELETE FROM anonymous_sessions; --"}"#),
            status: 404
        ),
        HostileCase(name: "SQL in a path user id", method: .get, path: "/api/user-tokens/user_a'%20OR%20'1'='1", headers: userA, status: 403),
        HostileCase(
            name: "SQL in a development user id",
            method: .get,
            path: "/api/user-tokens/x",
            headers: bearer("dev:x'; DROP TABLE customers;--"),
            status: 401
        ),
        HostileCase(
            name: "SQL in a plan id",
            path: "/api/create-checkout-session",
            headers: userA,
            body: json(#"{"planId":"starter' OR 1=1 --"}"#),
            status: 400
        ),
        HostileCase(
            name: "someone else's user id in the body",
            path: "/api/transfer-anonymous-tokens",
            headers: userA,
            body: json(#"{"sessionId":"anon_x","userId":"user_b"}"#),
            status: 403
        ),
        HostileCase(
            name: "unusable Idempotency-Key",
            path: "/api/generate",
            headers: userA.merging([.idempotencyKey: String(repeating: "k", count: 300)]),
            body: json(#"{"input":"Fix login"}"#),
            status: 400
        ),
        HostileCase(
            name: "newline in the caller's own API key",
            path: "/api/generate",
            headers: userA,
            body: json(#"{"input":"Fix login","provider":"anthropic","apiKey":"sk-ant-x\r\nx-injected: 1"}"#),
            status: 400
        ),
        HostileCase(
            name: "unknown provider",
            path: "/api/generate",
            headers: userA,
            body: json(#"{"input":"Fix login","provider":"../../etc/passwd"}"#),
            status: 400
        ),
        HostileCase(
            name: "NUL in a body with a bad signature",
            path: "/api/webhook/stripe",
            headers: [HTTPField.Name("Stripe-Signature")!: "t=1,v1=00"],
            body: json(#"{"id":"evt_1\u0000","type":"checkout.session.completed"}"#),
            status: 400
        ),
        HostileCase(
            name: "NUL in a validly signed body's event id",
            path: "/api/webhook/stripe",
            headers: Deliveries.stripeHeaders(#"{"id":"evt_1\u0000","type":"checkout.session.completed"}"#),
            body: json(#"{"id":"evt_1\u0000","type":"checkout.session.completed"}"#),
            status: 400
        ),
        HostileCase(
            name: "control characters in a validly signed body's event type",
            path: "/api/webhook/stripe",
            headers: Deliveries.stripeHeaders(#"{"id":"evt_2","type":"checkout.session.completed\u001b[31m"}"#),
            body: json(#"{"id":"evt_2","type":"checkout.session.completed\u001b[31m"}"#),
            status: 400
        ),
        HostileCase(name: "unknown method on a known path", method: .delete, path: "/api/health", status: 405),
        HostileCase(name: "GET on a POST-only path", method: .get, path: "/api/generate", headers: userA, status: 405),
    ]
}

extension HTTPFields {
    func merging(_ other: HTTPFields) -> HTTPFields {
        var merged = self
        for field in other { merged[field.name] = field.value }
        return merged
    }
}
