import Foundation
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps

@Suite("myba-admin import and reconcile against the Stripe emulator")
struct ReconcileCommandTests {
    /// The Stripe emulator on a free port, a client for it, and the environment that points the
    /// console at it.
    static func withEmulator(_ body: @Sendable (StripeClient, [String: String]) async throws -> Void) async throws {
        try await StripeEmulator().application().test(.live) { client in
            let base = URL(string: "http://127.0.0.1:\(client.port!)")!
            try await body(
                try StripeClient(settings: StripeSettings(secretKey: "sk_test_rec", apiBase: base), http: CurlHTTPClient()),
                ["STRIPE_SECRET_KEY": "sk_test_rec", "STRIPE_API_BASE": base.absoluteString]
            )
        }
    }

    /// A Starter purchase by user_alice, paid at the emulator (its checkout event is stored only
    /// at Stripe). Returns the completed Checkout Session.
    static func paidStarter(_ stripe: StripeClient, key: String) async throws -> [String: Any] {
        let session = try await stripe.createCheckoutSession(
            [
                ("mode", "payment"), ("line_items[0][price_data][currency]", "usd"), ("line_items[0][price_data][unit_amount]", "500"),
                ("line_items[0][price_data][product_data][name]", "Starter"), ("line_items[0][quantity]", "1"),
                ("success_url", "https://app.example/ok"), ("metadata[user_id]", "user_alice"), ("metadata[tokens]", "10"),
                ("metadata[plan_id]", "starter"),
            ],
            idempotencyKey: key
        )
        return try await stripe.request("POST", "/test/checkout/sessions/\(session.id)/complete")
    }

