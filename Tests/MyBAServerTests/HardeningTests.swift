import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Testing
@testable import MyBAOps
@testable import MyBAServer

/// What an attacker or a broken dependency meets before the ledger (issue 15), over HTTP.
@Suite("Hardening over HTTP")
struct HardeningTests {
    @Test("Clerk keys that cannot be had answer 503 auth_unavailable with Retry-After (the server's problem), not 401; the upstream's words are not echoed")
    func keysUnavailableIs503() async throws {
        let upstream = FakeUpstream()
        upstream.jwksBehaviour.withLock { $0 = "fail" }
        let signer = try TokenFactory(kid: "kid_one")
        try await upstream.run { base in
            let fixture = try ServerFixture { settings in
                settings.auth.jwksURL = base.appendingPathComponent("v1/jwks")
                settings.auth.secretKey = "sk_test_clerk_secret"
            }
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                try await client.execute(uri: "/api/user-tokens/user_2abc", method: .get, headers: [.authorization: "Bearer \(try signer.token())"]) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(response.headers[.retryAfter] != nil)
                    let error = try #require(try response.json["error"] as? [String: Any])
                    #expect(error["code"] as? String == "auth_unavailable")
                    #expect(!(error["message"] as? String ?? "").contains("500"))
                }
            }
        }
    }
}
