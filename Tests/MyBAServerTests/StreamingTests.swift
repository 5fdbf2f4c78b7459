import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// `POST /api/generate` with `Accept: text/event-stream` (issue 16), against local providers that
/// stream as OpenRouter, OpenAI and Anthropic do.
@Suite("Streamed tickets")
struct StreamingTests {
    struct Event: Equatable {
        var name: String?
        var data: String
    }

    /// The events of a whole SSE body (comments dropped).
    static func events(_ body: String) -> [Event] {
        body.components(separatedBy: "\n\n").compactMap { block in
            var name: String?
            var data: [String] = []
            for line in block.split(separator: "\n") where !line.hasPrefix(":") {
                if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data.append(String(line.dropFirst(6))) }
            }
            return data.isEmpty ? nil : Event(name: name, data: data.joined(separator: "\n"))
        }
    }

    static func deltaText(_ events: [Event]) throws -> String {
        try events.filter { $0.name == "delta" }.map { try jsonObject($0.data)["text"] as? String ?? "" }.joined()
    }

    static let streamHeaders: HTTPFields = [.contentType: "application/json", .accept: "text/event-stream", .authorization: "Bearer dev:user_stream"]

    @Test(
        "OpenRouter's stream: delta events carry the provider's text as it comes, then exactly one ticket event with the plain answer's JSON; one token spent"
    )
    func openRouterStream() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["ok-json"])
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                try await client.execute(uri: "/api/generate", method: .post, headers: Self.streamHeaders, body: jsonBody(["input": "CSV export"])) {
                    response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType]?.hasPrefix("text/event-stream") == true)
                    let events = Self.events(String(buffer: response.body))
                    #expect(events.filter { $0.name == "delta" }.count >= 3)
                    #expect(try Self.deltaText(events) == "```json\n\(FakeUpstream.ticketJSON)\n```")
                    #expect(events.filter { $0.name == "ticket" }.count == 1 && events.last?.name == "ticket")
                    #expect(!events.contains { $0.name == "error" })
                    let ticket = try jsonObject(try #require(events.last).data)
                    #expect(ticket["provider"] as? String == "openrouter")
                    #expect(ticket["model"] as? String == "ok-json")
                    #expect(ticket["tokensRemaining"] as? Int == 5)
                    #expect((ticket["ticket"] as? [String: Any])?["title"] as? String == "Add CSV export to reports")
                    #expect(ticket["markdown"] as? String != nil)
                }
            }
            #expect(upstream.requests.first { $0.path == "openrouter" }?.body["stream"] as? Bool == true)
            let balance = try #require(try await fixture.database().ledger.balance(userId: "user_stream"))
            #expect((balance.tokens, balance.tokensUsed) == (5, 1))
        }
    }

    @Test("mock templates stream too; the caller's own OpenAI and Anthropic keys stream (no token spent)")
    func mockAndOwnKeys() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["ok-json"], key: nil)
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                try await client.execute(uri: "/api/generate", method: .post, headers: Self.streamHeaders, body: jsonBody(["input": "CSV export"])) {
                    response in
                    let events = Self.events(String(buffer: response.body))
                    #expect(events.filter { $0.name == "delta" }.count > 3)
                    let ticket = try jsonObject(try #require(events.last { $0.name == "ticket" }).data)
                    #expect(ticket["provider"] as? String == "mock")
                    let streamed = try JSONSerialization.jsonObject(with: Data(try Self.deltaText(events).utf8)) as? [String: Any]
                    #expect(streamed?["title"] as? String == (ticket["ticket"] as? [String: Any])?["title"] as? String)
                }
                for provider in ["openai", "anthropic"] {
                    let body = jsonBody(["input": "CSV export", "provider": provider, "apiKey": "sk-own-\(provider)-key", "model": "ok-json"])
                    try await client.execute(uri: "/api/generate", method: .post, headers: Self.streamHeaders, body: body) { response in
                        let events = Self.events(String(buffer: response.body))
                        #expect(events.filter { $0.name == "delta" }.count >= 3, "\(provider)")
                        let ticket = try jsonObject(try #require(events.last { $0.name == "ticket" }).data)
                        #expect(ticket["provider"] as? String == provider)
                        #expect((ticket["ticket"] as? [String: Any])?["title"] as? String == "Add CSV export to reports")
                    }
                }
            }
            #expect(try await fixture.database().ledger.balance(userId: "user_stream")?.tokensUsed == 1)
        }
    }

    @Test("a provider failing mid-stream: one error event, no ticket, no fallback to the next model after text went out, and the token is released")
    func midStreamFailure() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["stream-error-mid", "ok-json"])
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                try await client.execute(uri: "/api/generate", method: .post, headers: Self.streamHeaders, body: jsonBody(["input": "CSV export"])) {
                    response in
                    #expect(response.status == .ok)
                    let events = Self.events(String(buffer: response.body))
                    #expect(events.filter { $0.name == "delta" }.count == 2)
                    #expect(events.filter { $0.name == "error" }.count == 1 && events.last?.name == "error")
                    #expect(!events.contains { $0.name == "ticket" })
                    let error = try jsonObject(try #require(events.last).data)["error"] as? [String: Any]
                    #expect(error?["code"] as? String == "provider_error")
                    #expect(error?["requestId"] as? String != nil)
                }
                let body = jsonBody(["input": "CSV export", "provider": "anthropic", "apiKey": "sk-own-anthropic-key", "model": "stream-error-mid"])
                try await client.execute(uri: "/api/generate", method: .post, headers: Self.streamHeaders, body: body) { response in
                    let events = Self.events(String(buffer: response.body))
                    #expect(events.last?.name == "error" && !events.contains { $0.name == "ticket" })
                }
            }
            #expect(upstream.requests.filter { $0.path == "openrouter" }.count == 1)
            let balance = try #require(try await fixture.database().ledger.balance(userId: "user_stream"))
            #expect((balance.tokens, balance.tokensUsed) == (6, 0))
            #expect(try await fixture.database().ledger.verify().isClean)
        }
    }

    @Test("a failure before the token is charged is an ordinary JSON error answer, not a stream")
    func earlyErrorsAreNotStreams() async throws {
        let fixture = try ServerFixture()
        defer { fixture.directory.remove() }
        try await fixture.application().test(.router) { client in
            try await client.execute(uri: "/api/generate", method: .post, headers: Self.streamHeaders, body: jsonBody(["input": "   "])) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                #expect(response.errorCode == "invalid_input")
            }
        }
    }

    @Test(
        "a client that disconnects mid-stream: the generation finishes and is stored, charged once; a retry with the same Idempotency-Key gets the ticket"
    )
    func disconnectMidStream() async throws {
        let upstream = FakeUpstream()
        try await upstream.run { base in
            let fixture = try providerFixture(upstream: base, models: ["ok-json"])
            defer { fixture.directory.remove() }
            try await fixture.application().test(.live) { client in
                let port = try #require(client.port)
                let body = #"{"input":"CSV export"}"#
                let request =
                    "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
                    + "Authorization: Bearer dev:user_gone\r\nIdempotency-Key: gone-1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                // Read until the first delta has arrived, then hang up (on a thread of its own: the
                // reads block).
                let received = try await onOwnThread { () -> String in
                    guard let socket = HostileClientTests.stalledConnection(port: port, sending: request) else { return "" }
                    defer { close(socket) }
                    var received = ""
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    let deadline = ContinuousClock.now + .seconds(20)
                    while !received.contains("event: delta") && ContinuousClock.now < deadline {
                        let count = recv(socket, &buffer, buffer.count, 0)
                        if count <= 0 { break }
                        received += String(decoding: buffer[..<count], as: UTF8.self)
                    }
                    return received
                }
                #expect(received.contains("event: delta"))
                #expect(!received.contains("event: ticket"))

                var status: String?
                for _ in 0..<100 where status != "completed" {
                    try await Task.sleep(for: .milliseconds(50))
                    status = try await fixture.database().writerForTests.read { db in
                        try String.fetchOne(db, sql: "SELECT status FROM generations WHERE idempotency_key LIKE '%gone-1'")
                    }
                }
                #expect(status == "completed")
                var headers = Self.streamHeaders
                headers[.authorization] = "Bearer dev:user_gone"
                headers[HTTPField.Name("Idempotency-Key")!] = "gone-1"
                try await client.execute(uri: "/api/generate", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
                    let events = Self.events(String(buffer: response.body))
                    #expect(events.map(\.name) == ["ticket"])
                    let replayed = try jsonObject(try #require(events.first).data)
                    #expect(replayed["tokensRemaining"] as? Int == 5)
                }
            }
            #expect(upstream.requests.filter { $0.path == "openrouter" }.count == 1)
            let balance = try #require(try await fixture.database().ledger.balance(userId: "user_gone"))
            #expect((balance.tokens, balance.tokensUsed) == (5, 1))
        }
    }
}