    @Test("import takes legacy metadata balances over once; reconcile finds drift (exit 3), --fix push and --fix pull clear it")
    func importAndReconcile() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await Self.withEmulator { stripe, environment in
            let legacy = try await stripe.createCustomer(
                email: "old@example.com",
                metadata: [
                    "user_id": "user_legacy", "tokens": "17", "tokens_used": "40", "tokens_purchased": "50", "tokens_transferred": "1",
                    "last_purchase": "2025-03-01T10:00:00.000Z", "transfer_date": "2025-01-02",
                ],
                idempotencyKey: "legacy-1"
            )
            _ = try await stripe.createCustomer(email: nil, metadata: ["clerk_user_id": "user_clerkonly", "tokens": "3"], idempotencyKey: "legacy-2")
            _ = try await stripe.createCustomer(email: "stranger@example.com", metadata: [:], idempotencyKey: "legacy-3")

            let dry = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--dry-run", "--json", "--db", fixture.path],
                environment: environment
            )
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(try await fixture.database.ledger.customer(userId: "user_legacy") == nil)
            let imported = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--yes", "--json", "--db", fixture.path],
                environment: environment
            )
            #expect(imported.status == 0, "\(imported.stderr)")
            let balance = try #require(try await fixture.database.ledger.balance(userId: "user_legacy"))
            #expect((balance.tokens, balance.tokensUsed, balance.tokensPurchased, balance.tokensTransferred) == (17, 40, 50, 1))
            #expect(balance.lastPurchase.map(Timestamps.timestamp) == "2025-03-01T10:00:00.000Z")
            #expect(try await fixture.database.ledger.customer(userId: "user_legacy")?.stripeCustomerId == legacy.id)
            #expect(try await fixture.database.ledger.balance(userId: "user_clerkonly")?.tokens == 3)
            let again = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(again.stdout.contains("0 imported"))
            #expect(try await fixture.database.ledger.entries(userId: "user_legacy", limit: 10).count == 1)
            #expect(try await fixture.database.ledger.verify().isClean)

            // user_alice exists locally only; the legacy customers match now.
            let first = try await fixture.admin(["reconcile", "--json", "--db", fixture.path], environment: environment)
            #expect(first.status == 3)
            let report = try #require(try jsonObject(first.stdout)["report"] as? [String: Any])
            #expect(report["missingInStripe"] as? [String] == ["user_alice"])
            #expect((report["drifts"] as? [Any])?.count == 0, "\(report["drifts"] ?? "")")

            // --fix push creates the customer missing in Stripe (signed up during an outage), with
            // the code the outbox runs; then drift one key in Stripe and pull it.
            let created = try await fixture.admin(
                ["reconcile", "--fix", "push", "--yes", "--reason", "after the outage", "--db", fixture.path],
                environment: environment
            )
            #expect(created.status == 0, "\(created.stdout)\(created.stderr)")
            #expect(created.stdout.contains("creating the Stripe customer"), "\(created.stdout)")
            let clean = try await fixture.admin(["reconcile", "--db", fixture.path], environment: environment)
            #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
            _ = try await stripe.updateCustomerMetadata(
                legacy.id,
                metadata: ["tokens": "99", "tokens_used": "1"],
                idempotencyKey: "drift-1"
            )
            let drifted = try await fixture.admin(["reconcile", "--db", fixture.path], environment: environment)
            #expect(drifted.status == 3)
            #expect(drifted.stdout.contains("user_legacy") && drifted.stdout.contains("99"))
            let noReason = try await fixture.admin(["reconcile", "--fix", "push", "--yes", "--db", fixture.path], environment: environment)
            #expect(noReason.status == 2)
            #expect(noReason.stderr.contains("--reason"))
            let refused = try await fixture.admin(
                ["reconcile", "--fix", "push", "--reason", "stripe edited by hand", "--db", fixture.path],
                environment: environment
            )
            #expect(refused.status == 1)
            let pushed = try await fixture.admin(
                ["reconcile", "--fix", "push", "--yes", "--reason", "stripe edited by hand", "--db", fixture.path],
                environment: environment
            )
            #expect(pushed.status == 0, "\(pushed.stdout)\(pushed.stderr)")
            #expect((try await stripe.retrieveCustomer(legacy.id).metadata)?["tokens"] == "17")

            _ = try await stripe.updateCustomerMetadata(legacy.id, metadata: ["tokens": "20"], idempotencyKey: "drift-2")
            let pulled = try await fixture.admin(
                ["reconcile", "--fix", "pull", "--yes", "--reason", "support granted in Stripe", "--db", fixture.path],
                environment: environment
            )
            #expect(pulled.status == 0, "\(pulled.stdout)\(pulled.stderr)")
            #expect(pulled.stdout.contains("17") && pulled.stdout.contains("20"), "the plan shows before and after: \(pulled.stdout)")
            #expect(try await fixture.database.ledger.balance(userId: "user_legacy")?.tokens == 20)
            #expect(try await fixture.database.audit.records(limit: 1).first?.reason == "support granted in Stripe")
            #expect(try await fixture.database.ledger.verify().isClean)

            // During a Stripe outage the ledger moves on and the outbox waits: Stripe's value is
            // stale, and pull must not undo what happened since.
            _ = try await fixture.database.ledger.post(
                LedgerPosting(userId: "user_legacy", kind: .consume, delta: -1, idempotencyKey: "during-outage", actor: "api")
            )
            let stale = try await fixture.admin(
                ["reconcile", "--fix", "pull", "--yes", "--reason", "after the outage", "--db", fixture.path],
                environment: environment
            )
            #expect(stale.status == 3, "\(stale.stdout)\(stale.stderr)")
            #expect(stale.stdout.contains("skipped user_legacy") && stale.stdout.contains("outbox"), "\(stale.stdout)")
            #expect(try await fixture.database.ledger.balance(userId: "user_legacy")?.tokens == 19)

            // A step applies once: the same plan applied again changes nothing. (user_alice's
            // outbox is taken as drained, as the server's mirror would have it.)
            try await fixture.database.writerForTests.write { db in try db.execute(sql: "DELETE FROM stripe_outbox WHERE user_id = 'user_alice'") }
            let step = try #require(
                try await fixture.database.stripeCustomers.planPull(
                    ReconcileReport(
                        stripeCustomers: 1,
                        localCustomers: 1,
                        drifts: [
                            MetadataDrift(
                                userId: "user_alice",
                                stripeCustomerId: nil,
                                key: "tokens",
                                local: "54",
                                stripe: "60",
                                pendingInOutbox: false
                            )
                        ],
                        missingInStripe: [],
                        missingLocally: [],
                        pendingOutbox: 0
                    )
                ).steps.first
            )
            let context = OperatorContext(operatorName: "test", commandLine: "reconcile --fix pull", reason: "retry")
            let before = try #require(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens)
            #expect(try await fixture.database.stripeCustomers.applyPull(step, by: context) != .alreadyApplied)
            #expect(try await fixture.database.stripeCustomers.applyPull(step, by: context) == .alreadyApplied)
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 60)
            #expect(before != 60)
            #expect(try await fixture.database.ledger.verify().isClean)
        }
    }

    @Test("reconcile --fix push after the mirror already pushed the same balance: a fresh key, so Stripe really takes the ledger's values back")
    func forcedPushIsNotReplayed() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await Self.withEmulator { stripe, environment in
            // The server's mirror pushed user_alice's latest change (one change pending: the
            // outbox row a forced push also starts from); then someone edits Stripe by hand.
            _ = try await StripeMirror(database: fixture.database, stripe: stripe).pushDue(logger: .init(label: "test"))
            _ = try await fixture.database.ledger.post(
                LedgerPosting(userId: "user_alice", kind: .adjust, delta: 1, idempotencyKey: "one-change", actor: "test", reason: "fixture")
            )
            _ = try await StripeMirror(database: fixture.database, stripe: stripe).pushDue(logger: .init(label: "test"))
            let customerId = try #require(try await fixture.database.ledger.customer(userId: "user_alice")?.stripeCustomerId)
            let tokens = try #require(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens)
            _ = try await stripe.updateCustomerMetadata(customerId, metadata: ["tokens": "999"], idempotencyKey: "by-hand")
            let pushed = try await fixture.admin(
                ["reconcile", "--user", "user_alice", "--fix", "push", "--yes", "--reason", "edited by hand", "--db", fixture.path],
                environment: environment
            )
            #expect(pushed.status == 0, "\(pushed.stdout)\(pushed.stderr)")
            #expect((try await stripe.retrieveCustomer(customerId).metadata)?["tokens"] == String(tokens))
        }
    }

    @Test(
        "payment refund retried after a refund whose ledger write failed: Stripe answers the same refund again, money moves once, and the plan counts what Stripe already refunded"
    )
    func refundRetriedMovesMoneyOnce() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await Self.withEmulator { stripe, environment in
            let paymentIntent = try #require(try await Self.paidStarter(stripe, key: "cs-refund")["payment_intent"] as? String)
            #expect(
                try await fixture.admin(
                    ["webhooks", "recover", "--since", "1h", "--yes", "--reason", "missed events", "--db", fixture.path],
                    environment: environment
                ).status == 0
            )
            // An earlier `payment refund … --amount 200 --reason "asked by mail"` reached Stripe,
            // then failed before the ledger heard of it (no webhook either).
            _ = try await stripe.createRefund(
                paymentIntent: paymentIntent,
                amount: 200,
                reason: nil,
                idempotencyKey: StripeClient.refundIdempotencyKey(paymentIntent: paymentIntent, amount: 200, reason: "asked by mail")
            )
            let retried = try await fixture.admin(
                ["payment", "refund", paymentIntent, "--amount", "200", "--reason", "asked by mail", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(retried.status == 0, "\(retried.stdout)\(retried.stderr)")
            #expect(try await stripe.amountRefunded(paymentIntent: paymentIntent) == 200)
            #expect(try await fixture.database.payments.payment(id: paymentIntent)?.refundedAmount == 200)
            // The rest: what Stripe already refunded is counted, not only what the ledger knew.
            let tooMuch = try await fixture.admin(
                ["payment", "refund", paymentIntent, "--amount", "400", "--reason", "more", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(tooMuch.status == 1)
            #expect(tooMuch.stderr.contains("300 of 500"), "\(tooMuch.stderr)")
            let rest = try await fixture.admin(
                ["payment", "refund", paymentIntent, "--reason", "the rest", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(rest.status == 0, "\(rest.stderr)")
            #expect(try await stripe.amountRefunded(paymentIntent: paymentIntent) == 500)
            #expect(try await fixture.database.ledger.verify().isClean)
        }
    }

    @Test("webhooks recover fetches a missed checkout.session.completed from /v1/events and grants it once; past 30 days is refused")
    func recover() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await Self.withEmulator { stripe, environment in
            // Paid while our webhook endpoint was down: the event exists only at Stripe.
            _ = try await Self.paidStarter(stripe, key: "cs-missed")
            let tooFar = try await fixture.admin(
                ["webhooks", "recover", "--since", "31d", "--yes", "--reason", "missed events", "--db", fixture.path],
                environment: environment
            )
            #expect(tooFar.status == 2)
            #expect(tooFar.stderr.contains("30-day"))
            let recovered = try await fixture.admin(
                ["webhooks", "recover", "--since", "1h", "--yes", "--reason", "missed events", "--json", "--db", fixture.path],
                environment: environment
            )
            #expect(recovered.status == 0, "\(recovered.stderr)")
            #expect((try jsonObject(recovered.stdout)["recovered"] as? [String])?.count == 1)
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 64)
            let again = try await fixture.admin(
                ["webhooks", "recover", "--since", "1h", "--yes", "--reason", "missed events", "--json", "--db", fixture.path],
                environment: environment
            )
            #expect(try jsonObject(again.stdout)["alreadyStored"] as? Int == 1)
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 64)
            #expect(try await fixture.database.ledger.verify().isClean)
        }
    }
}

