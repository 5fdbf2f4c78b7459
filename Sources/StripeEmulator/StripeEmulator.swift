import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A local server speaking Stripe's wire format for what MyBA uses: customers, Checkout
/// Sessions (with a test route that pays one), refunds, events, idempotency keys, Stripe's error
/// JSON and key check, signed webhook deliveries, and injectable faults. For tests, benchmarks
/// and local runs; see `stripe-emulator --help`.
public struct StripeEmulator: Sendable {
    let state: EmulatorState

    public init(webhookEndpoints: [EmulatorWebhookEndpoint] = [], faults: StripeFaults = StripeFaults()) {
        state = EmulatorState(endpoints: webhookEndpoints, faults: faults)
    }

    public func setFaults(_ faults: StripeFaults) async { await state.setFaults(faults) }
    public func addWebhookEndpoint(_ endpoint: EmulatorWebhookEndpoint) async { await state.addEndpoint(endpoint) }
    /// How many API requests reached the emulator (faulted ones included).
    public func requestCount() async -> Int { await state.requestCount }
    /// Every API request so far (not `/test/…`), with its parameter names as sent.
    public func recordedRequests() async -> [RecordedStripeRequest] { await state.recorded }

    /// The names in a form body (`line_items[0][price_data][currency]`, …), decoded as the form
    /// itself is (`EmulatorState.parseForm`).
    static func formKeys(_ body: String) -> [String] {
        body.split(separator: "&").map { pair in EmulatorState.formKey(pair.split(separator: "=", maxSplits: 1).first ?? "") }
    }

    public func buildRouter() -> Router<EmulatorRequestContext> {
        let router = Router(context: EmulatorRequestContext.self)
        let handler: @Sendable (Request, EmulatorRequestContext) async throws -> Response = { request, context in
            try await self.respond(request, context: context)
        }
        router.get("**", use: handler)
        router.post("**", use: handler)
        router.delete("**", use: handler)
        return router
    }

