import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import Testing

@testable import MyBAOps
@testable import MyBAServer

extension TestResponse {
    var json: [String: Any] {
        get throws { try jsonObject(String(buffer: body)) }
    }

    /// The body as a JSON object, empty when it is not one (for use inside `#expect`).
    var object: [String: Any] {
        (try? jsonObject(String(buffer: body))) ?? [:]
    }
}

@Suite("HTTP server")
struct ServerTests {
    @Test("GET /api/health reports ok, the version and (to a loopback operator) the customer count")
    func health() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        _ = try await fixture.database().ledger.openAccount(userId: "user_1", email: nil, actor: "test")
        try await app.test(.live) { client in
            try await client.execute(uri: "/api/health", method: .get) { response in
                #expect(response.status == .ok)
                let body = try response.json
                #expect(body["status"] as? String == "ok")
                #expect(body["database"] as? String == "ok")
                #expect(body["version"] as? String == mybaVersion)
                #expect(body["customers"] as? Int == 1)
                #expect(body["auth"] as? String == "development")
                #expect(body["payments"] as? String == "disabled")
                #expect(body["uptimeSeconds"] as? Int != nil)
            }
        }
    }

    @Test(
        "GET /api/health tells the public only whether the service is up: no auth mode, customer count or payments; behind a proxy a loopback peer is not an operator, the metrics token is"
    )
    func healthDetailsForOperatorsOnly() async throws {
        let token = "health-token-0123456789"
        for (configure, header, detailed) in [
            ({ (s: inout MyBASettings) in s.anonymous.trustedProxies = 1 }, nil as String?, false),
            (
                { (s: inout MyBASettings) in
                    s.anonymous.trustedProxies = 1
                    s.metricsToken = token
                }, token, true
            ),
            ({ (s: inout MyBASettings) in s.metricsToken = token }, "wrong-token-0123456789", false),
        ] {
            let fixture = try ServerFixture(configure: configure)
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                var headers: HTTPFields = [:]
                if let header { headers[HTTPField.Name("X-Metrics-Token")!] = header }
                try await client.execute(uri: "/api/health", method: .get, headers: headers) { response in
                    #expect(response.status == .ok)
                    let body = try response.json
                    #expect(body["status"] as? String == "ok")
                    for key in ["auth", "customers", "payments", "ai", "outboxDepth"] {
                        #expect((body[key] != nil) == detailed, "\(key) with \(header ?? "no token")")
                    }
                }
                try await client.execute(uri: "/metrics", method: .get, headers: headers) { response in
                    #expect(response.status == (detailed ? .ok : .forbidden))
                }
            }
        }
    }

    @Test("GET /api/health answers 503 degraded when the database cannot be read")
    func healthDegraded() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        // Break storage behind the server's back, through another connection.
        let other = try DatabaseQueue(path: fixture.settings.databasePath)
        try await other.write { db in
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            try db.execute(sql: "DROP TABLE customers")
        }
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/health", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = try response.json
                #expect(body["status"] as? String == "degraded")
                #expect(body["database"] as? String != "ok")
            }
        }
        #expect(try fixture.logLines().contains { $0["level"] as? String == "error" && $0["request.id"] != nil })
    }

    @Test("GET /api/plans lists the built-in plans in cents")
    func plans() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/api/plans", method: .get) { response in
                #expect(response.status == .ok)
                let body = try response.json
                let plans = try #require(body["plans"] as? [[String: Any]])
                #expect(plans.map { $0["id"] as? String } == ["starter", "professional", "enterprise"])
                #expect(plans.map { $0["tokens"] as? Int } == [10, 50, 200])
                #expect(plans.map { $0["amount"] as? Int } == [500, 2000, 6000])
                #expect(plans.allSatisfy { $0["currency"] as? String == "usd" && $0["name"] is String })
                #expect(body["firstPurchaseDiscountPercent"] as? Int == 20)
            }
        }
    }

    @Test("MYBA_PLANS_FILE replaces the plans; a bad file stops start-up with a clear error")
    func plansFile() async throws {
        let directory = try TemporaryDirectory("myba-plans")
        defer { directory.remove() }
        let path = directory.file("plans.json")
        try #"{"plans":[{"id":"team","name":"Team","tokens":500,"amount":12000,"currency":"eur"}],"firstPurchaseDiscountPercent":0}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let fixture = try ServerFixture(plansFile: path)
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/api/plans", method: .get) { response in
                let plans = try #require(try response.json["plans"] as? [[String: Any]])
                #expect(plans.map { $0["id"] as? String } == ["team"])
            }
        }
        try #"{"plans":[{"id":"team","name":"Team","tokens":-5,"amount":12000,"currency":"eur"}],"firstPurchaseDiscountPercent":0}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let broken = try ServerFixture(plansFile: path)
        defer { broken.directory.remove() }
        let error = try await #require(throws: PlanCatalogError.self) { _ = try await broken.application() }
        #expect(error.description.contains("tokens must be"))
    }

    @Test("unknown routes answer 404 in the JSON error shape with the request id")
    func notFound() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/api/nothing-here", method: .get, headers: [.requestID: "trace-42"]) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.requestID] == "trace-42")
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                let error = try #require(try response.json["error"] as? [String: Any])
                #expect(error["code"] as? String == "not_found")
                #expect(error["requestId"] as? String == "trace-42")
                #expect((error["message"] as? String)?.isEmpty == false)
            }
        }
    }

    @Test("a safe incoming X-Request-ID is kept; an unsafe or long one is replaced")
    func requestIds() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let kept = try await client.execute(uri: "/api/health", method: .get, headers: [.requestID: "abc-123_x.y:z"]) { $0.headers[.requestID] }
            #expect(kept == "abc-123_x.y:z")
            for unsafe in ["has space", "quote\"", String(repeating: "a", count: 129), "ünïcode", ""] {
                let replaced = try await client.execute(uri: "/api/health", method: .get, headers: [.requestID: unsafe]) { $0.headers[.requestID] }
                #expect(replaced != nil && replaced != unsafe)
                #expect(replaced.map { RequestIDMiddleware.acceptable($0) != nil } == true)
            }
            let generated = try await client.execute(uri: "/api/health", method: .get) { $0.headers[.requestID] }
            let again = try await client.execute(uri: "/api/health", method: .get) { $0.headers[.requestID] }
            #expect(generated != nil && generated != again)
        }
    }

    @Test("generated request ids are req_ and 32 hex digits, sort by the time they were made, and do not repeat")
    func generatedRequestIdsSortByTime() {
        let start = Date(timeIntervalSince1970: 1_796_000_000)
        let ids = (0..<2000).map { RequestIDMiddleware.generate(now: Date(timeIntervalSince1970: Double(1_796_000_000_000 + $0) / 1000)) }
        for id in ids {
            #expect(id.utf8.count == 36 && id.hasPrefix("req_"))
            #expect(id.dropFirst(4).allSatisfy { "0123456789abcdef".contains($0) })
            #expect(RequestIDMiddleware.acceptable(id) == id)
        }
        let outOfOrder = zip(ids, ids.dropFirst()).filter { $0 >= $1 }
        #expect(outOfOrder.isEmpty, "ids made a millisecond apart come out in order: \(outOfOrder.prefix(3))")
        #expect(Set(ids).count == ids.count)
        let sameInstant = (0..<2000).map { _ in RequestIDMiddleware.generate(now: start) }
        #expect(Set(sameInstant).count == sameInstant.count, "80 random bits keep ids of one millisecond apart")
        #expect(sameInstant.allSatisfy { $0.prefix(16) == sameInstant[0].prefix(16) }, "the first 48 bits are the time")
    }

    @Test("a body larger than the cap is refused with 413 before it is read")
    func bodyCap() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            let body = ByteBuffer(repeating: UInt8(ascii: "x"), count: 5000)
            try await client.execute(uri: "/api/plans", method: .post, headers: [.contentType: "application/json"], body: body) { response in
                #expect(response.status == .contentTooLarge)
                let error = try #require(try response.json["error"] as? [String: Any])
                #expect(error["code"] as? String == "payload_too_large")
            }
        }
    }

    @Test("every log line of a request carries its id, and one access line records method, path, status and duration")
    func requestLogging() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            _ = try await client.execute(uri: "/api/plans", method: .get, headers: [.requestID: "req-log-1"])
            _ = try await client.execute(uri: "/missing", method: .get, headers: [.requestID: "req-log-2"])
        }
        let lines = try fixture.logLines()
        for id in ["req-log-1", "req-log-2"] {
            let access = lines.filter { $0["request.id"] as? String == id && $0["msg"] as? String == "request" }
            #expect(access.count == 1)
            let line = try #require(access.first)
            #expect(line["http.method"] as? String == "GET")
            #expect(line["duration.ms"] is Double)
            #expect(line["ts"] is String && line["level"] as? String == "info")
        }
        #expect(lines.first { $0["request.id"] as? String == "req-log-2" && $0["msg"] as? String == "request" }?["http.status"] as? Int == 404)
        #expect(
            lines.first { $0["request.id"] as? String == "req-log-1" && $0["msg"] as? String == "request" }?["http.path"] as? String == "/api/plans"
        )
        #expect(!lines.contains { $0["hb.request.id"] != nil })
    }

    @Test("the server answers over real HTTP on loopback")
    func live() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.live) { client in
            try await client.execute(uri: "/api/health", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.requestID] != nil)
            }
        }
    }
}
