import Crypto
import CryptoExtras
import Foundation
import Logging
import Synchronization

/// Who made a request, once its bearer token checked out.
public struct AuthenticatedUser: Equatable, Sendable {
    public var userId: String
    /// True for `Bearer dev:<userId>` in development mode.
    public var isDevelopment: Bool
}

/// Why a bearer token was refused. Every case answers 401; the message says what to fix.
public enum AuthError: Error, Equatable, CustomStringConvertible, Sendable {
    case missingToken
    case malformed(String)
    case unsupportedAlgorithm(String)
    case unknownKey(String)
    case badSignature
    case expired
    case notYetValid
    case issuedInFuture
    case missingSubject
    case unauthorizedParty(String)
    case developmentTokenRejected
    /// A signed token sent to a server in development sign-in mode (no Clerk key configured).
    case developmentModeOnly
    case wrongIssuer(String)
    /// The signing keys cannot be had (the JWKS endpoint fails and no usable keys are held):
    /// the server's problem, answered 503, never 401.
    case keysUnavailable(String)

    public var description: String {
        switch self {
        case .missingToken: return "sign in required: no bearer token"
        case .malformed(let detail): return "malformed session token: \(detail)"
        // Nothing the token itself says is echoed: a client writes it, and it reaches the answer,
        // the log and an operator's terminal.
        case .unsupportedAlgorithm: return "session token algorithm is not accepted (RS256, RS384 or RS512)"
        case .unknownKey: return "session token is signed with a key this server does not know"
        case .badSignature: return "session token signature is invalid"
        case .expired: return "session token has expired"
        case .notYetValid: return "session token is not valid yet"
        case .issuedInFuture: return "session token was issued in the future"
        case .missingSubject: return "session token has no subject"
        case .unauthorizedParty: return "session token was issued for a party that is not authorized (MYBA_AUTHORIZED_PARTIES)"
        case .developmentTokenRejected: return "development tokens are not accepted when Clerk keys are configured"
        case .developmentModeOnly:
            return "no Clerk key is configured (CLERK_JWT_KEY, CLERK_SECRET_KEY or CLERK_JWKS_URL); in development use `Bearer dev:<userId>`"
        case .wrongIssuer: return "session token was issued by another Clerk instance (iss)"
        case .keysUnavailable(let detail): return "cannot load Clerk signing keys: \(detail)"
        }
    }
}

/// Verifies Clerk session tokens as Clerk's SDKs do: RS256/384/512 only, signature first, then
/// `exp`/`nbf`/`iat` with 5 s of skew, `sub` as the user id, and `azp` against the authorized
/// parties when configured. Keys come from a PEM (`CLERK_JWT_KEY`) or a JWKS endpoint, cached
/// for five minutes and refetched when a token names a key id not seen yet.
public final class ClerkTokenVerifier: Sendable {
    public static let clockSkew: TimeInterval = 5
    static let jwksCacheLifetime: TimeInterval = 300
    /// A token with an unknown `kid` triggers at most one refetch in this interval.
    static let unknownKeyRefetchInterval: TimeInterval = 10

    /// After a failed JWKS fetch, the next attempt waits this long (requests meanwhile use the
    /// keys held, or fail fast).
    static let failedRefreshRetryInterval: TimeInterval = 5
    /// Keys fetched this long ago are no longer used when refreshing them fails.
    static let maximumKeyStaleness: TimeInterval = 3600

    private let settings: AuthSettings
    private let http: any OutboundHTTPClient
    private let staticKey: _RSA.Signing.PublicKey?
    private let cache = Mutex<KeyCache>(KeyCache())
    private let now: @Sendable () -> Date
    private let logger: Logger
    /// `CLERK_ISSUER`, or the instance a frontend-API JWKS URL names; nil: `iss` not checked.
    let issuer: String?

    private struct KeyCache {
        var keys: [String: _RSA.Signing.PublicKey] = [:]
        var fetchedAt: Date?
        /// When a token with an unknown kid last caused a refetch.
        var unknownKidFetchAt: Date?
        /// When a fetch last failed.
        var failedAt: Date?
        /// The one fetch in flight, which every caller that needs fresh keys awaits.
        var inFlight: Task<[String: _RSA.Signing.PublicKey], any Error>?
    }

    /// - Throws: when `CLERK_JWT_KEY` is set but is not an RSA public key.
    public init(
        settings: AuthSettings,
        http: any OutboundHTTPClient,
        logger: Logger = Logger(label: "myba.auth"),
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        self.settings = settings
        self.http = http
        self.now = now
        self.logger = logger
        self.issuer = settings.issuer ?? settings.jwksURL.flatMap(Self.issuer(fromJWKS:))
        if let pem = settings.jwtPublicKeyPEM {
            do {
                staticKey = try _RSA.Signing.PublicKey(pemRepresentation: pem)
            } catch {
                throw SettingsError(variable: "CLERK_JWT_KEY", problem: "is not a PEM RSA public key of 2048 bits or more (\(error))")
            }
        } else {
            staticKey = nil
        }
    }

    public var isDevelopmentMode: Bool { settings.isDevelopmentMode }

