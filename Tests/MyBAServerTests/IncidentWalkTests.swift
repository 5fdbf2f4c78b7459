import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Issue 22: each incident walked as an operator walks it — the real `myba-server` serving a real
/// database file, the Stripe emulator delivering signed events to it, and the real `myba-admin`
/// run with only the commands of the matching runbook — from the complaint to the repair in at
/// most five console commands, ending with the books right.
@Suite("Incident walks on the real binaries", .serialized)
struct IncidentWalkTests {
    @Test(
        "purchase-without-tokens, failed event: a payment-link purchase names a plan the catalog lacks; customer show names the cause, plans set fixes it for the running server, the replay grants once"
    )
    func failedPurchaseEvent() async throws {
        try await IncidentBench.run { bench in
            for (user, email) in [("user_ada", "ada@example.com"), ("user_bea", "bea@example.com")] { try await bench.signUp(user, email: email) }
            // Sold by a payment link: the session names a plan, not a token count.
            let adaEvent = try await bench.paidOutsideCheckout(userId: "user_ada", planId: "team", key: "link-ada")
            let beaEvent = try await bench.paidOutsideCheckout(userId: "user_bea", planId: "team", key: "link-bea")
            let before = try await bench.tokens("user_ada")
            try await bench.waitForEvent(adaEvent, status: .failed)
            try await bench.waitForEvent(beaEvent, status: .failed)

            let walk = try Walk(bench, runbook: "purchase-without-tokens.md")
            let shown = try await walk.run("customer show ada@example.com")
            #expect(shown.stdout.contains(adaEvent) && shown.stdout.contains("failed"), "\(shown.stdout)")
            #expect(shown.stdout.contains("plan \"team\" is not in plans version 0 (built-in)"), "the cause is not beside the event: \(shown.stdout)")

            let plans = bench.directory.file("plans.json")
            try
                #"{"plans":[{"id":"starter","name":"Starter","tokens":10,"amount":500,"currency":"usd"},{"id":"team","name":"Team","tokens":500,"amount":12000,"currency":"usd"}],"firstPurchaseDiscountPercent":20}"#
                .write(toFile: plans, atomically: true, encoding: .utf8)
            let installed = try await walk.run("plans set --from \(plans) --reason \"ticket 4721: Team plan missing\" --yes")
            #expect(installed.status == 0, "\(installed.stdout)\(installed.stderr)")
            let replay = try await walk.run("webhooks replay \(adaEvent) --reason \"ticket 4721\" --yes")
            #expect(replay.status == 0, "\(replay.stdout)\(replay.stderr)")
            #expect(replay.stdout.contains("plans used: version 1 (console"), "\(replay.stdout)")
            let after = try await walk.run("customer show ada@example.com --json")
            #expect(try jsonObject(after.stdout)["tokens"] as? Int == before + 500, "\(before) \(after.stdout)")
            walk.finish()

            // The running server took the catalog without a restart: it sells the plan, and its
            // own retry grants the other customer's failed event.
            let (status, body) = try await bench.server.get("/api/plans")
            #expect(status == 200)
            #expect(String(decoding: body, as: UTF8.self).contains("\"team\""))
            try await bench.waitForEvent(beaEvent, status: .processed, timeout: 30)
            try await bench.expectBooksRight(["user_ada": 1, "user_bea": 1])
        }
    }