@Suite("Refunds that fail at Stripe, from the console")
struct ConsoleRefundFailureTests {
    @Test(
        "payment refund, then the card network returns the refund (charge.refund.updated failed): webhooks recover gives the tokens back once, and the same amount can be refunded again"
    )
    func refundFailsAndIsRefundedAgain() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await ReconcileCommandTests.withEmulator { stripe, environment in
            let paymentIntent = try #require(try await ReconcileCommandTests.paidStarter(stripe, key: "cs-refund-fails")["payment_intent"] as? String)
            #expect(
                try await fixture.admin(
                    ["webhooks", "recover", "--since", "1h", "--yes", "--reason", "missed events", "--db", fixture.path],
                    environment: environment
                ).status == 0
            )
            let before = try #require(try await fixture.database.ledger.balance(userId: "user_alice")).tokens
            let half = try await fixture.admin(
                ["payment", "refund", paymentIntent, "--amount", "250", "--reason", "half", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(half.status == 0, "\(half.stdout)\(half.stderr)")
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before - 5)
            let refundId = try #require(
                half.stdout.split(separator: " ").first { $0.hasPrefix("re_") }.map { String($0.trimmingCharacters(in: .punctuationCharacters)) }
            )

            // The card network returns the refund; Stripe reports it failed and lowers the
            // charge's amount_refunded. Recovery fetches both events; the tokens come back once.
            _ = try await stripe.request("POST", "/test/refunds/\(refundId)/fail")
            for _ in 0..<2 {
                let recovered = try await fixture.admin(
                    ["webhooks", "recover", "--since", "1h", "--yes", "--reason", "missed events", "--db", fixture.path],
                    environment: environment
                )
                #expect(recovered.status == 0, "\(recovered.stdout)\(recovered.stderr)")
            }
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before)
            #expect(try await fixture.database.payments.payment(id: paymentIntent)?.refundedAmount == 0)

            // The same 250 refunded again (another intent, another reason) takes the 5 tokens
            // again: a new movement, not a replay of the first one's ledger key.
            let again = try await fixture.admin(
                [
                    "payment", "refund", paymentIntent, "--amount", "250", "--reason", "half, by bank transfer this time", "--yes", "--db",
                    fixture.path,
                ],
                environment: environment
            )
            #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before - 5)
            let moves = try await fixture.database.ledger.entries(userId: "user_alice", limit: 10).filter { $0.kind == .paymentRefund }.map(\.delta)
            #expect(moves.sorted() == [-5, -5, 5])
            #expect(try await fixture.database.ledger.verify().isClean)
        }
    }
}

