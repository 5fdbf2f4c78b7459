import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// `/api/generate` against local servers that speak OpenRouter's, OpenAI's and Anthropic's wire
/// formats, including their failures.
@Suite("AI providers")
struct ProviderTests {

    @Test("the model chain falls through 429, 500, a timeout and HTTP 200 with an error body to the first model that answers; one token is spent")
    func fallbackChain() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            // 2 s per call: "slow" (3 s) times out, and a loaded machine still answers the others in time.
            let fixture = try providerFixture(upstream: base, models: ["fail-429", "fail-500", "slow", "error-200", "ok-json"], timeout: 2)
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: bearer("dev:user_ai"),
                    body: jsonBody(["input": "Export reports as CSV"])
                ) { response in
                    #expect(response.status == .ok)
                    let body = try response.json
                    #expect(body["provider"] as? String == "openrouter")
                    #expect(body["model"] as? String == "ok-json")
                    #expect(body["tokensRemaining"] as? Int == 5)
                    let ticket = try #require(body["ticket"] as? [String: Any])
                    #expect(ticket["title"] as? String == "Add CSV export to reports")
                    #expect(ticket["priority"] as? String == "High")
                    #expect(ticket["storyPoints"] as? Int == 5)
                    #expect(ticket["labels"] as? [String] == ["reports", "export"])
                    #expect((ticket["acceptanceCriteria"] as? [String])?.count == 2)
                }
            }
            let calls = upstream.requests.filter { $0.path == "openrouter" }
            #expect(calls.map { $0.body["model"] as? String } == ["fail-429", "fail-500", "slow", "error-200", "ok-json"])
            let first = try #require(calls.first)
            #expect(first.headers["authorization"] == "Bearer sk-or-server-secret-123")
            #expect(first.headers["http-referer"] == "https://myba.example")
            #expect(first.headers["x-title"] == "MyBA")
            let messages = try #require(first.body["messages"] as? [[String: String]])
            #expect(messages.map { $0["role"] } == ["system", "user"])
            #expect(messages.last?["content"] == "Export reports as CSV")
            let balance = try #require(try await fixture.database().ledger.balance(userId: "user_ai"))
            #expect(balance.tokensUsed == 1)
            #expect(fixture.logs.all.allSatisfy { !$0.contains("sk-or-server-secret-123") })
        }
    }

    @Test("when every model fails the token is released and the answer is 502; an anonymous session gets its token back too")
    func allFail() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["fail-500", "error-200"])
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: bearer("dev:user_unlucky"),
                    body: jsonBody(["input": "Anything"])
                ) { response in
                    #expect(response.status == .badGateway)
                    #expect(response.errorCode == "provider_error")
                }
                let session = try await client.execute(
                    uri: "/api/anonymous-session",
                    method: .post,
                    headers: jsonHeaders,
                    body: jsonBody(["fingerprint": "fp-unlucky"])
                ) { try $0.json }
                let sessionId = try #require(session["sessionId"] as? String)
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: jsonHeaders,
                    body: jsonBody(["input": "Anything", "sessionId": sessionId])
                ) { response in
                    #expect(response.status == .badGateway)
                }
                let after = try await client.execute(
                    uri: "/api/anonymous-session",
                    method: .post,
                    headers: jsonHeaders,
                    body: jsonBody(["fingerprint": "fp-unlucky"])
                ) { try $0.json }
                #expect(after["tokensRemaining"] as? Int == 3)
            }
            let database = try fixture.database()
            let balance = try #require(try await database.ledger.balance(userId: "user_unlucky"))
            #expect(balance.tokens == 6)
            #expect(balance.tokensUsed == 0)
            let kinds = try await database.ledger.entries(userId: "user_unlucky", limit: 10).map(\.kind)
            #expect(kinds == [.release, .consume, .welcome])
            #expect(try await database.ledger.verify().isClean)
        }
    }

    @Test("a server key refused with 401 stops the chain at once")
    func nonRetryable() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["fail-401", "ok-json"])
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                try await client.execute(uri: "/api/generate", method: .post, headers: bearer("dev:user_x"), body: jsonBody(["input": "Anything"])) {
                    response in
                    #expect(response.status == .badGateway)
                    #expect(!String(buffer: response.body).contains("sk-or-server-secret-123"))
                }
            }
            #expect(upstream.requests.filter { $0.path == "openrouter" }.count == 1)
            #expect(fixture.logs.all.allSatisfy { !$0.contains("sk-or-server-secret-123") })
        }
    }

    @Test("a Markdown answer is parsed into the ticket fields")
    func markdownAnswer() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["ok-markdown"])
            defer { fixture.directory.remove() }
            try await fixture.application().test(.router) { client in
                try await client.execute(uri: "/api/generate", method: .post, headers: bearer("dev:user_md"), body: jsonBody(["input": "CSV export"]))
                { response in
                    let ticket = try #require(try response.json["ticket"] as? [String: Any])
                    #expect(ticket["title"] as? String == "Add CSV export to reports")
                    #expect(ticket["description"] as? String == "Users need to export report tables as CSV.")
                    #expect(ticket["acceptanceCriteria"] as? [String] == ["An Export button downloads the table as CSV", "Columns match the table"])
                    #expect(ticket["priority"] as? String == "Low")
                    #expect(ticket["storyPoints"] as? Int == 2)
                    #expect(ticket["labels"] as? [String] == ["reports", "export"])
                }
            }
        }
    }

    @Test("the caller's own OpenAI or Anthropic key costs no token and is never logged, stored or echoed")
    func ownKeys() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["ok-json"])
            defer { fixture.directory.remove() }
            let openAIKey = "sk-proj-user-own-key-abcdef123456"
            let anthropicKey = "sk-ant-user-own-key-987654"
            try await fixture.application().test(.router) { client in
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: bearer("dev:user_own"),
                    body: jsonBody(["input": "CSV export", "provider": "openai", "apiKey": openAIKey, "model": "gpt-test"])
                ) { response in
                    #expect(response.status == .ok)
                    let body = try response.json
                    #expect(body["provider"] as? String == "openai")
                    #expect(body["model"] as? String == "gpt-test")
                    #expect(body["tokensRemaining"] as? Int == 6)
                    #expect(!String(buffer: response.body).contains(openAIKey))
                }
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: bearer("dev:user_own"),
                    body: jsonBody(["input": "CSV export", "provider": "anthropic", "apiKey": anthropicKey])
                ) { response in
                    #expect(response.status == .ok)
                    let body = try response.json
                    #expect(body["provider"] as? String == "anthropic")
                }
                for (provider, key) in [("openai", openAIKey), ("anthropic", anthropicKey)] {
                    try await client.execute(
                        uri: "/api/generate",
                        method: .post,
                        headers: bearer("dev:user_own"),
                        body: jsonBody(["input": "CSV export", "provider": provider, "apiKey": key, "model": "fail-401"])
                    ) { response in
                        #expect(response.status == .badGateway)
                        #expect(!String(buffer: response.body).contains(key))
                    }
                }
                try await client.execute(
                    uri: "/api/generate",
                    method: .post,
                    headers: bearer("dev:user_own"),
                    body: jsonBody(["input": "CSV export", "provider": "anthropic", "apiKey": anthropicKey, "model": "overloaded"])
                ) { response in
                    #expect(response.status == .badGateway)
                    #expect(response.errorCode == "provider_error")
                }
            }
            let openAICall = try #require(upstream.requests.first { $0.path == "openai" })
            #expect(openAICall.headers["authorization"] == "Bearer \(openAIKey)")
            let anthropicCall = try #require(upstream.requests.first { $0.path == "anthropic" })
            #expect(anthropicCall.headers["x-api-key"] == anthropicKey)
            #expect(anthropicCall.headers["anthropic-version"] == "2023-06-01")
            #expect((anthropicCall.body["max_tokens"] as? Int ?? 0) > 0)
            #expect((anthropicCall.body["system"] as? String)?.contains("JSON") == true)

            let database = try fixture.database()
            #expect(try await database.ledger.balance(userId: "user_own")?.tokens == 6)
            #expect(fixture.logs.all.allSatisfy { !$0.contains(openAIKey) && !$0.contains(anthropicKey) })
            let stored = try await database.writerForTests.read { db in
                try String.fetchAll(db, sql: "SELECT COALESCE(response, '') || COALESCE(error, '') FROM generations")
            }
            #expect(stored.allSatisfy { !$0.contains(openAIKey) && !$0.contains(anthropicKey) })
        }
    }
}
