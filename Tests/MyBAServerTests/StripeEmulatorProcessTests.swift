import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The `stripe-emulator` executable as the README runs it: its flags, its faults, its webhooks.
@Suite("stripe-emulator process", .serialized)
struct StripeEmulatorProcessTests {
    /// Starts the binary on a free port; returns it and its base URL.
    static func start(_ arguments: [String]) async throws -> (ChildProcess, URL) {
        let process = try ChildProcess.start(BuiltProduct.path("stripe-emulator"), ["--port", "0"] + arguments)
        do {
            let output = try await process.waitForOutput("listening on http://")
            let address = try #require(output.split(separator: "\n").first { $0.contains("listening on http://") }?.split(separator: " ").last)
            return (process, try #require(URL(string: String(address))))
        } catch {
            process.send(SIGKILL)
            throw error
        }
    }

    static func status(_ method: String, _ url: URL, form: String? = nil) async throws -> Int {
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer sk_test_emulator", forHTTPHeaderField: "Authorization")
        if let form {
            request.httpBody = Data(form.utf8)
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as! HTTPURLResponse).statusCode
    }

    @Test(
        "fault flags: --server-error-share 1 answers 500 and --rate-limit-share 1 answers 429 on the API but not on /test routes; --latency delays every answer"
    )
    func faultFlags() async throws {
        let (failing, failingBase) = try await Self.start(["--server-error-share", "1"])
        defer { failing.send(SIGKILL) }
        #expect(try await Self.status("GET", failingBase.appendingPathComponent("v1/customers")) == 500)
        #expect(try await Self.status("POST", failingBase.appendingPathComponent("test/faults"), form: "{}") != 500)

        let (limited, limitedBase) = try await Self.start(["--rate-limit-share", "1"])
        defer { limited.send(SIGKILL) }
        #expect(try await Self.status("POST", limitedBase.appendingPathComponent("v1/customers"), form: "email=a%40example.com") == 429)

        let (slow, slowBase) = try await Self.start(["--latency", "400"])
        defer { slow.send(SIGKILL) }
        let started = ContinuousClock.now
        #expect(try await Self.status("GET", slowBase.appendingPathComponent("v1/customers")) == 200)
        #expect(ContinuousClock.now - started >= .milliseconds(400))

        // Shares that cannot hold are a usage error.
        let bad = try await BuiltProduct.run("stripe-emulator", ["--port", "0", "--rate-limit-share", "0.7", "--server-error-share", "0.7"])
        #expect(bad.status == 64 || bad.status == 2, "\(bad.status) \(bad.stderr)")
        #expect(bad.stderr.contains("fault shares"))
    }

    @Test("--webhook and --webhook-secret: a completed Checkout Session is delivered to the URL, signed so that MyBA's verifier accepts it")
    func deliversSignedWebhooks() async throws {
        let received = Mutex<[(body: [UInt8], signature: String?)]>([])
        let router = Router()
        router.post("/hook") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 20)
            received.withLock { $0.append((Array(buffer: body), request.headers[HTTPField.Name("Stripe-Signature")!])) }
            return .ok
        }
        try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
            let secret = "whsec_process_test_secret"
            let (emulator, base) = try await Self.start(["--webhook", "http://127.0.0.1:\(client.port!)/hook", "--webhook-secret", secret])
            defer { emulator.send(SIGKILL) }
            let stripe = try StripeClient(settings: StripeSettings(secretKey: "sk_test_emulator", apiBase: base), http: CurlHTTPClient())
            let session = try await stripe.createCheckoutSession(
                [
                    ("mode", "payment"), ("line_items[0][price_data][currency]", "usd"), ("line_items[0][price_data][unit_amount]", "500"),
                    ("line_items[0][price_data][product_data][name]", "Starter"), ("line_items[0][quantity]", "1"),
                    ("success_url", "https://app.example/ok"), ("metadata[user_id]", "user_hook"),
                ],
                idempotencyKey: "hook-1"
            )
            _ = try await stripe.request("POST", "/test/checkout/sessions/\(session.id)/complete")
            let deadline = ContinuousClock.now + .seconds(10)
            while received.withLock({ $0.isEmpty }) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let deliveries = received.withLock { $0 }
            let completed = try #require(
                deliveries.first { (try? StripeWire.decode(StripeEventHeader.self, from: Data($0.body)))?.type == "checkout.session.completed" }
            )
            try StripeSignature.verify(payload: completed.body, header: completed.signature, secret: secret)
            #expect(throws: (any Error).self) {
                try StripeSignature.verify(payload: completed.body, header: completed.signature, secret: "whsec_other")
            }
        }
    }
}
