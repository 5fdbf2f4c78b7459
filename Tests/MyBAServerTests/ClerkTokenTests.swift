import Foundation
import MyBATestSupport
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
            http: CurlHTTPClient())
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
        await #expect(throws: AuthError.unauthorizedParty("https://evil.example")) { try await verifier.verify(token: try factory.token(azp: "https://evil.example")) }
        _ = try await verifier.verify(token: try factory.token(azp: nil))
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
            _ = try ClerkTokenVerifier(settings: AuthSettings(jwtPublicKeyPEM: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"), http: CurlHTTPClient())
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
            let verifier = try ClerkTokenVerifier(
                settings: AuthSettings(secretKey: "sk_test_clerk", jwksURL: base.appendingPathComponent("v1/jwks")),
                http: CurlHTTPClient())
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
}