    @Test("purchase-without-tokens, event never delivered: webhooks recover fetches it from Stripe and grants it once")
    func undeliveredPurchase() async throws {
        try await IncidentBench.run(deliver: false) { bench in
            try await bench.signUp("user_bob", email: "bob@example.com")
            _ = try await bench.buyThroughServer(userId: "user_bob", planId: "starter")
            let before = try await bench.tokens("user_bob")

            let walk = try Walk(bench, runbook: "purchase-without-tokens.md")
            let shown = try await walk.run("customer show bob@example.com")
            #expect(!shown.stdout.contains("checkout.session.completed"), "the event should never have arrived: \(shown.stdout)")
            let recovered = try await walk.run("webhooks recover --since 3d --reason \"ticket 4721\" --yes")
            #expect(recovered.status == 0, "\(recovered.stdout)\(recovered.stderr)")
            #expect(recovered.stdout.contains("1 recovered") || recovered.stdout.contains("recovered evt_"), "\(recovered.stdout)")
            let after = try await walk.run("customer show bob@example.com --json")
            #expect(try jsonObject(after.stdout)["tokens"] as? Int == before + 10, "\(before) \(after.stdout)")
            walk.finish()
            try await bench.expectBooksRight(["user_bob": 1])
        }
    }

    @Test(
        "tokens-granted-twice: a hand credit made without --payment, then the late event granted the purchase too; the walk takes the extra back and reconcile is clean"
    )
    func grantedTwice() async throws {
        try await IncidentBench.run(deliver: false) { bench in
            try await bench.signUp("user_cy", email: "cy@example.com")
            let session = try await bench.buyThroughServer(userId: "user_cy", planId: "starter")
            let start = try await bench.tokens("user_cy")
            // The mistake, before the walk: a credit naming no payment, then a recovery.
            let credit = try await bench.admin(["tokens", "adjust", "user_cy", "+10", "--reason", "paid without webhook", "--yes"])
            #expect(credit.status == 0, "\(credit.stderr)")
            #expect(try await bench.admin(["webhooks", "recover", "--since", "1h", "--reason", "missed events", "--yes"]).status == 0)
            #expect(try await bench.tokens("user_cy") == start + 20)

            let walk = try Walk(bench, runbook: "tokens-granted-twice.md")
            let ledger = try await walk.run("ledger show user_cy --limit 100")
            #expect(ledger.stdout.contains("purchase:\(session)") && ledger.stdout.contains("paid without webhook"), "\(ledger.stdout)")
            let fixed = try await walk.run("tokens adjust user_cy -10 --reason \"hand credit beside its purchase, ticket 4713\" --yes")
            #expect(fixed.status == 0, "\(fixed.stderr)")
            #expect(try await walk.run("ledger verify").status == 0)
            try await bench.waitForOutboxToDrain()
            let reconciled = try await walk.run("reconcile --user user_cy")
            #expect(reconciled.status == 0, "\(reconciled.stdout)\(reconciled.stderr)")
            walk.finish()
            #expect(try await bench.tokens("user_cy") == start + 10)
            try await bench.expectBooksRight(["user_cy": 1])
        }
    }

    @Test(
        "stripe-outage-and-drift: reconcile tells the outbox's pending work (with its next attempt) from drift nothing will heal; --fix push repairs both, creating the customer missing in Stripe"
    )
    func driftAfterOutage() async throws {
        // The mirror is slow here, so the outage's backlog is still waiting when the walk starts.
        try await IncidentBench.run(deliver: true, mirrorIntervalMilliseconds: 600_000) { bench in
            try await bench.signUp("user_dee", email: "dee@example.com")
            // Dee's metadata reached Stripe before the outage (the mirror ran); then someone edited
            // it in the dashboard: drift no outbox row will heal.
            let mirror = StripeMirror(database: bench.database, stripe: bench.stripe)
            // (Creating the customer queues one more push of the values it now links.)
            for _ in 0..<3 where try await bench.database.outbox.status().depth > 0 {
                _ = try await mirror.pushDue(logger: .init(label: "test"))
            }
            #expect(try await bench.database.outbox.status().depth == 0)
            let dee = try #require(try await bench.database.ledger.customer(userId: "user_dee")?.stripeCustomerId)
            _ = try await bench.stripe.updateCustomerMetadata(dee, metadata: ["tokens": "99"], idempotencyKey: "dashboard-edit")
            // Eve signed up during the outage: her Stripe customer does not exist yet.
            try await bench.signUp("user_eve", email: "eve@example.com")

            let walk = try Walk(bench, runbook: "stripe-outage-and-drift.md")
            let first = try await walk.run("reconcile")
            #expect(first.status == 3)
            #expect(first.stdout.contains("missing in Stripe: user_eve (waiting in the outbox"), "\(first.stdout)")
            #expect(first.stdout.contains("next attempt") && first.stdout.contains("1 difference(s) nothing is about to heal"), "\(first.stdout)")
            let pushed = try await walk.run("reconcile --fix push --yes --reason \"metadata behind after the outage\"")
            #expect(pushed.status == 0, "\(pushed.stdout)\(pushed.stderr)")
            #expect(pushed.stdout.contains("creating the Stripe customer"), "\(pushed.stdout)")
            let clean = try await walk.run("reconcile")
            #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
            walk.finish()
            try await bench.expectBooksRight([:])
        }
    }

