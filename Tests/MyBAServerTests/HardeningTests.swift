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
    @Test(
        "Clerk keys that cannot be had answer 503 auth_unavailable with Retry-After (the server's problem), not 401; the upstream's words are not echoed"
    )
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
                try await client.execute(uri: "/api/user-tokens/user_2abc", method: .get, headers: [.authorization: "Bearer \(try signer.token())"]) {
                    response in
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

@Suite("Upstream words and secrets")
struct UpstreamTextTests {
    @Test("a provider error quoting the key it was sent: the API answers a generic 502 (no upstream text, no key), and the key reaches no log line")
    func providerErrorNotEchoed() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try ServerFixture { settings in
                settings.ai.openRouterKey = "sk-or-server-secret-123"
                settings.ai.models = ["fail-401"]
                settings.ai.openRouterBase = base.appendingPathComponent("api/v1")
                settings.ai.openAIBase = base.appendingPathComponent("v1")
                settings.ai.timeoutSeconds = 10
            }
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                for (provider, key) in [("myba", nil), ("openai", "sk-user-own-key-456")] as [(String, String?)] {
                    var body: [String: Any] = ["input": "Anything", "provider": provider]
                    if let key {
                        body["apiKey"] = key
                        body["model"] = "fail-401"
                    }
                    try await client.execute(uri: "/api/generate", method: .post, headers: bearer("dev:user_leak"), body: jsonBody(body)) {
                        response in
                        #expect(response.status == .badGateway)
                        let text = String(buffer: response.body)
                        #expect(!text.contains("sk-or-server") && !text.contains("sk-user-own") && !text.contains("Incorrect API key"), "\(text)")
                    }
                }
            }
            let logs = fixture.logs.all.joined(separator: "\n")
            #expect(!logs.contains("sk-or-server-secret-123") && !logs.contains("sk-user-own-key-456"))
            #expect(logs.contains("provider_error"))
        }
    }

    @Test("secret masking covers NAME=value, Bearer tokens, JWTs and keys inside quotes, and leaves ordinary words alone")
    func masking() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.c2lnbmF0dXJl"
        #expect(Secrets.mask("export STRIPE_SECRET_KEY=sk_live_abcdef") == "export STRIPE_SECRET_KEY=***")
        #expect(Secrets.mask("MYBA_METRICS_TOKEN=hunter2hunter2hunter2 run") == "MYBA_METRICS_TOKEN=*** run")
        #expect(Secrets.mask("curl -H Authorization: Bearer \(jwt)") == "curl -H Authorization: Bearer ***")
        #expect(Secrets.mask("token \(jwt) seen") == "token *** seen")
        #expect(Secrets.mask("--reason \"rotated 'whsec_abcdefgh' today\"") == "--reason \"rotated '***' today\"")
        #expect(Secrets.mask("{\"key\":\"sk_test_abcdef\"}") == "{\"key\":\"***\"}")
        #expect(
            Secrets.mask("tokens adjust user_2abc --delta 5 --reason \"risk-free goodwill, task-sk\"")
                == "tokens adjust user_2abc --delta 5 --reason \"risk-free goodwill, task-sk\""
        )
    }
}