    /// Checks an `Authorization` header value (`Bearer …`).
    public func authenticate(authorizationHeader: String?) async throws -> AuthenticatedUser {
        // Every signed-in request passes here: trimmed by scalar, not with Foundation's
        // CharacterSet, which cost more than checking a development token.
        guard let header = authorizationHeader?.trimmingHorizontalSpace(), !header.isEmpty else {
            throw AuthError.missingToken
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw AuthError.malformed("expected `Bearer <token>`") }
        return try await verify(token: parts[1].trimmingHorizontalSpace())
    }

    /// Verifies one token.
    public func verify(token: String) async throws -> AuthenticatedUser {
        if token.hasPrefix("dev:") {
            guard isDevelopmentMode else { throw AuthError.developmentTokenRejected }
            let userId = String(token.dropFirst(4))
            // Shaped like Clerk's ids (`user_…`): anything else would open an account under a
            // name no real sign-in can produce.
            guard (1...128).contains(userId.utf8.count),
                userId.utf8.allSatisfy({ byte in
                    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "_")
                        || byte == UInt8(ascii: "-")
                })
            else {
                throw AuthError.malformed("development token needs a user id of 1–128 letters, digits, '_' or '-': dev:<userId>")
            }
            return AuthenticatedUser(userId: userId, isDevelopment: true)
        }
        if isDevelopmentMode { throw AuthError.developmentModeOnly }
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3,
            let headerData = Base64URL.decode(segments[0]),
            let payloadData = Base64URL.decode(segments[1]),
            let signature = Base64URL.decode(segments[2])
        else { throw AuthError.malformed("expected three base64url segments") }
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw AuthError.malformed("header is not a JSON object")
        }
        guard let alg = header["alg"] as? String else { throw AuthError.malformed("header has no alg") }
        if let typ = header["typ"] {
            guard (typ as? String)?.uppercased() == "JWT" else { throw AuthError.malformed("typ must be JWT") }
        }
        let signingInput = Data(token.utf8.prefix(segments[0].utf8.count + 1 + segments[1].utf8.count))
        let key = try await signingKey(kid: (header["kid"] as? String).map { String($0.prefix(128)) })
        let rsaSignature = _RSA.Signing.RSASignature(rawRepresentation: signature)
        let valid: Bool
        switch alg {
        case "RS256": valid = key.isValidSignature(rsaSignature, for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case "RS384": valid = key.isValidSignature(rsaSignature, for: SHA384.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case "RS512": valid = key.isValidSignature(rsaSignature, for: SHA512.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        default: throw AuthError.unsupportedAlgorithm(String(alg.prefix(32)))
        }
        guard valid else { throw AuthError.badSignature }

        guard let claims = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any] else {
            throw AuthError.malformed("payload is not a JSON object")
        }
        let current = now().timeIntervalSince1970
        guard let exp = (claims["exp"] as? NSNumber)?.doubleValue else { throw AuthError.malformed("no exp claim") }
        guard current < exp + Self.clockSkew else { throw AuthError.expired }
        if let nbf = (claims["nbf"] as? NSNumber)?.doubleValue, nbf > current + Self.clockSkew { throw AuthError.notYetValid }
        if let iat = (claims["iat"] as? NSNumber)?.doubleValue, iat > current + Self.clockSkew { throw AuthError.issuedInFuture }
        guard let subject = claims["sub"] as? String, !subject.isEmpty else { throw AuthError.missingSubject }
        if let issuer, claims["iss"] as? String != issuer {
            throw AuthError.wrongIssuer(String((claims["iss"] as? String ?? "(none)").prefix(128)))
        }
        if !settings.authorizedParties.isEmpty {
            // Configured parties make `azp` required: a token without one was not made for a
            // browser session of this front end.
            guard let azp = claims["azp"] as? String, settings.authorizedParties.contains(azp) else {
                throw AuthError.unauthorizedParty(String((claims["azp"] as? String ?? "(none)").prefix(128)))
            }
        }
        return AuthenticatedUser(userId: subject, isDevelopment: false)
    }

    /// The issuer a Clerk frontend-API JWKS URL (`https://<instance>/.well-known/jwks.json`)
    /// belongs to; nil for the backend API's JWKS, which serves every instance of the account.
    static func issuer(fromJWKS url: URL) -> String? {
        guard url.path.hasSuffix("/.well-known/jwks.json"), let scheme = url.scheme, let host = url.host else { return nil }
        return "\(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "")
    }

    private func signingKey(kid: String?) async throws -> _RSA.Signing.PublicKey {
        if let staticKey { return staticKey }
        let kid = kid ?? ""
        let current = now()
        enum Plan {
            case use(_RSA.Signing.PublicKey)
            case await(Task<[String: _RSA.Signing.PublicKey], any Error>)
            case unknown
            case unavailable(String)
        }
        let plan: Plan = cache.withLock { state in
            let age = state.fetchedAt.map { current.timeIntervalSince($0) }
            let fresh = age.map { $0 < Self.jwksCacheLifetime } ?? false
            if fresh, let key = state.keys[kid] { return .use(key) }
            if let task = state.inFlight { return .await(task) }
            // A failed fetch is not retried at once: a JWKS endpoint that is down must not be
            // hit by every request, and the keys held serve meanwhile.
            if let failedAt = state.failedAt, current.timeIntervalSince(failedAt) < Self.failedRefreshRetryInterval {
                if let key = state.keys[kid], (age ?? .infinity) < Self.maximumKeyStaleness { return .use(key) }
                return state.keys.isEmpty || (age ?? .infinity) >= Self.maximumKeyStaleness
                    ? .unavailable("the JWKS endpoint failed moments ago") : .unknown
            }
            // Unknown kids (Clerk may have rotated keys) cause at most one refetch per interval,
            // so a burst of forged tokens cannot become a flood of JWKS requests.
            if fresh {
                if let last = state.unknownKidFetchAt, current.timeIntervalSince(last) < Self.unknownKeyRefetchInterval { return .unknown }
                state.unknownKidFetchAt = current
            }
            let task = Task { try await self.fetchJWKS() }
            state.inFlight = task
            Task {
                let result = await task.result
                self.cache.withLock { state in
                    state.inFlight = nil
                    switch result {
                    case .success(let keys):
                        state.keys = keys
                        state.fetchedAt = self.now()
                        state.failedAt = nil
                    case .failure:
                        state.failedAt = self.now()
                    }
                }
            }
            return .await(task)
        }
        switch plan {
        case .use(let key):
            return key
        case .unknown:
            throw AuthError.unknownKey(kid.isEmpty ? "(none)" : kid)
        case .unavailable(let why):
            throw AuthError.keysUnavailable(why)
        case .await(let task):
            do {
                let keys = try await task.value
                guard let key = keys[kid] else { throw AuthError.unknownKey(kid.isEmpty ? "(none)" : kid) }
                return key
            } catch let error as AuthError where error != .unknownKey(kid.isEmpty ? "(none)" : kid) {
                // The refresh failed: keep verifying with the keys held, within bounded staleness.
                let held = cache.withLock { state -> (_RSA.Signing.PublicKey?, TimeInterval?) in
                    (state.keys[kid], state.fetchedAt.map { current.timeIntervalSince($0) })
                }
                if let key = held.0, let age = held.1, age < Self.maximumKeyStaleness {
                    logger.warning(
                        "Clerk JWKS refresh failed; verifying with keys fetched earlier",
                        metadata: [
                            "error.message": .string(error.description), "auth.keys.age.s": .stringConvertible(Int(age)),
                        ]
                    )
                    return key
                }
                throw error
            }
        }
    }

    private func fetchJWKS() async throws -> [String: _RSA.Signing.PublicKey] {
        guard let url = settings.jwksURL else { throw AuthError.keysUnavailable("no JWKS URL") }
        var headers = [("Accept", "application/json")]
        if let secret = settings.secretKey { headers.append(("Authorization", "Bearer \(secret)")) }
        let response: OutboundResponse
        do {
            response = try await http.send(OutboundRequest(method: "GET", url: url, headers: headers, timeout: 10))
        } catch {
            throw AuthError.keysUnavailable("\(error)")
        }
        guard response.status == 200 else { throw AuthError.keysUnavailable("JWKS endpoint answered \(response.status)") }
        guard let document = try? JSONDecoder().decode(JSONWebKeySet.self, from: response.body) else {
            throw AuthError.keysUnavailable("JWKS document has no keys")
        }
        var keys: [String: _RSA.Signing.PublicKey] = [:]
        for entry in document.keys where entry.kty == "RSA" {
            guard let n = entry.n.flatMap(Base64URL.decode), let e = entry.e.flatMap(Base64URL.decode),
                let key = try? _RSA.Signing.PublicKey(n: n, e: e)
            else { continue }
            keys[entry.kid ?? ""] = key
        }
        return keys
    }
}