@Suite("Legacy customers who come back before the import")
struct LegacyBeforeImportTests {
    static let legacyMetadata = [
        "user_id": "user_back", "tokens": "17", "tokens_used": "40", "tokens_purchased": "50", "tokens_transferred": "0",
        "last_purchase": "2025-03-01T10:00:00.000Z",
    ]

    @Test(
        "a legacy customer who signs in before the import: the mirror reuses their Stripe customer and leaves its balance alone; the import merges it (legacy balance in, welcome grant out)"
    )
    func mirrorReusesAndImportMerges() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await ReconcileCommandTests.withEmulator { stripe, environment in
            let legacy = try #require(
                try await stripe.createCustomer(email: "back@example.com", metadata: Self.legacyMetadata, idempotencyKey: "legacy-back").id
                    as? String
            )
            // First request after the switch: welcome grant, then two tickets.
            _ = try await fixture.database.ledger.openAccount(userId: "user_back", email: "back@example.com", actor: "api")
            _ = try await fixture.database.ledger.consume(userId: "user_back", amount: 2, idempotencyKey: "gen:back", actor: "api")
            let mirror = StripeMirror(database: fixture.database, stripe: stripe)
            _ = try await mirror.pushDue(logger: .init(label: "test"))
            // No second Stripe customer, and the legacy balance is untouched.
            let naming = try await stripe.customersNaming(userId: "user_back")
            #expect(naming.map(\.id) == [legacy])
            #expect((try await stripe.retrieveCustomer(legacy).metadata)?["tokens"] == "17")
            #expect(try await fixture.database.ledger.customer(userId: "user_back")?.stripeCustomerId == legacy)
            // An operator's forced push is refused with the reason, not written over the balance.
            let push = try await fixture.admin(
                ["reconcile", "--user", "user_back", "--fix", "push", "--yes", "--reason", "drift", "--db", fixture.path],
                environment: environment
            )
            #expect(push.status != 0)
            #expect(push.stdout.contains("import from-stripe") || push.stderr.contains("import from-stripe"), "\(push.stdout)\(push.stderr)")
            #expect((try await stripe.retrieveCustomer(legacy).metadata)?["tokens"] == "17")

