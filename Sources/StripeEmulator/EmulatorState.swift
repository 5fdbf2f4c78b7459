import Crypto
import Foundation

/// Faults the emulator injects into API requests (not into `/test/…` routes).
public struct StripeFaults: Codable, Equatable, Sendable {
    /// Share of requests answered 429 (0…1).
    public var rateLimitShare: Double
    /// Share of requests answered 500 (0…1).
    public var serverErrorShare: Double
    /// Delay added before every answer.
    public var latencyMilliseconds: Int
    /// Share of requests whose connection is closed without an answer (0…1).
    public var dropShare: Double
    /// How long the hosted checkout page's Pay waits before delivering the purchase event: the
    /// buyer is back on `success_url` first, as often happens with Stripe.
    public var webhookDelayMilliseconds: Int

    public init(
        rateLimitShare: Double = 0,
        serverErrorShare: Double = 0,
        latencyMilliseconds: Int = 0,
        dropShare: Double = 0,
        webhookDelayMilliseconds: Int = 0
    ) {
        self.rateLimitShare = rateLimitShare
        self.serverErrorShare = serverErrorShare
        self.latencyMilliseconds = latencyMilliseconds
        self.dropShare = dropShare
        self.webhookDelayMilliseconds = webhookDelayMilliseconds
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        rateLimitShare = try container.decodeIfPresent(Double.self, forKey: .rateLimitShare) ?? 0
        serverErrorShare = try container.decodeIfPresent(Double.self, forKey: .serverErrorShare) ?? 0
        latencyMilliseconds = try container.decodeIfPresent(Int.self, forKey: .latencyMilliseconds) ?? 0
        dropShare = try container.decodeIfPresent(Double.self, forKey: .dropShare) ?? 0
        webhookDelayMilliseconds = try container.decodeIfPresent(Int.self, forKey: .webhookDelayMilliseconds) ?? 0
    }
}

/// An API request as the emulator received it: what a client sent, for checks against Stripe's
/// documented parameters.
public struct RecordedStripeRequest: Codable, Sendable, Equatable {
    public var method: String
    public var path: String
    public var parameters: [String]
}

/// A webhook endpoint the emulator delivers signed events to.
public struct EmulatorWebhookEndpoint: Codable, Sendable {
    public var url: String
    public var secret: String

    public init(url: String, secret: String) {
        self.url = url
        self.secret = secret
    }
}

/// One answer of the emulator, plus the events it must deliver afterwards.
/// A Checkout Session as its hosted page shows it.
struct HostedSession: Sendable {
    var id: String
    var product: String
    var amountTotal: Int
    var currency: String
    var status: String
    var successURL: String?
    var cancelURL: String?
}

struct EmulatorReply: Sendable {
    var status: Int
    var body: Data
    var headers: [(String, String)] = []
    var deliveries: [Data] = []
}

