import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MyBAOps

extension HTTPField.Name {
    static let requestID = HTTPField.Name("X-Request-ID")!
}

/// Gives every request an id — the caller's `X-Request-ID` when it is short and made of safe
/// characters, a fresh one otherwise — and puts it on every log line of the request and on the
/// response.
struct RequestIDMiddleware: RouterMiddleware {
    typealias Context = MyBARequestContext
    let maxBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let requestId = request.headers[.requestID].flatMap(Self.acceptable) ?? Self.generate()
        context.requestId = requestId
        context.bodyLimit = maxBodyBytes
        context.logger[metadataKey: "hb.request.id"] = nil
        context.logger[metadataKey: "request.id"] = .string(requestId)
        var response = try await next(request, context)
        response.headers[.requestID] = requestId
        return response
    }

    /// An incoming id is kept when it is 1–128 characters of letters, digits and `-_.:`.
    static func acceptable(_ candidate: String) -> String? {
        guard (1...128).contains(candidate.utf8.count),
            candidate.utf8.allSatisfy({ byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
            })
        else { return nil }
        return candidate
    }

    /// A new request id (`RequestIdentifier.generate`, shared with the console).
    static func generate(now: Date = Date()) -> String { RequestIdentifier.generate(now: now) }
}

/// Refuses bodies declared larger than the cap before reading them; bodies without a length are
/// capped while they are read (`maxUploadSize`).
struct BodyLimitMiddleware: RouterMiddleware {
    typealias Context = MyBARequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > context.bodyLimit {
            throw APIError(.contentTooLarge, code: "payload_too_large", message: "request body is larger than \(context.bodyLimit) bytes")
        }
        return try await next(request, context)
    }
}

/// One line per request with method, path, status and duration, at the end of the request.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = MyBARequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = ContinuousClock.now - start
        let milliseconds = elapsed.timeInterval * 1000
        context.logger.info(
            "request",
            metadata: [
                "http.method": .string(request.method.rawValue),
                "http.path": .string(request.uri.path),
                "http.status": .stringConvertible(response.status.code),
                "duration.ms": .stringConvertible((milliseconds * 1000).rounded() / 1000),
            ]
        )
        // The route template, known once the router matched; Hummingbird names every unmatched
        // path "NotFound", so ids in unknown paths never become series.
        MyBAMetrics.recordRequest(
            route: context.endpointPath ?? "unmatched",
            method: request.method.rawValue,
            status: response.status.code,
            duration: elapsed
        )
        return response
    }
}

/// Turns every error into the JSON error shape, so clients never see an empty body or HTML.
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = MyBARequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let apiError = APIError(from: error)
            if apiError.status.code >= 500 {
                context.logger.error("request failed", metadata: ["error.code": .string(apiError.code), "error.message": "\(error)"])
            }
            return apiError.response(requestId: context.requestId)
        }
    }
}