    @Test(
        "session-reaping: a flood of stale anonymous sessions; stats counts them, the reap removes only those, the server keeps serving the fresh ones"
    )
    func staleSessionFlood() async throws {
        try await IncidentBench.run(deliver: false) { bench in
            var sessions: [String] = []
            for index in 0..<30 {
                let (status, body) = try await bench.server.post(
                    "/api/anonymous-session",
                    body: #"{"fingerprint":"fp-flood-\#(index)-abcdefgh"}"#,
                    headers: [.contentType: "application/json"]
                )
                #expect(status == 200 || status == 201, "\(String(decoding: body, as: UTF8.self))")
                sessions.append(try #require(try jsonObject(String(decoding: body, as: UTF8.self))["sessionId"] as? String))
            }
            // Time passes for 25 of them.
            let stale = Array(sessions.prefix(25))
            try await bench.database.writeRawForTests { db in
                for id in stale {
                    try db.execute(
                        sql: "UPDATE anonymous_sessions SET created_at = ?, last_seen_at = ? WHERE id = ?",
                        arguments: [
                            SQLTimestamp.string(Date().addingTimeInterval(-40 * 86400)), SQLTimestamp.string(Date().addingTimeInterval(-40 * 86400)),
                            id,
                        ]
                    )
                }
            }

            let walk = try Walk(bench, runbook: "session-reaping.md")
            let stats = try await walk.run("stats --json")
            #expect(try jsonObject(stats.stdout)["staleAnonymousSessions"] as? Int == 25, "\(stats.stdout)")
            let reaped = try await walk.run("sessions reap --older-than 30d --yes")
            #expect(reaped.status == 0, "\(reaped.stdout)\(reaped.stderr)")
            let after = try await walk.run("stats --json")
            #expect(try jsonObject(after.stdout)["staleAnonymousSessions"] as? Int == 0, "\(after.stdout)")
            walk.finish()
            // The fresh visitors come back to their own sessions; the stale ones are gone.
            for (index, id) in sessions.enumerated().suffix(5) {
                let (status, body) = try await bench.server.post(
                    "/api/anonymous-session",
                    body: #"{"fingerprint":"fp-flood-\#(index)-abcdefgh"}"#,
                    headers: [.contentType: "application/json"]
                )
                let returning = try jsonObject(String(decoding: body, as: UTF8.self))["sessionId"] as? String
                #expect(status == 200 && returning == id)
            }
            for id in stale { #expect(try await bench.database.sessions.session(id: id) == nil) }
            try await bench.expectBooksRight([:])
        }
    }
}

/// One incident's world: a database file, the Stripe emulator, the real server over both.
struct IncidentBench {
    let directory: TemporaryDirectory
    let databasePath: String
    let database: AppDatabase
    let stripe: StripeClient
    let server: RunningServer
    let adminEnvironment: [String: String]

    /// `deliver`: whether the emulator delivers its events to the server (false: they stay at
    /// Stripe, as when the endpoint was down).
    static func run(
        deliver: Bool = true,
        mirrorIntervalMilliseconds: Int = 200,
        _ body: @Sendable (IncidentBench) async throws -> Void
    ) async throws {
        let directory = try TemporaryDirectory("myba-incident")
        defer { directory.remove() }
        let emulator = StripeEmulator()
        try await emulator.application().test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let databasePath = directory.file("myba.sqlite")
            let logPath = directory.file("myba.jsonl")
            let server = try await RunningServer.start(
                environment: [
                    "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": logPath, "STRIPE_SECRET_KEY": "sk_test_walk",
                    "STRIPE_API_BASE": base, "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret, "CLERK_WEBHOOK_SECRET": clerkWebhookSecret,
                    "MYBA_WEBHOOK_RETRY_SECONDS": "1", "MYBA_ANON_SESSIONS_PER_HOUR": "1000",
                    "MYBA_MIRROR_INTERVAL_MS": String(mirrorIntervalMilliseconds),
                ],
                currentDirectory: directory.path
            )
            defer { server.process.send(SIGKILL) }
            if deliver {
                await emulator.addWebhookEndpoint(
                    EmulatorWebhookEndpoint(url: "http://127.0.0.1:\(server.port)/api/webhook/stripe", secret: stripeWebhookSecret)
                )
            }
            let bench = IncidentBench(
                directory: directory,
                databasePath: databasePath,
                database: try AppDatabase.openFile(at: databasePath),
                stripe: try StripeClient(settings: StripeSettings(secretKey: "sk_test_walk", apiBase: URL(string: base)!), http: CurlHTTPClient()),
                server: server,
                adminEnvironment: [
                    "STRIPE_SECRET_KEY": "sk_test_walk", "STRIPE_API_BASE": base, "MYBA_LOG_FILE": logPath, "MYBA_OPERATOR": "night-operator",
                ]
            )
            try await body(bench)
        }
    }

    func admin(_ arguments: [String]) async throws -> ProcessResult {
        try await BuiltProduct.run("myba-admin", arguments + ["--db", databasePath], environment: adminEnvironment)
    }

    /// Clerk's `user.created`, signed, to the running server: the account and its welcome grant.
    func signUp(_ userId: String, email: String) async throws {
        let body = Deliveries.clerkUser(type: "user.created", userId: userId, email: email)
        let (status, answer) = try await server.post("/api/webhook/clerk", body: body, headers: Deliveries.svixHeaders(body, id: "msg_\(userId)"))
        #expect(status == 200, "\(String(decoding: answer, as: UTF8.self))")
    }

    /// A Checkout Session made outside MyBA (a payment link): it names a plan, not a token count.
    /// Paid at the emulator; returns the id of the `checkout.session.completed` event.
    func paidOutsideCheckout(userId: String, planId: String, key: String) async throws -> String {
        let session = try await stripe.createCheckoutSession(
            [
                ("mode", "payment"), ("line_items[0][price_data][currency]", "usd"), ("line_items[0][price_data][unit_amount]", "12000"),
                ("line_items[0][price_data][product_data][name]", "Team"), ("line_items[0][quantity]", "1"),
                ("success_url", "https://app.example/ok"), ("client_reference_id", userId), ("metadata[user_id]", userId),
                ("metadata[plan_id]", planId),
            ],
            idempotencyKey: key
        )
        let sessionId = try #require(session.id)
        _ = try await stripe.request("POST", "/test/checkout/sessions/\(sessionId)/complete")
        return try await eventId(forSession: sessionId)
    }

    /// A purchase through the server's own checkout (signed in with development auth), paid at
    /// the emulator. Returns the Checkout Session id.
    func buyThroughServer(userId: String, planId: String) async throws -> String {
        let (status, body) = try await server.post(
            "/api/create-checkout-session",
            body: #"{"planId":"\#(planId)"}"#,
            headers: [.contentType: "application/json", .authorization: "Bearer dev:\(userId)"]
        )
        #expect(status == 200, "\(String(decoding: body, as: UTF8.self))")
        let sessionId = try #require(try jsonObject(String(decoding: body, as: UTF8.self))["sessionId"] as? String)
        _ = try await stripe.request("POST", "/test/checkout/sessions/\(sessionId)/complete")
        return sessionId
    }

    /// The id of the event Stripe recorded for a completed session.
    func eventId(forSession sessionId: String) async throws -> String {
        for event in try await stripe.events(type: "checkout.session.completed", since: Date().addingTimeInterval(-3600)) {
            let object = (event["data"] as? [String: Any])?["object"] as? [String: Any]
            if event["type"] as? String == "checkout.session.completed", object?["id"] as? String == sessionId, let id = event["id"] as? String {
                return id
            }
        }
        throw TestSupportError("no checkout.session.completed event for \(sessionId)")
    }

    func tokens(_ userId: String) async throws -> Int {
        try #require(try await database.ledger.balance(userId: userId)).tokens
    }

    func waitForEvent(_ eventId: String, status: WebhookEvent.Status, timeout: TimeInterval = 15) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await database.inbox.event(source: .stripe, eventId: eventId)?.status == status { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        let actual = try await database.inbox.event(source: .stripe, eventId: eventId)
        throw TestSupportError("event \(eventId) is \(actual?.status.rawValue ?? "not stored") after \(Int(timeout)) s, not \(status.rawValue)")
    }

    func waitForOutboxToDrain(timeout: TimeInterval = 15) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await database.outbox.status().depth == 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("the Stripe outbox did not drain in \(Int(timeout)) s")
    }