/// A JWKS document (RFC 7517): the keys MyBA can use are RSA ones; others are skipped.
struct JSONWebKeySet: Decodable, Sendable {
    var keys: [Key]

    struct Key: Decodable, Sendable {
        var kty: String?
        var kid: String?
        var n: String?
        var e: String?

        enum CodingKeys: String, CodingKey { case kty, kid, n, e }

        /// One odd key (a field of another type) is skipped, not the whole set.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            kty = try? container.decodeIfPresent(String.self, forKey: .kty)
            kid = try? container.decodeIfPresent(String.self, forKey: .kid)
            n = try? container.decodeIfPresent(String.self, forKey: .n)
            e = try? container.decodeIfPresent(String.self, forKey: .e)
        }
    }
}

/// base64url without padding, as JWTs use it.
public enum Base64URL {
    public static func decode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base64.contains("=") else { return nil }
        while base64.count % 4 != 0 { base64.append("=") }
        return Data(base64Encoded: base64)
    }

    public static func encode(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (what `CharacterSet.whitespaces` holds:
    /// tab and the space separators).
    func trimmingHorizontalSpace() -> String {
        let scalars = unicodeScalars
        func isSpace(_ scalar: Unicode.Scalar) -> Bool { scalar == "\t" || scalar.properties.generalCategory == .spaceSeparator }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}
