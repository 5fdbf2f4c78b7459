import Foundation
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

@Suite("Clerk session tokens")
struct ClerkTokenTests {
    let factory: TokenFactory
    let verifier: ClerkTokenVerifier

    init() throws {
        factory = try TokenFactory()
        verifier = try ClerkTokenVerifier(
            settings: AuthSettings(jwtPublicKeyPEM: factory.publicKeyPEM, authorizedParties: ["http://localhost:5173"]),
            http: CurlHTTPClient()
        )
    }

    @Test("a valid RS256, RS384 or RS512 token yields its sub as the user id")
    func valid() async throws {
        for alg in ["RS256", "RS384", "RS512"] {
            let user = try await verifier.verify(token: try factory.token(alg: alg))
            #expect(user == AuthenticatedUser(userId: "user_2abc", isDevelopment: false))
        }
        let viaHeader = try await verifier.authenticate(authorizationHeader: "Bearer \(try factory.token())")
        #expect(viaHeader.userId == "user_2abc")
        // Spaces and tabs around the header and the token are tolerated, as proxies add them.
        let padded = try await verifier.authenticate(authorizationHeader: " \tbearer  \(try factory.token())\t\u{A0}")
        #expect(padded.userId == "user_2abc")
    }

    @Test("expired, not-yet-valid and future-issued tokens are refused, within 5 s of skew")
    func timing() async throws {
        await #expect(throws: AuthError.expired) { try await verifier.verify(token: try factory.token(exp: -6)) }
        _ = try await verifier.verify(token: try factory.token(exp: -3))
        await #expect(throws: AuthError.notYetValid) { try await verifier.verify(token: try factory.token(nbf: 30)) }
        _ = try await verifier.verify(token: try factory.token(nbf: 3))
        await #expect(throws: AuthError.issuedInFuture) { try await verifier.verify(token: try factory.token(iat: 30)) }
    }

    @Test("wrong key, alg none, HS256 with the public key, and tampering are refused")
    func forgeries() async throws {
        let other = try TokenFactory()
        await #expect(throws: AuthError.badSignature) { try await verifier.verify(token: try other.token()) }
        await #expect(throws: AuthError.unsupportedAlgorithm("none")) { try await verifier.verify(token: try factory.token(alg: "none")) }
        await #expect(throws: AuthError.unsupportedAlgorithm("HS256")) { try await verifier.verify(token: try factory.token(alg: "HS256")) }
        // Swap the payload for another user's, keeping the signature.
        let genuine = try factory.token(sub: "user_victim").split(separator: ".")
        let forged = try factory.token(sub: "user_attacker").split(separator: ".")
        await #expect(throws: AuthError.badSignature) { try await verifier.verify(token: "\(genuine[0]).\(forged[1]).\(genuine[2])") }
    }

