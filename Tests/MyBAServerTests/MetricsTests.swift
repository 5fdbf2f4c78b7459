import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import Testing

@testable import MyBAServer

/// One sample of Prometheus' text format: `name{label="value",…} number`.
struct PrometheusSample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double

    static func parse(_ text: String) -> [PrometheusSample] {
        text.split(separator: "\n").compactMap { line -> PrometheusSample? in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
            let series = line[..<space]
            guard let brace = series.firstIndex(of: "{") else { return PrometheusSample(name: String(series), labels: [:], value: value) }
            var labels: [String: String] = [:]
            for pair in series[series.index(after: brace)..<series.index(before: series.endIndex)].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { continue }
                labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
            }
            return PrometheusSample(name: String(series[..<brace]), labels: labels, value: value)
        }
    }
}

extension Array where Element == PrometheusSample {
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { sample in sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value } }?.value
    }
}

@Suite("Metrics", .serialized)
struct MetricsTests {
    @Test(
        "GET /metrics counts requests by route template and status, tokens granted and consumed, webhook outcomes, and reports outbox depth and sessions"
    )
    func prometheusExport() async throws {
        let directory = try TemporaryDirectory("myba-metrics")
        defer { directory.remove() }
        let server = try await RunningServer.start(environment: [
            "PORT": "0", "MYBA_DATABASE": directory.file("myba.sqlite"), "MYBA_LOG_FILE": directory.file("myba.jsonl"),
            "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret,
        ])
        defer { server.stop() }
        let json: HTTPFields = [.contentType: "application/json"]
        var signedIn = json
        signedIn[.authorization] = "Bearer dev:user_metrics"

        #expect(try await server.get("/api/health").0 == 200)
        #expect(try await server.get("/api/health").0 == 200)
        #expect(try await server.get("/api/user-tokens/user_metrics", headers: signedIn).0 == 200)
        #expect(try await server.post("/api/generate", body: #"{"input":"Fix the login page"}"#, headers: signedIn).0 == 200)
        #expect(try await server.post("/api/generate", body: #"{"input":"Add a logout button"}"#, headers: signedIn).0 == 200)
        #expect(try await server.post("/api/generate", body: #"{"input":""}"#, headers: signedIn).0 == 400)
        #expect(try await server.post("/api/anonymous-session", body: #"{"fingerprint":"fp-metrics-1"}"#, headers: json).0 == 200)
        #expect(try await server.get("/no/such/route/user_metrics").0 == 404)
        let body = Deliveries.checkoutCompleted(
            eventId: "evt_metrics",
            sessionId: "cs_metrics",
            userId: "user_buyer",
            tokens: 10,
            amount: 800,
            paymentIntent: "pi_metrics"
        )
        #expect(try await server.post("/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body)).0 == 200)
        #expect(try await server.post("/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body)).0 == 200)
        #expect(try await server.post("/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body, secret: "whsec_wrong")).0 == 400)
        // A full refund takes the purchase's tokens back.
        let refund = Deliveries.chargeRefunded(
            eventId: "evt_metrics_refund",
            paymentIntent: "pi_metrics",
            amount: 800,
            refunded: 800,
            userId: "user_buyer"
        )
        #expect(try await server.post("/api/webhook/stripe", body: refund, headers: Deliveries.stripeHeaders(refund)).0 == 200)
        // The oldest outbox row is old enough to show in whole seconds.
        try await Task.sleep(for: .milliseconds(1200))

        let (status, data) = try await server.get("/metrics")
        #expect(status == 200)
        let text = String(decoding: data, as: UTF8.self)
        let samples = PrometheusSample.parse(text)
        #expect(samples.value("myba_http_requests_total", ["route": "/api/health", "method": "GET", "status": "200"]) == 2)
        #expect(samples.value("myba_http_requests_total", ["route": "/api/generate", "method": "POST", "status": "200"]) == 2)
        #expect(samples.value("myba_http_requests_total", ["route": "/api/generate", "method": "POST", "status": "400"]) == 1)
        #expect(samples.value("myba_http_requests_total", ["route": "NotFound", "method": "GET", "status": "404"]) == 1)
        #expect(samples.value("myba_http_requests_total", ["route": "/api/user-tokens/{userId}", "method": "GET", "status": "200"]) == 1)
        // Routes are templates: no user id ever becomes a label value.
        #expect(!samples.contains { $0.labels.values.contains { $0.contains("user_metrics") } }, "\(text)")
        #expect(samples.value("myba_http_request_duration_seconds_count", ["route": "/api/health", "status": "200"]) == 2)
        #expect(samples.contains { $0.name == "myba_http_request_duration_seconds_bucket" && $0.labels["le"] == "+Inf" })

        #expect(samples.value("myba_tokens_granted_total", ["kind": "welcome"]) == 6)
        #expect(samples.value("myba_tokens_granted_total", ["kind": "purchase"]) == 10)
        #expect(samples.value("myba_tokens_granted_total", ["kind": "anonymous_session"]) == 3)
        #expect(samples.value("myba_tokens_consumed_total", ["payer": "account"]) == 2)
        #expect(samples.value("myba_tokens_removed_total", ["kind": "payment_refund"]) == 10)

        #expect(samples.value("myba_webhook_events_total", ["source": "stripe", "outcome": "processed"]) == 2)
        #expect(samples.value("myba_webhook_events_total", ["source": "stripe", "outcome": "duplicate"]) == 1)
        #expect(samples.value("myba_webhook_events_total", ["source": "stripe", "outcome": "rejected"]) == 1)
        #expect(samples.value("myba_webhook_processing_seconds_count", ["source": "stripe"]) == 2)

        // No Stripe key: both customers' balance changes wait in the outbox.
        #expect(samples.value("myba_stripe_outbox_pending") == 2)
        #expect((samples.value("myba_stripe_outbox_oldest_pending_seconds") ?? -1) >= 1)
        #expect(samples.value("myba_anonymous_sessions", ["state": "open"]) == 1)
        #expect(samples.value("myba_customers") == 2)
        #expect(samples.value("myba_webhook_events_pending") == 0)

        // /api/health reports the same outbox to an operator (its counts are refreshed every 5 s).
        var health: [String: Any] = [:]
        for _ in 0..<80 {
            health = try jsonObject(String(decoding: try await server.get("/api/health").1, as: UTF8.self))
            if health["outboxDepth"] as? Int == 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(health["outboxDepth"] as? Int == 2, "\(health)")
        #expect((health["outboxOldestPendingSeconds"] as? Int ?? -1) >= 1, "\(health)")
    }

    @Test("/metrics: a peer off loopback gets 403 even with a forged X-Forwarded-For; a token opens it from anywhere; MYBA_METRICS_PUBLIC serves all")
    func access() async throws {
        let fixture = try ServerFixture { $0.anonymous.trustedProxies = 1 }
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            // The router test client has no peer address, like a remote one.
            for headers: HTTPFields in [[:], [.xForwardedFor: "127.0.0.1"], [.xForwardedFor: "::1, 10.0.0.1"]] {
                try await client.execute(uri: "/metrics", method: .get, headers: headers) { response in
                    #expect(response.status == .forbidden, "\(headers)")
                    #expect((response.object["error"] as? [String: Any])?["code"] as? String == "metrics_forbidden")
                }
            }
        }
        let token = "metrics-token-0123456789abcdef"
        let guarded = try ServerFixture { $0.metricsToken = token }
        defer { guarded.directory.remove() }
        try await guarded.application().test(.router) { client in
            for wrong in ["", "metrics-token-0123456789abcdeX", token + "x"] {
                try await client.execute(uri: "/metrics", method: .get, headers: [HTTPField.Name("X-Metrics-Token")!: wrong]) { response in
                    #expect(response.status == .forbidden)
                }
            }
            try await client.execute(uri: "/metrics", method: .get, headers: [HTTPField.Name("X-Metrics-Token")!: token]) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            }
        }
        let open = try ServerFixture { $0.metricsPublic = true }
        defer { open.directory.remove() }
        try await open.application().test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }
}
