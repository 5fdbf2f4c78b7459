import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import NIOCore
import StripeEmulator
import Testing

@testable import MyBAOps

/// Issue 23: MyBA's Stripe side held to Stripe's own example objects
/// (`Tests/Fixtures/stripe-fixtures3.json`, from Stripe's OpenAPI repository, MIT), not only to
/// MyBA's emulator, which a lenient reading on both sides would let drift together.
@Suite("Stripe's own shapes")
struct StripeShapeTests {
    /// Each example object's JSON, read from the file once.
    static let examples: [String: Data] = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = try! Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/stripe-fixtures3.json"))
        let resources = (try! JSONSerialization.jsonObject(with: file) as! [String: Any])["resources"] as! [String: Any]
        return resources.mapValues { try! JSONSerialization.data(withJSONObject: $0) }
    }()

    /// Stripe's example `name` object (a fresh copy each time).
    static func fixture(_ name: String) -> [String: Any] {
        try! JSONSerialization.jsonObject(with: examples[name]!) as! [String: Any]
    }

    static func data(_ object: Any) throws -> Data { try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) }

    /// An event as Stripe would send it, around one example object.
    static func event(_ type: String, _ object: [String: Any], id: String) -> [String: Any] {
        var event = fixture("event")
        event["id"] = id
        event["type"] = type
        event["data"] = ["object": object]
        return event
    }

    @Test("MyBA's types decode Stripe's example checkout session, charge, refund, dispute, customer and event")
    func decodeExamples() throws {
        let session = try StripeWire.decode(StripeCheckoutSession.self, from: Self.data(Self.fixture("checkout.session")))
        #expect(session.id.hasPrefix("cs_") && session.paymentStatus == "unpaid" && session.paymentIntent?.id.hasPrefix("pi_") == true)
        #expect(session.amountTotal == nil && session.customer == nil && session.url?.hasPrefix("https://checkout.stripe.com") == true)
        let charge = try StripeWire.decode(StripeCharge.self, from: Self.data(Self.fixture("charge")))
        #expect(charge.id.hasPrefix("ch_") && charge.amount == 100 && charge.amountRefunded == 0 && charge.paymentIntent == nil)
        let refund = try StripeWire.decode(StripeRefund.self, from: Self.data(Self.fixture("refund")))
        #expect(refund.id.hasPrefix("re_") && refund.status == "succeeded" && refund.charge?.id == charge.id && refund.created > 0)
        let dispute = try StripeWire.decode(StripeDispute.self, from: Self.data(Self.fixture("dispute")))
        #expect(dispute.id.hasPrefix("dp_") && dispute.amount == 1000 && dispute.reason == "general")
        let customer = try StripeWire.decode(StripeCustomer.self, from: Self.data(Self.fixture("customer")))
        #expect(customer.id.hasPrefix("cus_") && customer.email == nil && customer.metadata == StripeMetadata())
        let header = try StripeWire.decode(StripeEventHeader.self, from: Self.data(Self.fixture("event")))
        #expect(header.id.hasPrefix("evt_") && header.type == "plan.created" && header.created == 1_234_567_890)
        // An expanded reference reads as its id.
        var expanded = Self.fixture("checkout.session")
        expanded["payment_intent"] = Self.fixture("payment_intent")
        #expect(try StripeWire.decode(StripeCheckoutSession.self, from: Self.data(expanded)).paymentIntent?.id.hasPrefix("pi_") == true)
    }

    @Test(
        "events around Stripe's example objects, signed and delivered, go through the live processing: each is decided (ignored as not MyBA's, or granted), none fails to decode"
    )
    func examplesThroughProcessing() async throws {
        let fixture = try webhookFixture()
        defer { fixture.directory.remove() }
        var paid = Self.fixture("checkout.session")
        paid["payment_status"] = "paid"
        paid["status"] = "complete"
        paid["amount_total"] = 500
        paid["currency"] = "usd"
        paid["metadata"] = ["user_id": "user_shapes", "plan_id": "starter", "tokens": "10"]
        let cases: [(String, [String: Any], WebhookEvent.Status)] = [
            ("checkout.session.completed", Self.fixture("checkout.session"), .ignored),
            ("checkout.session.completed", paid, .processed),
            ("checkout.session.expired", Self.fixture("checkout.session"), .processed),
            ("charge.refunded", Self.fixture("charge"), .ignored),
            ("charge.refund.updated", Self.fixture("refund"), .ignored),
            ("charge.dispute.created", Self.fixture("dispute"), .ignored),
            ("customer.deleted", Self.fixture("customer"), .ignored),
        ]
        let deliveries = try cases.enumerated().map { index, item in
            (item.0, String(decoding: try Self.data(Self.event(item.0, item.1, id: "evt_shape_\(index)")), as: UTF8.self), item.2)
        }
        try await fixture.application().test(.router) { client in
            for (index, (type, body, expected)) in deliveries.enumerated() {
                try await client.execute(
                    uri: "/api/webhook/stripe",
                    method: .post,
                    headers: Deliveries.stripeHeaders(body),
                    body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .ok, "\(type): \(String(buffer: response.body))")
                }
                let stored = try await fixture.database().inbox.event(source: .stripe, eventId: "evt_shape_\(index)")
                #expect(
                    stored?.status == expected,
                    "\(type): \(stored?.status.rawValue ?? "not stored"): \(stored?.lastError ?? stored?.outcome ?? "")"
                )
            }
        }
        #expect(try await fixture.database().ledger.balance(userId: "user_shapes")?.tokens == 10)
    }

    @Test(
        "the emulator's customers, checkout sessions, refunds, charges and events have Stripe's shapes: every field it sends is a Stripe field of the same JSON type"
    )
    func emulatorShapes() async throws {
        try await StripeEmulator().application().test(.live) { client in
            let stripe = try StripeClient(
                settings: StripeSettings(secretKey: "sk_test_shapes", apiBase: URL(string: "http://127.0.0.1:\(client.port!)")!),
                http: CurlHTTPClient()
            )
            var problems: [String] = []
            // The whole objects, as the emulator answers them (MyBA's typed calls read only part).
            let customer = try await stripe.request(
                "POST",
                "/v1/customers",
                form: [("email", "shape@example.com"), ("metadata[user_id]", "user_shape")],
                idempotencyKey: "shape-1"
            )
            problems += Self.compare(customer, Self.fixture("customer"), path: "customer")
            let session = try await stripe.request(
                "POST",
                "/v1/checkout/sessions",
                form: [
                    ("mode", "payment"), ("line_items[0][price_data][currency]", "usd"), ("line_items[0][price_data][unit_amount]", "500"),
                    ("line_items[0][price_data][product_data][name]", "Starter"), ("line_items[0][quantity]", "1"),
                    ("success_url", "https://app.example/ok"), ("metadata[user_id]", "user_shape"), ("customer", customer["id"] as! String),
                ],
                idempotencyKey: "shape-2"
            )
            problems += Self.compare(session, Self.fixture("checkout.session"), path: "checkout.session")
            let completed = try await stripe.request("POST", "/test/checkout/sessions/\(session["id"] as! String)/complete")
            problems += Self.compare(completed, Self.fixture("checkout.session"), path: "checkout.session (paid)")
            let refund = try await stripe.request(
                "POST",
                "/v1/refunds",
                form: [("payment_intent", try #require(completed["payment_intent"] as? String)), ("amount", "100")],
                idempotencyKey: "shape-3"
            )
            problems += Self.compare(refund, Self.fixture("refund"), path: "refund")
            let objectFixtures = ["checkout.session": "checkout.session", "charge": "charge", "refund": "refund", "customer": "customer"]
            var seen = Set<String>()
            for event in try await stripe.events(type: "*", since: Date().addingTimeInterval(-3600)) {
                problems += Self.compare(event, Self.fixture("event"), path: "event", skip: ["data"])
                let object = (event["data"] as? [String: Any])?["object"] as? [String: Any] ?? [:]
                let kind = object["object"] as? String ?? "?"
                seen.insert(kind)
                if let name = objectFixtures[kind] {
                    problems += Self.compare(object, Self.fixture(name), path: "\(event["type"] ?? "?").data.object")
                }
            }
            #expect(seen.isSuperset(of: ["checkout.session", "charge"]), "\(seen)")
            #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
            // The comparison can fail: a wrong type, an invented field, an integer for a boolean.
            let wrong = Self.compare(["id": 5, "invented": "x", "livemode": 1], Self.fixture("customer"), path: "customer")
            #expect(wrong.count == 3, "\(wrong)")
        }
    }

    @Test(
        "every parameter MyBA sends — checkout, customer search, creation and update, refunds, the events and customers lists — is one Stripe documents (stripe-python's generated parameter types)"
    )
    func parametersAreDocumented() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python").path
        try #require(
            FileManager.default.isExecutableFile(atPath: python),
            "no .venv: run the tests with scripts/test.sh, which installs stripe-python"
        )
        let directory = try TemporaryDirectory("myba-stripe-params")
        defer { directory.remove() }
        let database = try AppDatabase.openFile(at: directory.file("myba.sqlite"))
        let logger = Logger(label: "test")
        let recorded = try await withStripeEmulator { emulator, base in
            let stripe = try stripeClient(base)
            _ = try await database.ledger.openAccount(userId: "user_params", email: "params@example.com", actor: "test")
            // Checkout as the server opens it (customer search and creation, the session, and
            // the expiry of an older discounted one), twice.
            let opener = CheckoutOpener(database: database, stripe: stripe, publicURL: "https://app.example", perHour: 10)
            _ = try await opener.open(userId: "user_params", planId: "starter", requestKey: "params-1", logger: logger)
            let opened = try await opener.open(userId: "user_params", planId: "professional", requestKey: "params-2", logger: logger)
            // Paid, then processed as the webhook would be; the mirror pushes the balance.
            let paid = try await stripe.request("POST", "/test/checkout/sessions/\(opened.sessionId)/complete")
            for event in try await stripe.events(type: "checkout.session.completed", since: Date().addingTimeInterval(-60)) {
                let body = String(decoding: try JSONSerialization.data(withJSONObject: event), as: UTF8.self)
                _ = try await WebhookIntake(database: database, processor: WebhookProcessor(database: database))
                    .receive(
                        WebhookDelivery(
                            source: .stripe,
                            eventId: event["id"] as! String,
                            type: "checkout.session.completed",
                            body: body,
                            headers: [:],
                            requestId: nil
                        ),
                        logger: logger
                    )
            }
            _ = try await StripeMirror(database: database, stripe: stripe).pushDue(logger: logger)
            // An operator's refund, a recovery's event listing, reconcile's customer listing.
            let refunds = PaymentRefunds(database: database, stripe: stripe)
            let prepared = try await refunds.prepare(paymentId: try #require(paid["payment_intent"] as? String), amount: 100)
            _ = try await refunds.execute(
                prepared,
                stripeReason: "requested_by_customer",
                idempotencyKey: nil,
                context: OperatorContext(operatorName: "test", commandLine: "payment refund", reason: "check")
            )
            _ = try await WebhookProcessor(database: database).missingEvents(from: stripe, since: Date().addingTimeInterval(-3600))
            _ = try await stripe.allCustomers()
            return await emulator.recordedRequests()
        }
        let endpoints = Set(recorded.map { "\($0.method) \($0.path.split(separator: "/").prefix(3).joined(separator: "/"))" })
        #expect(
            endpoints.isSuperset(of: [
                "POST v1/checkout/sessions", "GET v1/customers/search", "GET v1/customers", "POST v1/customers", "POST v1/refunds", "GET v1/events",
            ]),
            "\(endpoints)"
        )
        let file = directory.file("requests.json")
        try JSONEncoder().encode(recorded).write(to: URL(fileURLWithPath: file))
        let check = try await ChildProcess.start(python, [root.appendingPathComponent("Tests/sdk/stripe_params_check.py").path, file])
            .wait(timeout: .seconds(120))
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stderr.contains("checked"), "\(check.stderr)")
    }

    /// Fields of `actual` that Stripe's example lacks or types differently (null on either side,
    /// and an id where Stripe shows the expanded object or the reverse, are both Stripe's ways).
    static func compare(_ actual: [String: Any], _ example: [String: Any], path: String, skip: Set<String> = []) -> [String] {
        var problems: [String] = []
        for (key, value) in actual.sorted(by: { $0.key < $1.key }) where !skip.contains(key) {
            guard let reference = example[key] else {
                problems.append("\(path).\(key) is not a field of Stripe's \(path)")
                continue
            }
            let (have, want) = (kind(value), kind(reference))
            if have == "null" || want == "null" || have == want {
            } else if Set([have, want]) == ["string", "object"] {
            } else {
                problems.append("\(path).\(key) is \(have), Stripe's is \(want)")
                continue
            }
            if key != "metadata", let nested = value as? [String: Any], let nestedReference = reference as? [String: Any] {
                problems += compare(nested, nestedReference, path: "\(path).\(key)")
            }
        }
        return problems
    }

    static func kind(_ value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case is String: return "string"
        case is [String: Any]: return "object"
        case is [Any]: return "array"
        case let number as NSNumber:
            if String(cString: number.objCType) == "c" || type(of: value) == Bool.self { return "boolean" }
            return String(cString: number.objCType) == "d" || String(cString: number.objCType) == "f" ? "number" : "integer"
        default: return "\(type(of: value))"
        }
    }
}

@Suite("The emulator reads queries as Stripe does")
struct EmulatorQueryTests {
    @Test("GET /v1/events?created%5Bgte%5D=… filters by creation time, as Stripe reads the encoded brackets")
    func encodedBracketsFilter() async throws {
        try await withStripeEmulator { _, base in
            let stripe = try stripeClient(base)
            _ = try await stripe.createCustomer(email: "early@example.com", metadata: [:], idempotencyKey: "early")
            // Every event so far is older than half a minute from now: none may come back.
            let later = try await stripe.events(type: "*", since: Date().addingTimeInterval(30))
            #expect(later.isEmpty, "\(later.count) events newer than the future")
            #expect(try await stripe.events(type: "*", since: Date().addingTimeInterval(-60)).count >= 1)
        }
    }
}
