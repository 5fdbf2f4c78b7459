import Crypto
import Foundation

/// An error Stripe answered (or the lack of an answer), classified for the person who must act.
public struct StripeError: Error, CustomStringConvertible, Sendable {
    public var status: Int?
    /// Stripe's `error.type`: `invalid_request_error`, `api_error`, `card_error`, `idempotency_error`, …
    public var type: String
    public var code: String?
    public var message: String
    public var param: String?

    public var description: String {
        let what: String
        switch (status, type) {
        case (nil, _): what = "Stripe could not be reached"
        case (401?, _): what = "Stripe refused the API key (check STRIPE_SECRET_KEY)"
        case (429?, _): what = "Stripe is rate limiting us"
        case (let s?, _) where s >= 500: what = "Stripe had an internal error"
        case (_, "idempotency_error"): what = "Stripe saw an idempotency key reused with other parameters"
        case (404?, _): what = "Stripe does not know this object"
        default: what = "Stripe refused the request"
        }
        return "\(what): \(message)\(param.map { " (parameter \($0))" } ?? "")\(status.map { " [HTTP \($0)]" } ?? "")"
    }
}

/// Form fields with Stripe's bracketed keys (`metadata[tokens]`, `line_items[0][quantity]`), in order.
public typealias StripeForm = [(String, String)]

/// A Stripe API client over `OutboundHTTPClient`: form-encoded bodies, an `Idempotency-Key` on every
/// POST, retries as stripe-python does them (network errors, 409, 429 and 5xx, honouring
/// `Stripe-Should-Retry`; delay `min(0.5·2^(n−1), 5)` s with jitter).
public struct StripeClient: Sendable {
    public let apiBase: URL
    private let secretKey: String
    private let http: any OutboundHTTPClient
    public var maxRetries: Int
    public var timeout: TimeInterval
    /// Scales retry delays (tests use 0).
    public var retryDelayScale: Double

    /// `timeout` (per attempt) defaults to the settings' `MYBA_STRIPE_TIMEOUT_MS`.
    public init(
        settings: StripeSettings,
        http: any OutboundHTTPClient,
        maxRetries: Int = 2,
        timeout: TimeInterval? = nil,
        retryDelayScale: Double = 1
    ) throws {
        guard let key = settings.secretKey else {
            throw StripeError(status: nil, type: "configuration", code: nil, message: "STRIPE_SECRET_KEY is not set", param: nil)
        }
        self.apiBase = settings.apiBase
        self.secretKey = key
        self.http = http
        self.maxRetries = maxRetries
        self.timeout = timeout ?? settings.timeoutSeconds
        self.retryDelayScale = retryDelayScale
    }

    // MARK: Customers

    public func createCustomer(email: String?, metadata: [String: String], idempotencyKey: String) async throws -> StripeCustomer {
        var form: StripeForm = metadata.sorted { $0.key < $1.key }.map { ("metadata[\($0.key)]", $0.value) }
        if let email { form.append(("email", email)) }
        return try await request(StripeCustomer.self, "POST", "/v1/customers", form: form, idempotencyKey: idempotencyKey)
    }

    public func retrieveCustomer(_ id: String) async throws -> StripeCustomer {
        try await request(StripeCustomer.self, "GET", "/v1/customers/\(id)")
    }

    /// Merges `metadata` into the customer's; a `nil` value unsets that key.
    public func updateCustomerMetadata(_ id: String, metadata: [String: String?], idempotencyKey: String) async throws -> StripeCustomer {
        let form: StripeForm = metadata.sorted { $0.key < $1.key }.map { ("metadata[\($0.key)]", $0.value ?? "") }
        return try await request(StripeCustomer.self, "POST", "/v1/customers/\(id)", form: form, idempotencyKey: idempotencyKey)
    }

    /// One page of customers, newest first.
    public func listCustomers(limit: Int = 100, startingAfter: String? = nil) async throws -> StripeList<StripeCustomer> {
        var query = [("limit", String(limit))]
        if let startingAfter { query.append(("starting_after", startingAfter)) }
        return try await request(StripeList<StripeCustomer>.self, "GET", "/v1/customers", query: query)
    }