/// An error as the API reports it: `{"error":{"code":…,"message":…,"requestId":…}}`.
struct APIError: Error {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    init(from error: any Error) {
        switch error {
        case let error as APIError:
            self = error
        case let error as HTTPError:
            self.init(error.status, code: Self.code(for: error.status), message: error.body ?? Self.message(for: error.status))
        case let error where StorageError.classify(error) == .busy:
            self.init(.serviceUnavailable, code: "database_busy", message: StorageError.busy.description)
        case let error as WebhookSignatureError:
            self.init(.badRequest, code: "invalid_signature", message: error.description)
        case let error as InvalidWebhookEvent:
            self.init(.badRequest, code: error.code, message: error.description)
        case AuthError.keysUnavailable:
            // The server cannot check tokens right now: not the client's fault, and retryable.
            self.init(
                .serviceUnavailable,
                code: "auth_unavailable",
                message: "sign-in cannot be checked right now; retry shortly",
                headers: [.retryAfter: "5"]
            )
        case let error as AuthError:
            self.init(.unauthorized, code: "unauthorized", message: error.description)
        case let error as AnonymousSessionError:
            switch error {
            case .invalidFingerprint: self.init(.badRequest, code: "invalid_fingerprint", message: error.description)
            case .sessionNotFound: self.init(.notFound, code: "session_not_found", message: error.description)
            case .alreadyTransferred: self.init(.conflict, code: "session_transferred", message: error.description)
            case .transferLimitReached: self.init(.conflict, code: "transfer_limit_reached", message: error.description)
            case .insufficientTokens: self.init(Self.paymentRequired, code: "insufficient_tokens", message: error.description)
            case .idempotencyKeyReused: self.init(.conflict, code: "idempotency_key_reused", message: error.description)
            case .rateLimited(let seconds):
                self.init(.tooManyRequests, code: "rate_limited", message: error.description, headers: [.retryAfter: String(seconds)])
            }
        case let error as GenerationError:
            switch error {
            case .invalidInput: self.init(.badRequest, code: "invalid_input", message: error.description)
            case .signInRequired: self.init(.unauthorized, code: "unauthorized", message: error.description)
            // The provider's own words stay in the log: they may quote a key, or say more about
            // the upstream than a client should learn.
            case .providerFailed:
                self.init(
                    .badGateway,
                    code: "provider_error",
                    message: "ticket generation failed at the AI provider; no token was spent (the requestId finds the details)"
                )
            case .inProgress: self.init(.conflict, code: "generation_in_progress", message: error.description)
            case .idempotencyKeyReused: self.init(.unprocessableContent, code: "idempotency_key_reused", message: error.description)
            case .unknownModel: self.init(.badRequest, code: "unknown_model", message: error.description)
            case .tooManyInFlight:
                self.init(.tooManyRequests, code: "too_many_in_flight", message: error.description, headers: [.retryAfter: "2"])
            case .overloaded:
                self.init(.serviceUnavailable, code: "overloaded", message: error.description, headers: [.retryAfter: "2"])
            case .rateLimited(let seconds):
                self.init(.tooManyRequests, code: "rate_limited", message: error.description, headers: [.retryAfter: String(seconds)])
            }
        case let error as CheckoutError:
            switch error {
            case .unknownPlan: self.init(.badRequest, code: "unknown_plan", message: error.description)
            case .rateLimited(let seconds):
                self.init(.tooManyRequests, code: "rate_limited", message: error.description, headers: [.retryAfter: String(seconds)])
            case .discountJustUsed: self.init(.conflict, code: "discount_used", message: error.description)
            // Stripe's messages can carry key fragments: the detail goes to the log only.
            case .stripe:
                self.init(.badGateway, code: "stripe_error", message: "the payment provider failed; retry shortly (the requestId finds the details)")
            }
        case let error as LedgerError:
            switch error {
            case .insufficientTokens: self.init(Self.paymentRequired, code: error.code, message: error.description)
            case .unknownCustomer: self.init(.notFound, code: error.code, message: error.description)
            case .idempotencyKeyReused: self.init(.conflict, code: error.code, message: error.description)
            case .wouldGoNegative, .invalidPosting: self.init(.badRequest, code: error.code, message: error.description)
            case .accountDeleted: self.init(.forbidden, code: error.code, message: error.description)
            }
        default:
            self.init(.internalServerError, code: "internal_error", message: "the server failed to handle this request")
        }
    }

    static let paymentRequired = HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required")

    func response(requestId: String) -> Response {
        let body = ErrorBody(error: .init(code: code, message: message, requestId: requestId))
        let data = (try? JSONEncoder().encode(body)) ?? Data("{\"error\":{\"code\":\"internal_error\"}}".utf8)
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: return "bad_request"
        case 401: return "unauthorized"
        case 403: return "forbidden"
        case 404: return "not_found"
        case 405: return "method_not_allowed"
        case 413: return "payload_too_large"
        case 415: return "unsupported_media_type"
        case 429: return "rate_limited"
        case 503: return "unavailable"
        default: return status.code >= 500 ? "internal_error" : "request_error"
        }
    }

    static func message(for status: HTTPResponse.Status) -> String {
        status.code == 404 ? "no such endpoint" : status.reasonPhrase.lowercased()
    }

    struct ErrorBody: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
            var requestId: String
        }
        var error: Detail
    }
}

/// Checks the bearer token when one is sent (a bad one is 401 on every route), opens the account
/// of a user seen for the first time (welcome grant, once), and takes the client address from
/// `X-Forwarded-For` only as far as the trusted proxies in front wrote it (`ClientAddress`).
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = MyBARequestContext
    let verifier: ClerkTokenVerifier
    let database: AppDatabase
    let trustedProxies: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if trustedProxies > 0 {
            context.clientAddress = ClientAddress.resolve(
                peer: context.peerAddress,
                forwardedFor: request.headers[values: .xForwardedFor],
                trustedProxies: trustedProxies
            )
        }
        if let header = request.headers[.authorization] {
            let user: AuthenticatedUser
            do {
                user = try await verifier.authenticate(authorizationHeader: header)
            } catch let error as AuthError {
                context.logger.notice("authentication failed", metadata: ["auth.error": .string(error.description)])
                throw error
            }
            context.user = user
            context.logger[metadataKey: "user.id"] = .string(user.userId)
            if let opened = try await database.ledger.openAccountOnFirstRequest(userId: user.userId, actor: "api", requestId: context.requestId) {
                context.logger.info("customer opened with welcome grant", metadata: ["tokens.granted": .stringConvertible(opened.entry.delta)])
                context.welcomeGranted = opened.entry.delta
            }
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
}