            let dry = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--dry-run", "--db", fixture.path],
                environment: environment
            )
            #expect(dry.stdout.contains("would merge"), "\(dry.stdout)")
            let imported = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(imported.status == 0, "\(imported.stderr)")
            #expect(imported.stdout.contains("merged"), "\(imported.stdout)")
            // 6 welcome − 2 spent + 17 legacy − 6 welcome given twice.
            let balance = try #require(try await fixture.database.ledger.balance(userId: "user_back"))
            #expect((balance.tokens, balance.tokensUsed, balance.tokensPurchased) == (15, 42, 50))
            #expect(try await fixture.database.ledger.verify().isClean)
            // The mirror now writes the merged balance to the legacy customer.
            _ = try await mirror.pushDue(logger: .init(label: "test"))
            #expect((try await stripe.retrieveCustomer(legacy).metadata)?["tokens"] == "15")
            let again = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(again.stdout.contains("already imported"), "\(again.stdout)")
            #expect(try await fixture.database.ledger.balance(userId: "user_back")?.tokens == 15)
        }
    }

    @Test(
        "an account whose mirror already made a second Stripe customer (before the reuse): the import skips the mirror's own, merges the legacy one and links it"
    )
    func duplicateCustomerMadeEarlier() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await ReconcileCommandTests.withEmulator { stripe, environment in
            let legacy = try #require(
                try await stripe.createCustomer(email: nil, metadata: Self.legacyMetadata, idempotencyKey: "legacy-back").id
            )
            _ = try await fixture.database.ledger.openAccount(userId: "user_back", email: nil, actor: "api")
            let duplicate = try #require(
                try await stripe.createCustomer(
                    email: nil,
                    metadata: ["user_id": "user_back", "tokens": "6", "tokens_used": "0", "tokens_purchased": "0"],
                    idempotencyKey: "dup"
                ).id
            )
            _ = try await fixture.database.stripeCustomers.link(userId: "user_back", stripeCustomerId: duplicate)
            let imported = try await fixture.admin(
                ["import", "from-stripe", "--reason", "legacy store", "--yes", "--json", "--db", fixture.path],
                environment: environment
            )
            #expect(imported.status == 0, "\(imported.stderr)")
            let outcomes = try #require(try JSONSerialization.jsonObject(with: Data(imported.stdout.utf8)) as? [[String: Any]])
            let results = Dictionary(
                uniqueKeysWithValues: outcomes.compactMap { o in (o["stripeCustomerId"] as? String).map { ($0, o["result"] as? String ?? "") } }
            )
            #expect(results[legacy] == "merged")
            #expect(results[duplicate]?.hasPrefix("skipped: the mirror's own") == true, "\(results)")
            #expect(try await fixture.database.ledger.balance(userId: "user_back")?.tokens == 17)
            #expect(try await fixture.database.ledger.customer(userId: "user_back")?.stripeCustomerId == legacy)
            #expect(try await fixture.database.ledger.verify().isClean)
        }
    }
}

