import ArgumentParser
import Foundation
import Hummingbird
import Logging
import StripeEmulator

/// `stripe-emulator --port N`: a Stripe-compatible API on loopback for local runs and benchmarks.
@main
struct StripeEmulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stripe-emulator",
        abstract: "Serve a Stripe-compatible API (customers, Checkout, refunds, events, webhooks) on loopback.",
        discussion:
            "Any sk_… key is accepted. A session's url is a hosted checkout page here (/checkout/{id}) with Pay and Cancel. POST /test/checkout/sessions/{id}/complete pays a session; POST /test/faults sets faults at run time."
    )

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 12111

    @Option(help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(help: "Webhook URL to deliver signed events to (repeatable).")
    var webhook: [String] = []

    @Option(help: "Signing secret (whsec_…) of the webhook URLs.")
    var webhookSecret = "whsec_emulator"

    @Option(help: "Share of API requests answered 429 (0–1).")
    var rateLimitShare = 0.0

    @Option(help: "Share of API requests answered 500 (0–1).")
    var serverErrorShare = 0.0

    @Option(help: "Milliseconds added before every answer.")
    var latency = 0

    @Option(help: "Share of API requests whose connection is dropped without an answer (0–1).")
    var dropShare = 0.0

    @Option(help: "Milliseconds the hosted checkout page's Pay waits before delivering the purchase event.")
    var webhookDelay = 0

    func validate() throws {
        guard webhookDelay >= 0, latency >= 0 else { throw ValidationError("--latency and --webhook-delay are milliseconds, 0 or more") }
        guard (0...1).contains(rateLimitShare), (0...1).contains(serverErrorShare), (0...1).contains(dropShare),
            rateLimitShare + serverErrorShare <= 1
        else {
            throw ValidationError("fault shares must be between 0 and 1 and add up to at most 1")
        }
    }

    func run() async throws {
        let emulator = StripeEmulator(
            webhookEndpoints: webhook.map { EmulatorWebhookEndpoint(url: $0, secret: webhookSecret) },
            faults: StripeFaults(
                rateLimitShare: rateLimitShare,
                serverErrorShare: serverErrorShare,
                latencyMilliseconds: latency,
                dropShare: dropShare,
                webhookDelayMilliseconds: webhookDelay
            )
        )
        let host = self.host
        try await emulator.application(
            host: host,
            port: port,
            onServerRunning: { port in
                print("stripe-emulator listening on http://\(host):\(port)")
                // A pipe (a supervisor, a script waiting for the port) sees the line at once.
                fflush(nil)
            }
        ).runService()
    }
}