    /// `ledger verify` clean, and each named customer holds exactly `purchases` purchase entries.
    func expectBooksRight(_ purchases: [String: Int]) async throws {
        #expect(try await database.ledger.verify().isClean)
        for (userId, count) in purchases {
            #expect(try await database.ledger.entries(userId: userId, limit: 100).filter { $0.kind == .purchase }.count == count, "\(userId)")
        }
    }
}

/// The console commands of one walk: each must be a command its runbook shows (same command,
/// options among those the runbook line uses, plus `--yes`/`--json` off a terminal), and a walk
/// takes at most five.
final class Walk {
    let bench: IncidentBench
    let runbook: String
    let shapes: [(words: [String], options: Set<String>)]
    private(set) var steps: [String] = []

    init(_ bench: IncidentBench, runbook: String) throws {
        self.bench = bench
        self.runbook = runbook
        shapes = try Runbooks.commands(ofFile: runbook).map { Self.shape(Self.words($0)) }
    }

    func run(_ line: String) async throws -> ProcessResult {
        let arguments = Self.words(line)
        let shape = Self.shape(arguments)
        let allowed: Set<String> = ["--yes", "--json"]
        let known = shapes.contains { $0.words == shape.words && shape.options.subtracting(allowed).isSubset(of: $0.options) }
        #expect(known, "`myba-admin \(line)` is not a command \(runbook) shows")
        steps.append(line)
        return try await bench.admin(arguments)
    }

    func finish() {
        #expect(steps.count <= 5, "the walk took \(steps.count) commands: \(steps)")
    }

    /// The command's words (up to two, before any argument) and its `--options`.
    static func shape(_ arguments: [String]) -> (words: [String], options: Set<String>) {
        let words = Array(arguments.prefix { $0.allSatisfy { $0.isLowercase } }.prefix(2))
        return (words, Set(arguments.filter { $0.hasPrefix("--") }))
    }

    /// Splits a command line as a shell would for these simple cases: spaces, double quotes.
    static func words(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false
        var started = false
        for character in line {
            if character == "\"" {
                quoted.toggle()
                started = true
            } else if character == " " && !quoted {
                if started { words.append(current) }
                current = ""
                started = false
            } else {
                current.append(character)
                started = true
            }
        }
        if started { words.append(current) }
        return words
    }
}