@Suite("A manual credit and a late purchase event")
struct ManualPurchaseCreditTests {
    @Test(
        "tokens adjust --payment credits a purchase whose event is missing; when webhooks recover brings the event, the purchase is granted and the credit settled: the tokens are had once; a credit for a granted payment is refused"
    )
    func manualCreditThenLateEvent() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await ReconcileCommandTests.withEmulator { stripe, environment in
            let session = try await ReconcileCommandTests.paidStarter(stripe, key: "cs-manual")
            let sessionId = try #require(session["id"] as? String)
            let before = try #require(try await fixture.database.ledger.balance(userId: "user_alice"))
            // The complaint: paid, no tokens (the event never came). The runbook's last resort.
            let credit = try await fixture.admin(
                [
                    "tokens", "adjust", "alice@example.com", "+10", "--payment", sessionId, "--reason", "paid, no tokens, ticket 4720", "--yes",
                    "--db", fixture.path,
                ],
                environment: environment
            )
            #expect(credit.status == 0, "\(credit.stdout)\(credit.stderr)")
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before.tokens + 10)
            // The same credit again changes nothing.
            let again = try await fixture.admin(
                ["tokens", "adjust", "alice@example.com", "+10", "--payment", sessionId, "--reason", "retry", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(again.status == 0)
            #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before.tokens + 10)

            // Later the event is recovered from Stripe: granted, and the credit settled.
            let recovered = try await fixture.admin(
                ["webhooks", "recover", "--since", "1h", "--yes", "--reason", "missed events", "--db", fixture.path],
                environment: environment
            )
            #expect(recovered.status == 0, "\(recovered.stderr)")
            let after = try #require(try await fixture.database.ledger.balance(userId: "user_alice"))
            #expect(after.tokens == before.tokens + 10)
            #expect(after.tokensPurchased == before.tokensPurchased + 10)
            let keys = try await fixture.database.ledger.entries(userId: "user_alice", limit: 10).map(\.idempotencyKey)
            #expect(
                keys.contains("manual_purchase:\(sessionId)") && keys.contains("purchase:\(sessionId)")
                    && keys.contains("manual_purchase_settled:\(sessionId)")
            )
            #expect(try await fixture.database.ledger.verify().isClean)

            // Once the purchase is granted, a manual credit for it is refused.
            let late = try await fixture.admin(
                ["tokens", "adjust", "alice@example.com", "+10", "--payment", sessionId, "--reason", "again", "--yes", "--db", fixture.path],
                environment: environment
            )
            #expect(late.status == 1)
            #expect(late.stderr.contains("already granted"), "\(late.stderr)")
        }
    }
}
