import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps

@Suite("myba-admin interactive", .serialized)
struct ConsoleSessionTests {
    @Test(
        "the REPL under a terminal: prompt with the environment, completion of a command prefix and a user id, history across runs, no secret in history"
    )
    func repl() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let history = fixture.directory.file("history")
        let command = "env MYBA_ADMIN_HISTORY=\(history) MYBA_ENV=production NO_COLOR=1 \(BuiltProduct.path("myba-admin")) --db \(fixture.path)"
        let terminal = TerminalSession()
        try await terminal.start(command)
        defer { terminal.stop() }
        _ = try await terminal.waitFor("myba-admin [production] myba.sqlite>")
        // "cust" + Tab completes the command, "sh" + Tab the subcommand, "user_al" + Tab the user
        // id; readline adds the space after each completed word (capture-pane trims it).
        try await terminal.type("cust", "Tab")
        _ = try await terminal.waitFor("> customer")
        try await terminal.type("sh", "Tab")
        _ = try await terminal.waitFor("> customer show")
        try await terminal.type("user_al", "Tab")
        _ = try await terminal.waitFor("customer show user_alice")
        try await terminal.type("Enter")
        _ = try await terminal.waitFor("alice@example.com")
        // Tab where nothing completes shows what the command takes.
        try await terminal.type("tokens adjust user_alice ", "Tab")
        _ = try await terminal.waitFor("adjust <user> <+N|-N>")
        try await terminal.type("C-u")
        try await terminal.type("tokens adjust user_alice +1 --reason 'key sk_live_0123456789abcdef' --dry-run", "Enter")
        _ = try await terminal.waitFor("dry run: nothing changed")
        // Lines naming other kinds of secret run, and stay out of the history file as well.
        try await terminal.type("tokens adjust user_alice +1 --reason 'restricted rk_live_0123456789abcdef' --dry-run", "Enter")
        _ = try await terminal.waitFor("dry run: nothing changed")
        try await terminal.type("tokens adjust user_alice +1 --reason 'whsec_abcdefabcdef0123456789' --dry-run", "Enter")
        _ = try await terminal.waitFor("dry run: nothing changed")
        try await terminal.type("stats --api-key plain-provider-key-123456", "Enter")
        _ = try await terminal.waitFor("--api-key")
        try await terminal.type("tokens adjust user_alice +1 --reason goodwill", "Enter")
        _ = try await terminal.waitFor("apply? type yes to confirm:")
        try await terminal.type("yes", "Enter")
        _ = try await terminal.waitFor("applied")
        try await terminal.type("exit", "Enter")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 55)

        let saved = try String(contentsOfFile: history, encoding: .utf8)
        #expect(saved.contains("customer show user_alice"))
        #expect(saved.contains("--reason goodwill"))
        for secret in ["sk_live", "rk_live", "whsec_", "plain-provider-key"] {
            #expect(!saved.contains(secret), "a secret (\(secret)) reached the history file: \(saved)")
        }

        // A second run recalls the first run's lines with the up arrow.
        let second = TerminalSession()
        try await second.start(command)
        defer { second.stop() }
        _ = try await second.waitFor("myba.sqlite>")
        try await second.type("Up", "Up")
        _ = try await second.waitFor("customer show user_alice")
    }

    @Test("payment refund goes through Stripe and takes the tokens back; the charge.refunded webhook that follows changes nothing")
    func paymentRefund() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let emulator = StripeEmulator()
        try await emulator.application().test(.live) { client in
            let base = URL(string: "http://127.0.0.1:\(client.port!)")!
            let stripe = try StripeClient(settings: StripeSettings(secretKey: "sk_test_admin", apiBase: base), http: CurlHTTPClient())
            let session = try await stripe.createCheckoutSession(
                [
                    ("mode", "payment"), ("line_items[0][price_data][currency]", "usd"), ("line_items[0][price_data][unit_amount]", "2000"),
                    ("line_items[0][price_data][product_data][name]", "Professional"), ("line_items[0][quantity]", "1"),
                    ("success_url", "https://app.example/ok"), ("metadata[user_id]", "user_alice"), ("metadata[tokens]", "50"),
                ],
                idempotencyKey: "cs-admin"
            )
            let sessionId = session.id
            let paid = try await stripe.request("POST", "/test/checkout/sessions/\(sessionId)/complete")
            let paymentIntent = paid["payment_intent"] as! String
            _ = try await fixture.database.write { tx in
                try Payments.recordPurchase(
                    checkoutSessionId: sessionId,
                    paymentIntentId: paymentIntent,
                    stripeCustomerId: nil,
                    userId: "user_alice",
                    planId: "professional",
                    tokens: 50,
                    amountTotal: 2000,
                    currency: "usd",
                    actor: "test",
                    requestId: nil,
                    now: Date(),
                    in: tx
                )
            }
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 104)
            let environment = ["STRIPE_SECRET_KEY": "sk_test_admin", "STRIPE_API_BASE": base.absoluteString, "MYBA_OPERATOR": "ann"]
            let tooMuch = try await fixture.admin(
                ["payment", "refund", sessionId, "--amount", "5000", "--reason", "x", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(tooMuch.status == 1)
            let result = try await fixture.admin(
                [
                    "payment", "refund", sessionId, "--amount", "1000", "--stripe-reason", "requested_by_customer",
                    "--reason", "customer asked", "--yes", "--db", fixture.path,
                ],
                environment: environment
            )
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 79)

            // Stripe's charge.refunded for that refund arrives afterwards: same processing, same key.
            let events = try await stripe.request("GET", "/v1/events", query: [("type", "charge.refunded")])
            let event = try #require((events["data"] as? [[String: Any]])?.first)
            let body = String(decoding: try JSONSerialization.data(withJSONObject: event), as: UTF8.self)
            _ = try await fixture.database.inbox.store(
                WebhookDelivery(source: .stripe, eventId: event["id"] as! String, type: "charge.refunded", body: body, headers: [:], requestId: nil)
            )
            let outcome = try await WebhookProcessor(database: fixture.database)
                .process(source: .stripe, eventId: event["id"] as! String, logger: Logger(label: "test"))
            #expect(outcome.status == .processed)
            #expect(outcome.entryIds.isEmpty)
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 79)
            let audit = try await fixture.database.audit.records(limit: 1)
            #expect(audit.first?.operatorName == "ann")
            #expect(audit.first?.entryIds.count == 1)
            #expect(try await fixture.database.ledger.verify().isClean)
        }
    }
}