    /// Customers whose metadata names `userId` (`user_id`, or the legacy `clerk_user_id`),
    /// through Stripe's search API. Search lags writes by up to a minute, which is fine for what
    /// it is used for: finding a legacy customer the old service made long ago.
    public func customersNaming(userId: String) async throws -> [StripeCustomer] {
        let quoted = userId.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
        return try await request(
            StripeList<StripeCustomer>.self,
            "GET",
            "/v1/customers/search",
            query: [
                ("query", "metadata['user_id']:'\(quoted)' OR metadata['clerk_user_id']:'\(quoted)'"), ("limit", "10"),
            ]
        ).data
    }

    // MARK: Checkout and refunds

    public func createCheckoutSession(_ form: StripeForm, idempotencyKey: String) async throws -> StripeCheckoutSession {
        try await request(StripeCheckoutSession.self, "POST", "/v1/checkout/sessions", form: form, idempotencyKey: idempotencyKey)
    }

    public func retrieveCheckoutSession(_ id: String) async throws -> StripeCheckoutSession {
        try await request(StripeCheckoutSession.self, "GET", "/v1/checkout/sessions/\(id)")
    }

    public func expireCheckoutSession(_ id: String, idempotencyKey: String) async throws -> StripeCheckoutSession {
        try await request(StripeCheckoutSession.self, "POST", "/v1/checkout/sessions/\(id)/expire", idempotencyKey: idempotencyKey)
    }

    /// How much of a PaymentIntent's charge Stripe has refunded, whatever this ledger has heard.
    public func amountRefunded(paymentIntent: String) async throws -> Int {
        let intent = try await request(StripePaymentIntent.self, "GET", "/v1/payment_intents/\(paymentIntent)")
        guard let chargeId = intent.latestCharge?.id else { return 0 }
        return try await request(StripeCharge.self, "GET", "/v1/charges/\(chargeId)").amountRefunded
    }

    public func createRefund(paymentIntent: String, amount: Int?, reason: String?, idempotencyKey: String) async throws -> StripeRefund {
        var form: StripeForm = [("payment_intent", paymentIntent)]
        if let amount { form.append(("amount", String(amount))) }
        if let reason { form.append(("reason", reason)) }
        return try await request(StripeRefund.self, "POST", "/v1/refunds", form: form, idempotencyKey: idempotencyKey)
    }

    // MARK: Transport

    /// One API request whose answer is decoded as `type`; an answer of another shape is an
    /// `api_error` naming the field.
    public func request<T: Decodable>(
        _ type: T.Type,
        _ method: String,
        _ path: String,
        query: [(String, String)] = [],
        form: StripeForm = [],
        idempotencyKey: String? = nil
    ) async throws -> T {
        let body = try await send(method, path, query: query, form: form, idempotencyKey: idempotencyKey)
        do {
            return try StripeWire.decode(type, from: body)
        } catch {
            throw StripeError(
                status: 200,
                type: "api_error",
                code: "unexpected_answer",
                message: "Stripe's answer to \(method) \(path) is not a \(type): \(StripeWire.explain(error))",
                param: nil
            )
        }
    }