    @Test("missing sub, a wrong typ, an unauthorized azp and garbage are refused")
    func claims() async throws {
        await #expect(throws: AuthError.missingSubject) { try await verifier.verify(token: try factory.token(sub: nil)) }
        await #expect(throws: AuthError.malformed("typ must be JWT")) { try await verifier.verify(token: try factory.token(typ: "at+jwt")) }
        await #expect(throws: AuthError.unauthorizedParty("https://evil.example")) {
            try await verifier.verify(token: try factory.token(azp: "https://evil.example"))
        }
        await #expect(throws: AuthError.unauthorizedParty("(none)")) { try await verifier.verify(token: try factory.token(azp: nil)) }
        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!!.???.***"] {
            await #expect(throws: AuthError.self) { try await verifier.verify(token: garbage) }
        }
        await #expect(throws: AuthError.missingToken) { try await verifier.authenticate(authorizationHeader: nil) }
        await #expect(throws: AuthError.missingToken) { try await verifier.authenticate(authorizationHeader: " \t ") }
        await #expect(throws: AuthError.self) { try await verifier.authenticate(authorizationHeader: "Bearer") }
        await #expect(throws: AuthError.self) { try await verifier.authenticate(authorizationHeader: "Basic dXNlcjpwYXNz") }
    }

    @Test("dev tokens work only when no Clerk key is configured")
    func developmentTokens() async throws {
        await #expect(throws: AuthError.developmentTokenRejected) { try await verifier.verify(token: "dev:user_1") }
        let development = try ClerkTokenVerifier(settings: AuthSettings(), http: CurlHTTPClient())
        #expect(development.isDevelopmentMode)
        #expect(try await development.verify(token: "dev:user_1") == AuthenticatedUser(userId: "user_1", isDevelopment: true))
        await #expect(throws: AuthError.self) { try await development.verify(token: "dev:") }
        await #expect(throws: AuthError.self) { try await development.verify(token: try factory.token()) }
    }

    @Test("a PEM that is not an RSA public key stops start-up naming CLERK_JWT_KEY")
    func badPEM() throws {
        let error = try #require(throws: SettingsError.self) {
            _ = try ClerkTokenVerifier(
                settings: AuthSettings(jwtPublicKeyPEM: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"),
                http: CurlHTTPClient()
            )
        }
        #expect(error.variable == "CLERK_JWT_KEY")
    }

    @Test("keys come from a JWKS endpoint with the secret key, are cached, and refetched for a new kid")
    func jwks() async throws {
        let upstream = FakeUpstream()
        let first = try TokenFactory(kid: "kid_one")
        let rotated = try TokenFactory(kid: "kid_two")
        upstream.jwks.withLock { $0 = [first.jwk] }
        try await upstream.run { base in
            // The verifier's clock stands still: a loaded machine must not stretch the test past
            // the unknown-kid interval.
            let clock = TestClock()
            let verifier = try ClerkTokenVerifier(
                settings: AuthSettings(secretKey: "sk_test_clerk", jwksURL: base.appendingPathComponent("v1/jwks")),
                http: CurlHTTPClient(),
                now: { clock.now }
            )
            _ = try await verifier.verify(token: try first.token())
            _ = try await verifier.verify(token: try first.token(sub: "user_other"))
            #expect(upstream.requests.filter { $0.path == "/v1/jwks" }.count == 1)
            #expect(upstream.requests.first?.headers["authorization"] == "Bearer sk_test_clerk")
            // Clerk rotates: a token with an unseen kid makes one refetch.
            upstream.jwks.withLock { $0 = [first.jwk, rotated.jwk] }
            _ = try await verifier.verify(token: try rotated.token())
            #expect(upstream.requests.filter { $0.path == "/v1/jwks" }.count == 2)
            // An unknown kid right after does not hammer the endpoint.
            let stranger = try TokenFactory(kid: "kid_unknown")
            await #expect(throws: AuthError.unknownKey("kid_unknown")) { try await verifier.verify(token: try stranger.token()) }
            #expect(upstream.requests.filter { $0.path == "/v1/jwks" }.count == 2)
        }
    }

    /// A clock the test moves.
    /// A clock the test moves, and which otherwise stands still.
    final class TestClock: Sendable {
        let current = Mutex<Date>(Date())
        func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
        var now: Date { current.withLock { $0 } }
    }

    @Test(
        "JWKS refresh: one fetch for 50 requests that find the cache stale; a failing endpoint leaves the held keys in use (bounded), is not retried per request, and with no usable keys it is keysUnavailable"
    )
    func jwksRefreshUnderLoadAndFailure() async throws {
        let upstream = FakeUpstream()
        let signer = try TokenFactory(kid: "kid_one")
        upstream.jwks.withLock { $0 = [signer.jwk] }
        try await upstream.run { base in
            let clock = TestClock()
            let verifier = try ClerkTokenVerifier(
                settings: AuthSettings(secretKey: "sk_test_clerk", jwksURL: base.appendingPathComponent("v1/jwks")),
                http: CurlHTTPClient(),
                now: { clock.now }
            )
            func fetches() -> Int { upstream.requests.filter { $0.path == "/v1/jwks" }.count }
            _ = try await verifier.verify(token: try signer.token())
            #expect(fetches() == 1)

            // Stale: 50 requests at once, a slow endpoint, one fetch.
            clock.advance(ClerkTokenVerifier.jwksCacheLifetime + 1)
            upstream.jwksBehaviour.withLock { $0 = "slow" }
            let token = try signer.token(now: clock.now)
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<50 { group.addTask { try await verifier.verify(token: token).userId } }
                for try await user in group { #expect(user == "user_2abc") }
            }
            #expect(fetches() == 2)

            // Stale again and the endpoint fails: the held keys still verify, and the failure is
            // not retried by every request.
            clock.advance(ClerkTokenVerifier.jwksCacheLifetime + 1)
            upstream.jwksBehaviour.withLock { $0 = "fail" }
            for _ in 0..<20 { _ = try await verifier.verify(token: try signer.token(now: clock.now)) }
            #expect(fetches() == 3)

            // Past the bound on staleness, with the endpoint still down: unavailable, not 401.
            clock.advance(ClerkTokenVerifier.maximumKeyStaleness)
            await #expect(throws: AuthError.self) { try await verifier.verify(token: try signer.token(now: clock.now)) }
            do {
                _ = try await verifier.verify(token: try signer.token(now: clock.now))
                Issue.record("verified with keys past their staleness bound")
            } catch let error as AuthError {
                guard case .keysUnavailable = error else {
                    Issue.record("expected keysUnavailable, got \(error)")
                    return
                }
            }
        }
    }

    @Test("a burst of 100 forged tokens with unknown kids makes at most one JWKS refetch")
    func unknownKidBurst() async throws {
        let upstream = FakeUpstream()
        let signer = try TokenFactory(kid: "kid_one")
        upstream.jwks.withLock { $0 = [signer.jwk] }
        try await upstream.run { base in
            let verifier = try ClerkTokenVerifier(
                settings: AuthSettings(secretKey: "sk_test_clerk", jwksURL: base.appendingPathComponent("v1/jwks")),
                http: CurlHTTPClient()
            )
            _ = try await verifier.verify(token: try signer.token())
            let forged = try (0..<100).map { try TokenFactory(kid: "kid_forged_\($0 % 7)").token() }
            await withTaskGroup(of: Void.self) { group in
                for token in forged { group.addTask { _ = try? await verifier.verify(token: token) } }
            }
            #expect(upstream.requests.filter { $0.path == "/v1/jwks" }.count <= 2)
        }
    }

    @Test("iss must be the instance's (CLERK_ISSUER, or derived from a frontend-API JWKS URL); with authorized parties set, azp is required")
    func issuerAndParty() async throws {
        let upstream = FakeUpstream()
        let signer = try TokenFactory(kid: "kid_one")
        upstream.jwks.withLock { $0 = [signer.jwk] }
        try await upstream.run { base in
            let jwks = base.appendingPathComponent(".well-known/jwks.json")
            let derived = try ClerkTokenVerifier(settings: AuthSettings(jwksURL: jwks), http: CurlHTTPClient())
            #expect(derived.issuer == base.absoluteString)
            _ = try await derived.verify(token: try signer.token(iss: base.absoluteString))
            await #expect(throws: AuthError.wrongIssuer("https://clerk.example.com")) { try await derived.verify(token: try signer.token()) }
        }
        var settings = AuthSettings(jwtPublicKeyPEM: factory.publicKeyPEM, authorizedParties: ["http://localhost:5173"])
        settings.issuer = "https://clerk.example.com"
        let strict = try ClerkTokenVerifier(settings: settings, http: CurlHTTPClient())
        _ = try await strict.verify(token: try factory.token())
        await #expect(throws: AuthError.unauthorizedParty("(none)")) { try await strict.verify(token: try factory.token(azp: nil)) }
        await #expect(throws: AuthError.wrongIssuer("https://evil.example")) {
            try await strict.verify(token: try factory.token(iss: "https://evil.example"))
        }
    }

    /// Tokens made outside the project (PyJWT), so a bug shared by our encoder and our verifier
    /// cannot hide: every verdict with the clock pinned to the vectors' `now`.
    @Test("the verifier gives each Clerk token made by PyJWT its verdict (Tests/Fixtures/clerk-session-tokens.json), from a JWKS and from the PEM")
    func externalVectors() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/clerk-session-tokens.json"))
        let vectors = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let now = Date(timeIntervalSince1970: try #require(vectors["now"] as? Double))
        let issuer = try #require(vectors["issuer"] as? String)
        let parties = try #require(vectors["authorizedParties"] as? [String])
        // (name, token, valid, why), Sendable for the server's closure.
        let tokens = try #require(vectors["tokens"] as? [[String: Any]]).map {
            ($0["name"] as? String ?? "?", $0["token"] as? String ?? "", $0["valid"] as? Bool == true, $0["why"] as? String ?? "")
        }
        let pem = try #require(vectors["publicKeyPEM"] as? String)
        let upstream = FakeUpstream()
        // The stand-in serves string members only (`key_ops`, an array, is not needed to verify).
        let keys = try #require((vectors["jwks"] as? [String: Any])?["keys"] as? [[String: Any]]).map { $0.compactMapValues { $0 as? String } }
        upstream.jwks.withLock { $0 = keys }
        try await upstream.run { base in
            var fromJWKS = AuthSettings(secretKey: "sk_test_vectors", jwksURL: base.appendingPathComponent("v1/jwks"), authorizedParties: parties)
            fromJWKS.issuer = issuer
            var fromPEM = AuthSettings(jwtPublicKeyPEM: pem, authorizedParties: parties)
            fromPEM.issuer = issuer
            for settings in [fromJWKS, fromPEM] {
                let verifier = try ClerkTokenVerifier(settings: settings, http: CurlHTTPClient(), now: { now })
                // A PEM carries no key id: a token signed by that key verifies whatever kid it
                // names (as Clerk's SDKs do with a jwtKey); the kid verdict is the JWKS's.
                for (name, token, valid, why) in tokens where settings.jwtPublicKeyPEM == nil || why != "kid" {
                    let outcome: Result<AuthenticatedUser, any Error>
                    do { outcome = .success(try await verifier.verify(token: token)) } catch { outcome = .failure(error) }
                    switch (valid, outcome) {
                    case (true, .success(let user)): #expect(user.userId.hasPrefix("user_"), "\(name)")
                    case (false, .failure(let error)): #expect(error is AuthError, "\(name): \(error)")
                    case (true, .failure(let error)): Issue.record("\(name) must verify, refused: \(error)")
                    case (false, .success): Issue.record("\(name) must be refused (\(why)), but verified")
                    }
                }
            }
        }
    }
}