@Suite("The console's prompt colours")
struct PromptColourTests {
    @Test("on a terminal, a production database's prompt is white on red; a development one is cyan; NO_COLOR turns both off")
    func productionPromptIsRed() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let history = fixture.directory.file("history")
        for (environment, noColor, expected) in [
            ("production", false, "\u{1B}[1;37;41m"), ("development", false, "\u{1B}[36m"), ("production", true, nil),
        ] as [(String, Bool, String?)] {
            let terminal = TerminalSession()
            // The tmux server keeps the environment it started with (NO_COLOR may be in it).
            try await terminal.start(
                "env -u NO_COLOR MYBA_ADMIN_HISTORY=\(history) MYBA_ENV=\(environment) \(noColor ? "NO_COLOR=1" : "") TERM=xterm-256color \(BuiltProduct.path("myba-admin")) --db \(fixture.path)"
            )
            defer { terminal.stop() }
            _ = try await terminal.waitFor("myba-admin [\(environment)]")
            let screen = try await terminal.screen(escapes: true)
            let promptLine = try #require(screen.split(separator: "\n").first { $0.contains("myba-admin [") }.map(String.init))
            if let expected {
                // tmux re-encodes attributes; compare what they mean: bold/white/red, or cyan.
                let wanted = expected.contains("41") ? ["41m", "37", "1"] : ["36m"]
                #expect(wanted.allSatisfy { promptLine.contains($0) } && promptLine.contains("\u{1B}["), "\(promptLine.debugDescription)")
            } else {
                #expect(!promptLine.contains("\u{1B}[4") && !promptLine.contains("\u{1B}[3"), "\(promptLine.debugDescription)")
            }
        }
    }
}