    /// One API request whose answer is kept as a JSON object: for the emulator's `/test/…`
    /// routes and tools that look at whole objects (MyBA's own calls use the typed form).
    public func request(
        _ method: String,
        _ path: String,
        query: [(String, String)] = [],
        form: StripeForm = [],
        idempotencyKey: String? = nil
    ) async throws -> [String: Any] {
        let body = try await send(method, path, query: query, form: form, idempotencyKey: idempotencyKey)
        return (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
    }

    /// Sends one API request, retrying what stripe-python retries; returns the body of a 2xx
    /// answer, or throws Stripe's error.
    func send(
        _ method: String,
        _ path: String,
        query: [(String, String)],
        form: StripeForm,
        idempotencyKey: String?
    ) async throws -> Data {
        var components = URLComponents(url: apiBase.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.percentEncodedQuery = Self.encode(query) }
        var headers = [("Authorization", "Bearer \(secretKey)"), ("Stripe-Version", "2024-06-20"), ("User-Agent", "MyBA/\(mybaVersion)")]
        var body: Data?
        if method == "POST" {
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            // Every POST carries a key, so a retry (ours or after a crash) cannot act twice.
            headers.append(("Idempotency-Key", idempotencyKey ?? "myba-\(UUID().uuidString)"))
            body = Data(Self.encode(form).utf8)
        }
        let request = OutboundRequest(method: method, url: components.url!, headers: headers, body: body, timeout: timeout)
        var attempt = 0
        while true {
            attempt += 1
            let response: OutboundResponse
            do {
                response = try await http.send(request)
            } catch {
                if attempt <= maxRetries {
                    try await sleep(attempt: attempt, retryAfter: nil)
                    continue
                }
                throw StripeError(status: nil, type: "api_connection_error", code: nil, message: "\(error)", param: nil)
            }
            if (200..<300).contains(response.status) { return response.body }
            let shouldRetryHeader = response.header("Stripe-Should-Retry")
            let retryable = shouldRetryHeader.map { $0 == "true" } ?? (response.status == 409 || response.status == 429 || response.status >= 500)
            if retryable && attempt <= maxRetries {
                try await sleep(attempt: attempt, retryAfter: response.header("Retry-After").flatMap(Double.init))
                continue
            }
            let error = (try? StripeWire.decode(StripeErrorEnvelope.self, from: response.body))?.error
            throw StripeError(
                status: response.status,
                type: error?.type ?? "api_error",
                code: error?.code,
                message: error?.message ?? "no error message",
                param: error?.param
            )
        }
    }

    private func sleep(attempt: Int, retryAfter: Double?) async throws {
        var delay = min(0.5 * pow(2, Double(attempt - 1)), 5) * Double.random(in: 0.75...1)
        if let retryAfter, retryAfter <= 60 { delay = max(delay, retryAfter) }
        try await Task.sleep(for: .milliseconds(Int(delay * 1000 * retryDelayScale)))
    }

    /// `application/x-www-form-urlencoded`, brackets in keys escaped as Stripe's SDKs do.
    public static func encode(_ fields: [(String, String)]) -> String {
        fields.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

extension StripeClient {
    /// Every event of `type` created at or after `since`, through all pages, oldest first.
    public func events(type: String, since: Date) async throws -> [[String: Any]] {
        var all: [[String: Any]] = []
        var cursor: String?
        repeat {
            var query = [("type", type), ("created[gte]", String(Int(since.timeIntervalSince1970))), ("limit", "100")]
            if let cursor { query.append(("starting_after", cursor)) }
            let page = try await request("GET", "/v1/events", query: query)
            let data = page["data"] as? [[String: Any]] ?? []
            all += data
            cursor = (page["has_more"] as? Bool ?? false) ? data.last?["id"] as? String : nil
        } while cursor != nil
        return all.reversed()
    }
}

extension StripeClient {
    /// The Stripe idempotency key of a checkout: a retry of the same request gets the same
    /// session, while a request id or key that a client reuses for another plan or price (both
    /// are client-supplied) gets a new session instead of Stripe's idempotency_error. Stripe
    /// refuses keys over 255 characters, so long ones are folded into a digest.
    /// The Stripe key of an operator's refund: one per intent (payment, amount, reason), so the
    /// same command retried after a failure is answered again by Stripe, never refunded twice.
    public static func refundIdempotencyKey(paymentIntent: String, amount: Int, reason: String) -> String {
        "myba-refund:\(paymentIntent):\(amount):" + String(SHA256.hash(data: Data(reason.utf8)).lowercaseHex.prefix(16))
    }

    public static func checkoutIdempotencyKey(userId: String, planId: String, amount: Int, requestKey: String) -> String {
        let key = "myba-checkout:\(userId):\(planId):\(amount):\(requestKey)"
        guard key.utf8.count > 255 else { return key }
        let digest = SHA256.hash(data: Data(key.utf8)).lowercaseHex
        return "myba-checkout:\(digest)"
    }
}