    /// An application on `host:port` (0 picks a free port).
    public func application(
        host: String = "127.0.0.1",
        port: Int = 0,
        logger: Logger = Logger(label: "stripe-emulator"),
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: buildRouter(),
            configuration: .init(address: .hostname(host, port: port), serverName: "stripe-emulator"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    func respond(_ request: Request, context: EmulatorRequestContext) async throws -> Response {
        let path = request.uri.path
        let isTestRoute = path.hasPrefix("/test/")
        let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
        if path == "/test/faults" && request.method == .post {
            let faults = try JSONDecoder().decode(StripeFaults.self, from: Data(body.utf8))
            await state.setFaults(faults)
            return json(EmulatorState.ok(["faults": "set"]))
        }
        if path == "/test/webhook_endpoints" && request.method == .post {
            let endpoint = try JSONDecoder().decode(EmulatorWebhookEndpoint.self, from: Data(body.utf8))
            await state.addEndpoint(endpoint)
            return json(EmulatorState.ok(["url": endpoint.url]))
        }
        if path.hasPrefix("/checkout/") {
            return try await hostedCheckout(request, path: path)
        }
        if !isTestRoute {
            guard let authorization = request.headers[.authorization], authorization.hasPrefix("Bearer "),
                String(authorization.dropFirst(7)).hasPrefix("sk_") || String(authorization.dropFirst(7)).hasPrefix("rk_")
            else {
                return json(
                    EmulatorState.error(
                        401,
                        type: "invalid_request_error",
                        message: "Invalid API Key provided. A secret key (sk_…) is required; publishable keys cannot make this request."
                    )
                )
            }
            await state.noteRequest(
                RecordedStripeRequest(
                    method: request.method.rawValue,
                    path: path,
                    parameters: request.uri.queryParameters.map { EmulatorState.formKey($0.key) } + Self.formKeys(body)
                )
            )
            let faults = await state.currentFaults()
            if faults.latencyMilliseconds > 0 { try await Task.sleep(for: .milliseconds(faults.latencyMilliseconds)) }
            if Double.random(in: 0..<1) < faults.dropShare, let channel = context.channel {
                // A dropped connection: the client sees the socket close with no answer.
                try? await channel.close()
                throw HTTPError(.internalServerError)
            }
            let roll = Double.random(in: 0..<1)
            if roll < faults.rateLimitShare {
                var reply = EmulatorState.error(
                    429,
                    type: "invalid_request_error",
                    code: "rate_limit",
                    message: "Too many requests hit the API too quickly."
                )
                reply.headers.append(("Stripe-Should-Retry", "true"))
                return json(reply)
            }
            if roll < faults.rateLimitShare + faults.serverErrorShare {
                return json(EmulatorState.error(500, type: "api_error", message: "Something went wrong on Stripe's end (injected fault)."))
            }
        }
        var query: [String: String] = [:]
        // Stripe reads `created%5Bgte%5D` as `created[gte]`; Hummingbird decodes values only.
        for (key, value) in request.uri.queryParameters { query[EmulatorState.formKey(key)] = String(value) }
        let form = request.method == .post ? EmulatorState.parseForm(body) : [:]
        let reply = await state.handle(
            method: request.method.rawValue,
            path: path,
            query: query,
            form: form,
            idempotencyKey: request.headers[HTTPField.Name("Idempotency-Key")!],
            origin: Self.origin(authority: request.head.authority)
        )
        if !reply.deliveries.isEmpty {
            let endpoints = await state.webhookEndpoints()
            // Test routes deliver before answering, so a test sees the webhook's effect at once;
            // API calls deliver in the background, as Stripe does.
            if isTestRoute {
                await Self.deliver(reply.deliveries, to: endpoints)
            } else {
                Task { await Self.deliver(reply.deliveries, to: endpoints) }
            }
        }
        return json(reply)
    }

    static func deliver(_ events: [Data], to endpoints: [EmulatorWebhookEndpoint]) async {
        for event in events {
            for endpoint in endpoints {
                guard let url = URL(string: endpoint.url) else { continue }
                var request = URLRequest(url: url, timeoutInterval: 10)
                request.httpMethod = "POST"
                request.setValue("application/json; charset=utf-8", forHTTPHeaderField: "Content-Type")
                request.setValue(
                    EmulatorState.signatureHeader(payload: event, secret: endpoint.secret, timestamp: Int(Date().timeIntervalSince1970)),
                    forHTTPHeaderField: "Stripe-Signature"
                )
                request.httpBody = event
                _ = try? await URLSession.shared.data(for: request)
            }
        }
    }

    /// Where a browser reaches this emulator, from the `Host` the API client used (the same
    /// loopback address); anything unusual falls back to the default port.
    static func origin(authority: String?) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
        guard let authority, !authority.isEmpty, authority.count <= 262, authority.allSatisfy(allowed.contains) else {
            return "http://127.0.0.1:12111"
        }
        return "http://\(authority)"
    }

    /// The hosted checkout page a session's `url` points at: `GET /checkout/{id}` shows the
    /// product and amount with Pay and Cancel; Pay completes the session, delivers the signed
    /// `checkout.session.completed` (before redirecting to `success_url` with
    /// `{CHECKOUT_SESSION_ID}` filled in, or `webhookDelayMilliseconds` after it), and Cancel
    /// redirects to `cancel_url`, as Stripe's page does for a buyer who goes back.
    func hostedCheckout(_ request: Request, path: String) async throws -> Response {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 2, let hosted = await state.hostedSession(parts[1]) else {
            return html(status: .notFound, page: HostedCheckoutPage.message(title: "Checkout not found", text: "This checkout link does not exist."))
        }
        let id = parts[1]
        switch (request.method, parts.count > 2 ? parts[2] : nil) {
        case (.get, nil):
            return html(status: .ok, page: HostedCheckoutPage.page(hosted))
        case (.post, "pay"):
            let reply = await state.payHostedSession(id)
            guard reply.status == 200 else {
                let message =
                    (try? JSONSerialization.jsonObject(with: reply.body) as? [String: Any])
                    .flatMap { ($0["error"] as? [String: Any])?["message"] as? String } ?? "This checkout cannot be paid."
                return html(status: .badRequest, page: HostedCheckoutPage.message(title: "Payment not possible", text: message))
            }
            let endpoints = await state.webhookEndpoints()
            let delay = await state.currentFaults().webhookDelayMilliseconds
            if delay > 0 {
                Task {
                    try? await Task.sleep(for: .milliseconds(delay))
                    await Self.deliver(reply.deliveries, to: endpoints)
                }
            } else {
                await Self.deliver(reply.deliveries, to: endpoints)
            }
            let success = (hosted.successURL ?? "/").replacingOccurrences(of: "{CHECKOUT_SESSION_ID}", with: id)
            return Response(status: .seeOther, headers: [.location: success])
        case (.post, "cancel"):
            let cancel = hosted.cancelURL ?? hosted.successURL ?? "/"
            return Response(status: .seeOther, headers: [.location: cancel])
        default:
            return html(status: .notFound, page: HostedCheckoutPage.message(title: "Not found", text: "Nothing is served here."))
        }
    }

    private func html(status: HTTPResponse.Status, page: String) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                HTTPField.Name("Content-Security-Policy")!:
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; base-uri 'none'",
            ],
            body: .init(byteBuffer: ByteBuffer(string: page))
        )
    }

    private func json(_ reply: EmulatorReply) -> Response {
        var headers: HTTPFields = [.contentType: "application/json", HTTPField.Name("Request-Id")!: EmulatorState.newId("req")]
        for (name, value) in reply.headers { headers[HTTPField.Name(name)!] = value }
        return Response(status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
    }
}

/// The emulator's request context: Hummingbird's, plus the connection, so a fault can drop it.
public struct EmulatorRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