/// Everything the emulator knows. Objects are kept as JSON dictionaries in Stripe's shapes.
actor EmulatorState {
    var customers: [String: [String: Any]] = [:]
    /// Creation order, for newest-first lists.
    var customerOrder: [String] = []
    var sessions: [String: [String: Any]] = [:]
    var paymentIntents: [String: [String: Any]] = [:]
    var charges: [String: [String: Any]] = [:]
    var refunds: [String: [String: Any]] = [:]
    /// A Checkout Session's `payment_intent_data[metadata]`, for the PaymentIntent it makes.
    var intentMetadata: [String: [String: Any]] = [:]
    var events: [[String: Any]] = []
    var idempotency: [String: (fingerprint: String, reply: EmulatorReply)] = [:]
    var endpoints: [EmulatorWebhookEndpoint]
    var faults: StripeFaults
    var clock = Int(Date().timeIntervalSince1970)
    var requestCount = 0
    /// Where a browser reaches this emulator: the hosted checkout page's origin in a session's `url`.
    var checkoutOrigin = "http://127.0.0.1:12111"
    /// The product line of each Checkout Session, for its hosted page.
    var sessionProducts: [String: String] = [:]

    init(endpoints: [EmulatorWebhookEndpoint], faults: StripeFaults) {
        self.endpoints = endpoints
        self.faults = faults
    }

    func setFaults(_ faults: StripeFaults) { self.faults = faults }
    func currentFaults() -> StripeFaults { faults }
    func addEndpoint(_ endpoint: EmulatorWebhookEndpoint) { endpoints.append(endpoint) }
    func webhookEndpoints() -> [EmulatorWebhookEndpoint] { endpoints }

    /// A strictly increasing `created` so newest-first order is well defined.
    func tick() -> Int {
        clock = max(clock + 1, Int(Date().timeIntervalSince1970))
        return clock
    }

    static func newId(_ prefix: String) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return prefix + "_" + String((0..<24).map { _ in alphabet.randomElement()! })
    }

    // MARK: Dispatch

    private(set) var recorded: [RecordedStripeRequest] = []

    func noteRequest(_ request: RecordedStripeRequest) {
        requestCount += 1
        recorded.append(request)
    }

    func handle(
        method: String,
        path: String,
        query: [String: String],
        form: [String: Any],
        idempotencyKey: String?,
        origin: String = "http://127.0.0.1:12111"
    ) -> EmulatorReply {
        checkoutOrigin = origin
        let parts = path.split(separator: "/").map(String.init)
        if method == "POST", let key = idempotencyKey, !parts.starts(with: ["test"]) {
            let fingerprint = "\(method) \(path) \(Self.canonical(form))"
            if let stored = idempotency[key] {
                guard stored.fingerprint == fingerprint else {
                    return Self.error(
                        400,
                        type: "idempotency_error",
                        message:
                            "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '\(key)' if you meant to execute a different request."
                    )
                }
                var replay = stored.reply
                replay.headers.append(("Idempotent-Replayed", "true"))
                replay.deliveries = []
                return replay
            }
            let reply = route(method: method, parts: parts, query: query, form: form)
            // Stripe does not save answers to requests that failed with a 500.
            if reply.status < 500 { idempotency[key] = (fingerprint, reply) }
            return reply
        }
        return route(method: method, parts: parts, query: query, form: form)
    }

    private func route(method: String, parts: [String], query: [String: String], form: [String: Any]) -> EmulatorReply {
        switch (method, parts) {
        case ("POST", ["v1", "customers"]): return createCustomer(form)
        case ("GET", ["v1", "customers"]): return list(customerOrder.reversed().compactMap { customers[$0] }, path: "/v1/customers", query: query)
        case ("GET", ["v1", "customers", "search"]): return searchCustomers(query)
        case ("GET", let p) where p.count == 3 && p[1] == "customers": return retrieve(customers[p[2]], kind: "customer", id: p[2])
        case ("POST", let p) where p.count == 3 && p[1] == "customers": return updateCustomer(p[2], form)
        case ("DELETE", let p) where p.count == 3 && p[1] == "customers": return deleteCustomer(p[2])
        case ("POST", ["v1", "checkout", "sessions"]): return createSession(form)
        case ("POST", let p) where p.count == 5 && p[1] == "checkout" && p[4] == "expire": return expireSession(p[3])
        case ("GET", let p) where p.count == 4 && p[1] == "checkout": return retrieve(sessions[p[3]], kind: "checkout.session", id: p[3])
        case ("POST", ["v1", "refunds"]): return createRefund(form)
        case ("GET", let p) where p.count == 3 && p[1] == "charges": return retrieve(charges[p[2]], kind: "charge", id: p[2])
        case ("GET", let p) where p.count == 3 && p[1] == "payment_intents": return retrieve(paymentIntents[p[2]], kind: "payment_intent", id: p[2])
        case ("GET", ["v1", "events"]):
            var selected = events.reversed().filter { event in
                (query["type"].map { Self.typeMatches($0, event["type"] as? String ?? "") } ?? true)
                    && (query["created[gte]"].flatMap(Int.init).map { ($0) <= (event["created"] as? Int ?? 0) } ?? true)
            }
            if let types = query["types[0]"] { selected = selected.filter { $0["type"] as? String == types } }
            return list(Array(selected), path: "/v1/events", query: query)
        case ("GET", let p) where p.count == 3 && p[1] == "events":
            return retrieve(events.first { $0["id"] as? String == p[2] }, kind: "event", id: p[2])
        case ("POST", let p) where p.count == 5 && p[0] == "test" && p[1] == "checkout" && p[4] == "complete": return completeSession(p[3])
        case ("POST", let p) where p.count == 4 && p[0] == "test" && p[1] == "refunds" && p[3] == "fail": return failRefund(p[2])
        default:
            return Self.error(404, type: "invalid_request_error", message: "Unrecognized request URL (\(method): /\(parts.joined(separator: "/"))).")
        }
    }

    /// Stripe's `type` filter: an event name, or a group with `*` as a wildcard (`charge.*`, `*`).
    static func typeMatches(_ pattern: String, _ type: String) -> Bool {
        guard let star = pattern.firstIndex(of: "*") else { return pattern == type }
        return type.hasPrefix(pattern[..<star]) && type.hasSuffix(pattern[pattern.index(after: star)...])
    }

    // MARK: Customers

    private func createCustomer(_ form: [String: Any]) -> EmulatorReply {
        let id = Self.newId("cus")
        var customer: [String: Any] = ["id": id, "object": "customer", "created": tick(), "livemode": false, "metadata": [String: String]()]
        customer["email"] = form["email"] as? String ?? NSNull()
        customer["name"] = form["name"] as? String ?? NSNull()
        if let error = applyMetadata(&customer, form["metadata"]) { return error }
        customers[id] = customer
        customerOrder.append(id)
        record("customer.created", customer)
        return Self.ok(customer)
    }

    private func updateCustomer(_ id: String, _ form: [String: Any]) -> EmulatorReply {
        guard var customer = customers[id] else { return Self.missing("customer", id) }
        if let email = form["email"] as? String { customer["email"] = email.isEmpty ? NSNull() : email }
        if let error = applyMetadata(&customer, form["metadata"]) { return error }
        customers[id] = customer
        record("customer.updated", customer)
        return Self.ok(customer)
    }

    /// `GET /v1/customers/search`: the metadata clauses of Stripe's query language
    /// (`metadata['key']:'value'`, joined by `OR` or `AND`), newest first, as a search result.
    private func searchCustomers(_ query: [String: String]) -> EmulatorReply {
        guard let text = query["query"], !text.isEmpty else {
            return Self.error(400, type: "invalid_request_error", message: "Missing required param: query.", param: "query")
        }
        let clause = /metadata\['([^']+)'\]:'((?:[^'\\]|\\.)*)'/
        let clauses = text.matches(of: clause).map { (String($0.output.1), String($0.output.2).replacingOccurrences(of: "\\'", with: "'")) }
        guard !clauses.isEmpty else {
            return Self.error(
                400,
                type: "invalid_request_error",
                message: "The emulator understands only metadata['key']:'value' clauses.",
                param: "query"
            )
        }
        let all = text.contains(" AND ")
        let found = customerOrder.reversed().compactMap { customers[$0] }.filter { customer in
            let metadata = customer["metadata"] as? [String: String] ?? [:]
            let hits = clauses.map { metadata[$0.0] == $0.1 }
            return all ? hits.allSatisfy { $0 } : hits.contains(true)
        }
        let limit = query["limit"].flatMap(Int.init) ?? 10
        return Self.ok([
            "object": "search_result", "url": "/v1/customers/search", "data": Array(found.prefix(limit)), "has_more": found.count > limit,
            "next_page": NSNull(),
        ])
    }

    private func deleteCustomer(_ id: String) -> EmulatorReply {
        guard let customer = customers.removeValue(forKey: id) else { return Self.missing("customer", id) }
        customerOrder.removeAll { $0 == id }
        var reply = Self.ok(["id": id, "object": "customer", "deleted": true])
        reply.deliveries = [record("customer.deleted", customer)]
        return reply
    }

    /// Merges metadata; an empty value unsets its key. Stripe's limits apply.
    private func applyMetadata(_ object: inout [String: Any], _ value: Any?) -> EmulatorReply? {
        guard let value else { return nil }
        var metadata = object["metadata"] as? [String: String] ?? [:]
        if let text = value as? String, text.isEmpty {
            object["metadata"] = [String: String]()
            return nil
        }
        guard let fields = value as? [String: Any] else {
            return Self.error(400, type: "invalid_request_error", message: "Invalid hash", param: "metadata")
        }
        for (key, raw) in fields {
            guard let text = raw as? String else {
                return Self.error(400, type: "invalid_request_error", message: "Invalid metadata value", param: "metadata[\(key)]")
            }
            guard key.count <= 40 else {
                return Self.error(
                    400,
                    type: "invalid_request_error",
                    message: "Metadata keys can be at most 40 characters.",
                    param: "metadata[\(key)]"
                )
            }
            guard text.count <= 500 else {
                return Self.error(
                    400,
                    type: "invalid_request_error",
                    message: "Metadata values can be at most 500 characters.",
                    param: "metadata[\(key)]"
                )
            }
            if text.isEmpty { metadata.removeValue(forKey: key) } else { metadata[key] = text }
        }
        guard metadata.count <= 50 else {
            return Self.error(400, type: "invalid_request_error", message: "You can have up to 50 metadata keys.", param: "metadata")
        }
        object["metadata"] = metadata
        return nil
    }

    // MARK: Checkout

    /// What the hosted checkout page shows of a session.
    func hostedSession(_ id: String) -> HostedSession? {
        guard let session = sessions[id] else { return nil }
        return HostedSession(
            id: id,
            product: sessionProducts[id] ?? "Payment",
            amountTotal: session["amount_total"] as? Int ?? 0,
            currency: session["currency"] as? String ?? "usd",
            status: session["status"] as? String ?? "open",
            successURL: session["success_url"] as? String,
            cancelURL: session["cancel_url"] as? String
        )
    }

    /// The hosted page's Pay button: what `POST /test/checkout/sessions/{id}/complete` does.
    func payHostedSession(_ id: String) -> EmulatorReply { completeSession(id) }

    private func createSession(_ form: [String: Any]) -> EmulatorReply {
        guard form["mode"] as? String == "payment" else {
            return Self.error(400, type: "invalid_request_error", message: "Only mode=payment is emulated.", param: "mode")
        }
        guard let items = form["line_items"] as? [String: Any], let first = items["0"] as? [String: Any],
            let priceData = first["price_data"] as? [String: Any], let unitAmount = (priceData["unit_amount"] as? String).flatMap(Int.init),
            let currency = priceData["currency"] as? String
        else {
            return Self.error(400, type: "invalid_request_error", message: "Missing required param: line_items[0][price_data].", param: "line_items")
        }
        let quantity = (first["quantity"] as? String).flatMap(Int.init) ?? 1
        guard let successURL = form["success_url"] as? String else {
            return Self.error(400, type: "invalid_request_error", message: "Missing required param: success_url.", param: "success_url")
        }
        if let customer = form["customer"] as? String, customers[customer] == nil { return Self.missing("customer", customer) }
        let id = Self.newId("cs_test")
        let session: [String: Any] = [
            "id": id, "object": "checkout.session", "created": tick(), "livemode": false, "mode": "payment",
            "amount_total": unitAmount * quantity, "amount_subtotal": unitAmount * quantity, "currency": currency,
            "customer": form["customer"] as? String ?? NSNull(), "client_reference_id": form["client_reference_id"] as? String ?? NSNull(),
            "metadata": form["metadata"] as? [String: Any] ?? [:], "payment_intent": NSNull(), "payment_status": "unpaid", "status": "open",
            "success_url": successURL, "cancel_url": form["cancel_url"] as? String ?? NSNull(),
            "url": "\(checkoutOrigin)/checkout/\(id)",
        ]
        sessions[id] = session
        sessionProducts[id] = (priceData["product_data"] as? [String: Any])?["name"] as? String ?? "Payment"
        intentMetadata[id] = (form["payment_intent_data"] as? [String: Any])?["metadata"] as? [String: Any] ?? [:]
        return Self.ok(session)
    }

    /// `POST /v1/checkout/sessions/{id}/expire`: an open session can no longer be paid.
    private func expireSession(_ id: String) -> EmulatorReply {
        guard var session = sessions[id] else { return Self.missing("checkout.session", id) }
        guard session["status"] as? String == "open" else {
            return Self.error(400, type: "invalid_request_error", message: "Only Checkout Sessions with a status in [\"open\"] can be expired.")
        }
        session["status"] = "expired"
        session["url"] = NSNull()
        sessions[id] = session
        var reply = Self.ok(session)
        reply.deliveries = [record("checkout.session.expired", session)]
        return reply
    }

    /// Test-only: the customer pays. Creates the PaymentIntent and Charge and emits
    /// `checkout.session.completed`.
    private func completeSession(_ id: String) -> EmulatorReply {
        guard var session = sessions[id] else { return Self.missing("checkout.session", id) }
        guard session["status"] as? String == "open" else {
            return Self.error(
                400,
                type: "invalid_request_error",
                message: "This Checkout Session is \(session["status"] as? String == "expired" ? "expired" : "already complete")."
            )
        }
        let amount = session["amount_total"] as? Int ?? 0
        let intentId = Self.newId("pi")
        let chargeId = Self.newId("ch")
        // payment_intent_data[metadata] goes to the PaymentIntent, and Stripe copies it to the charge.
        let metadata = intentMetadata[id] ?? [:]
        paymentIntents[intentId] = [
            "id": intentId, "object": "payment_intent", "amount": amount, "currency": session["currency"] ?? "usd", "status": "succeeded",
            "latest_charge": chargeId, "metadata": metadata,
        ]
        charges[chargeId] = [
            "id": chargeId, "object": "charge", "amount": amount, "amount_refunded": 0, "currency": session["currency"] ?? "usd",
            "payment_intent": intentId, "refunded": false, "paid": true, "created": tick(), "metadata": metadata,
        ]
        session["payment_intent"] = intentId
        session["payment_status"] = "paid"
        session["status"] = "complete"
        sessions[id] = session
        var reply = Self.ok(session)
        reply.deliveries = [record("checkout.session.completed", session)]
        return reply
    }

    // MARK: Refunds

    private func createRefund(_ form: [String: Any]) -> EmulatorReply {
        let chargeId: String?
        if let intent = form["payment_intent"] as? String {
            guard let paymentIntent = paymentIntents[intent] else { return Self.missing("payment_intent", intent) }
            chargeId = paymentIntent["latest_charge"] as? String
        } else {
            chargeId = form["charge"] as? String
        }
        guard let chargeId, var charge = charges[chargeId] else {
            return Self.error(400, type: "invalid_request_error", message: "Missing required param: payment_intent or charge.")
        }
        let amount = charge["amount"] as? Int ?? 0
        let refunded = charge["amount_refunded"] as? Int ?? 0
        let requested = (form["amount"] as? String).flatMap(Int.init) ?? (amount - refunded)
        guard requested > 0, refunded + requested <= amount else {
            return Self.error(
                400,
                type: "invalid_request_error",
                code: "charge_already_refunded",
                message: "Refund amount (\(requested)) is greater than unrefunded amount on charge (\(amount - refunded)).",
                param: "amount"
            )
        }
        if let reason = form["reason"] as? String, !["duplicate", "fraudulent", "requested_by_customer"].contains(reason) {
            return Self.error(
                400,
                type: "invalid_request_error",
                message: "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                param: "reason"
            )
        }
        charge["amount_refunded"] = refunded + requested
        charge["refunded"] = refunded + requested == amount
        charges[chargeId] = charge
        let id = Self.newId("re")
        let refund: [String: Any] = [
            "id": id, "object": "refund", "amount": requested, "charge": chargeId, "payment_intent": charge["payment_intent"] ?? NSNull(),
            "currency": charge["currency"] ?? "usd", "status": "succeeded", "reason": form["reason"] as? String ?? NSNull(),
            "metadata": form["metadata"] as? [String: Any] ?? [:], "created": tick(),
        ]
        refunds[id] = refund
        var reply = Self.ok(refund)
        reply.deliveries = [record("charge.refunded", charge)]
        return reply
    }

    /// Test-only: the card network returns a refund (closed card, say). As at Stripe, the money
    /// goes back to the merchant, the charge's `amount_refunded` drops by the refund's amount, and
    /// `charge.refund.updated` reports the refund `failed`.
    private func failRefund(_ id: String) -> EmulatorReply {
        guard var refund = refunds[id] else { return Self.missing("refund", id) }
        guard refund["status"] as? String == "succeeded" || refund["status"] as? String == "pending" else {
            return Self.error(400, type: "invalid_request_error", message: "Refund \(id) is \(refund["status"] as? String ?? "?") and cannot fail.")
        }
        refund["status"] = "failed"
        refund["failure_reason"] = "expired_or_canceled_card"
        refunds[id] = refund
        if let chargeId = refund["charge"] as? String, var charge = charges[chargeId] {
            let refunded = (charge["amount_refunded"] as? Int ?? 0) - (refund["amount"] as? Int ?? 0)
            charge["amount_refunded"] = max(refunded, 0)
            charge["refunded"] = false
            charges[chargeId] = charge
        }
        var reply = Self.ok(refund)
        reply.deliveries = [record("charge.refund.updated", refund)]
        return reply
    }

    // MARK: Events and helpers

    @discardableResult
    private func record(_ type: String, _ object: [String: Any]) -> Data {
        let event: [String: Any] = [
            "id": Self.newId("evt"), "object": "event", "api_version": "2024-06-20", "created": tick(), "livemode": false,
            "type": type, "pending_webhooks": endpoints.count, "data": ["object": object],
        ]
        events.append(event)
        return (try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data()
    }

    private func list(_ all: [[String: Any]], path: String, query: [String: String]) -> EmulatorReply {
        guard let limit = Int(query["limit"] ?? "10"), (1...100).contains(limit) else {
            return Self.error(400, type: "invalid_request_error", message: "Invalid integer: limit must be between 1 and 100", param: "limit")
        }
        var items = all
        if let after = query["starting_after"] {
            guard let index = items.firstIndex(where: { $0["id"] as? String == after }) else {
                return Self.error(400, type: "invalid_request_error", message: "No such object: '\(after)'", param: "starting_after")
            }
            items = Array(items[(index + 1)...])
        }
        let page = Array(items.prefix(limit))
        return Self.ok(["object": "list", "url": path, "has_more": items.count > limit, "data": page])
    }

    private func retrieve(_ object: [String: Any]?, kind: String, id: String) -> EmulatorReply {
        object.map(Self.ok) ?? Self.missing(kind, id)
    }

    static func ok(_ object: [String: Any]) -> EmulatorReply {
        EmulatorReply(status: 200, body: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    static func missing(_ kind: String, _ id: String) -> EmulatorReply {
        error(404, type: "invalid_request_error", code: "resource_missing", message: "No such \(kind): '\(id)'", param: "id")
    }

    static func error(_ status: Int, type: String, code: String? = nil, message: String, param: String? = nil) -> EmulatorReply {
        var error: [String: Any] = ["type": type, "message": message]
        if let code { error["code"] = code }
        if let param { error["param"] = param }
        return EmulatorReply(status: status, body: (try? JSONSerialization.data(withJSONObject: ["error": error], options: [.sortedKeys])) ?? Data())
    }

    static func canonical(_ value: Any) -> String {
        if let dictionary = value as? [String: Any] {
            return "{" + dictionary.keys.sorted().map { "\($0):\(canonical(dictionary[$0]!))" }.joined(separator: ",") + "}"
        }
        return "\(value)"
    }

    /// Parses a form body with bracketed keys into nested dictionaries (`line_items[0][x]` →
    /// `["line_items": ["0": ["x": …]]]`).
    /// A form or query key as Stripe reads it: `+` is a space, then percent-decoding.
    static func formKey(_ raw: Substring) -> String {
        String(raw).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(raw)
    }

    static func parseForm(_ body: String) -> [String: Any] {
        var root: [String: Any] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let rawKey = formKey(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            var path: [String] = []
            if let bracket = rawKey.firstIndex(of: "[") {
                path.append(String(rawKey[..<bracket]))
                for segment in rawKey[bracket...].split(separator: "]") {
                    path.append(String(segment.drop { $0 == "[" }))
                }
            } else {
                path.append(rawKey)
            }
            insert(&root, path: path[...], value: value)
        }
        return root
    }

    private static func insert(_ dictionary: inout [String: Any], path: ArraySlice<String>, value: String) {
        guard let head = path.first else { return }
        if path.count == 1 {
            dictionary[head] = value
            return
        }
        var child = dictionary[head] as? [String: Any] ?? [:]
        insert(&child, path: path.dropFirst(), value: value)
        dictionary[head] = child
    }

    /// The `Stripe-Signature` header for `payload`.
    static func signatureHeader(payload: Data, secret: String, timestamp: Int) -> String {
        var signed = Data("\(timestamp).".utf8)
        signed.append(payload)
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}
