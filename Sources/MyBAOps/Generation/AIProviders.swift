import Foundation
import Synchronization

/// A provider call that failed; `retryable` failures move on to the next model in the chain.
public struct ProviderError: Error, CustomStringConvertible, Sendable {
    public var provider: String
    public var status: Int?
    public var message: String
    public var retryable: Bool

    public var description: String {
        "\(provider)\(status.map { " (HTTP \($0))" } ?? ""): \(message)"
    }
}

/// The instructions every provider gets.
enum TicketPrompt {
    static let system = """
        You are MyBA, a business analyst who turns a request into one agile work ticket.
        Reply with only a JSON object, no prose, with these keys:
        "title" (short imperative sentence), "description" (2-5 sentences),
        "acceptanceCriteria" (array of 3-6 testable statements), "priority" ("Low", "Medium", "High" or "Critical"),
        "storyPoints" (one of 1, 2, 3, 5, 8, 13), "labels" (array of 1-4 lowercase words).
        """
}

/// Chat-completions over HTTP: OpenRouter and OpenAI speak the same wire format.
struct ChatCompletionsClient: Sendable {
    let providerName: String
    let baseURL: URL
    let apiKey: String
    let extraHeaders: [(String, String)]
    let timeout: TimeInterval
    let http: any OutboundHTTPClient

    func complete(model: String, input: String) async throws -> String {
        let body = ChatCompletionsRequest(model: model, messages: Self.messages(input))
        let response = try await send(body: body)
        guard let reply = ProviderWire.decode(ChatCompletionsReply.self, from: response.body) else {
            throw ProviderError(provider: providerName, status: response.status, message: "reply is not JSON", retryable: response.status >= 500)
        }
        // OpenRouter reports some generation failures with HTTP 200 and an `error` object.
        if let error = reply.error {
            let code = error.code ?? response.status
            let message = error.message ?? "unknown error"
            throw ProviderError(
                provider: providerName,
                status: code,
                message: message,
                retryable: code == 429 || code >= 500 || response.status == 200
            )
        }
        guard (200..<300).contains(response.status) else {
            throw ProviderError(
                provider: providerName,
                status: response.status,
                message: "unexpected status",
                retryable: response.status >= 500 || response.status == 429
            )
        }
        guard let content = reply.choices?.first?.message?.content, !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else {
            throw ProviderError(provider: providerName, status: response.status, message: "reply has no choices[0].message.content", retryable: true)
        }
        return content
    }

    /// The same call with `stream: true`: each piece of text goes to `onDelta` as the provider
    /// writes it (SSE `data:` lines, keep-alive comments skipped, `[DONE]` at the end); an
    /// `error` object in the stream (OpenRouter's mid-stream failures) fails the call.
    func stream(model: String, input: String, onDelta: @escaping @Sendable (String) -> Void) async throws -> String {
        let body = ChatCompletionsRequest(model: model, messages: Self.messages(input), stream: true)
        let reply = StreamedReply()
        @Sendable func handle(_ events: [ServerSentEventParser.Event]) {
            for event in events where event.data != "[DONE]" {
                guard let chunk = ProviderWire.decode(ChatCompletionsReply.self, from: Data(event.data.utf8)) else { continue }
                if let error = chunk.error {
                    reply.fail(code: error.code, message: error.message ?? "error in stream")
                    continue
                }
                guard let content = chunk.choices?.first?.delta?.content else { continue }
                if reply.append(content) { onDelta(content) }
            }
        }
        let response = try await send(body: body) { chunk in handle(reply.events(from: chunk)) }
        handle(reply.lastEvents())
        return try reply.text(provider: providerName, response: response)
    }

    static func messages(_ input: String) -> [ChatMessage] {
        [ChatMessage(role: "system", content: TicketPrompt.system), ChatMessage(role: "user", content: input)]
    }

    private func send(body: ChatCompletionsRequest, onChunk: (@Sendable ([UInt8]) -> Void)? = nil) async throws -> OutboundResponse {
        var headers = [("Authorization", "Bearer \(apiKey)"), ("Content-Type", "application/json")]
        headers += extraHeaders
        let request = OutboundRequest(
            method: "POST",
            url: baseURL.appendingPathComponent("chat/completions"),
            headers: headers,
            body: try ProviderWire.encode(body),
            timeout: timeout
        )
        do {
            if let onChunk { return try await http.send(request, onChunk: onChunk) }
            return try await http.send(request)
        } catch {
            throw ProviderError(provider: providerName, status: nil, message: "\(error)", retryable: true)
        }
    }
}

/// Anthropic's Messages API.
struct AnthropicClient: Sendable {
    let baseURL: URL
    let apiKey: String
    let timeout: TimeInterval
    let http: any OutboundHTTPClient

    func complete(model: String, input: String) async throws -> String {
        let body = AnthropicRequest(model: model, system: TicketPrompt.system, messages: [ChatMessage(role: "user", content: input)])
        let request = OutboundRequest(
            method: "POST",
            url: baseURL.appendingPathComponent("messages"),
            headers: [("x-api-key", apiKey), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
            body: try ProviderWire.encode(body),
            timeout: timeout
        )
        let response: OutboundResponse
        do {
            response = try await http.send(request)
        } catch {
            throw ProviderError(provider: "anthropic", status: nil, message: "\(error)", retryable: true)
        }
        guard (200..<300).contains(response.status) else {
            let message = ProviderWire.decode(ProviderErrorEnvelope.self, from: response.body)?.error?.message ?? "unexpected status"
            throw ProviderError(
                provider: "anthropic",
                status: response.status,
                message: message,
                retryable: response.status == 429 || response.status >= 500
            )
        }
        guard let blocks = ProviderWire.decode(AnthropicReply.self, from: response.body)?.content,
            let text = blocks.first(where: { $0.type == "text" || $0.text != nil })?.text
        else { throw ProviderError(provider: "anthropic", status: response.status, message: "reply has no content[0].text", retryable: true) }
        return text
    }
}

extension AnthropicClient {
    /// The streaming Messages API: `content_block_delta` events carry the text (`text_delta`),
    /// an `error` event fails the call, `message_stop` ends it.
    func stream(model: String, input: String, onDelta: @escaping @Sendable (String) -> Void) async throws -> String {
        let body = AnthropicRequest(
            model: model,
            system: TicketPrompt.system,
            messages: [ChatMessage(role: "user", content: input)],
            stream: true
        )
        let request = OutboundRequest(
            method: "POST",
            url: baseURL.appendingPathComponent("messages"),
            headers: [("x-api-key", apiKey), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
            body: try ProviderWire.encode(body),
            timeout: timeout
        )
        let reply = StreamedReply()
        @Sendable func handle(_ events: [ServerSentEventParser.Event]) {
            for event in events {
                guard let object = ProviderWire.decode(AnthropicStreamEvent.self, from: Data(event.data.utf8)) else { continue }
                switch object.type ?? event.name {
                case "error":
                    reply.fail(code: nil, message: object.error?.message ?? "error in stream")
                case "content_block_delta":
                    guard let delta = object.delta, delta.type == "text_delta", let text = delta.text else { continue }
                    if reply.append(text) { onDelta(text) }
                default:
                    continue
                }
            }
        }
        let response: OutboundResponse
        do {
            response = try await http.send(request) { chunk in handle(reply.events(from: chunk)) }
        } catch {
            throw ProviderError(provider: "anthropic", status: nil, message: "\(error)", retryable: true)
        }
        handle(reply.lastEvents())
        return try reply.text(provider: "anthropic", response: response)
    }
}

/// What a streamed reply has carried so far: the events parsed from its chunks (which arrive on
/// the HTTP client's thread), the text passed on, and a failure reported inside the stream.
final class StreamedReply: Sendable {
    private struct State {
        var parser = ServerSentEventParser()
        var text = ""
        var failure: (code: Int?, message: String)?
    }

    private let state = Mutex(State())

    func events(from chunk: [UInt8]) -> [ServerSentEventParser.Event] { state.withLock { $0.parser.feed(chunk) } }

    /// The last event, when the body ended without its blank line.
    func lastEvents() -> [ServerSentEventParser.Event] { state.withLock { $0.parser.finish() } }

    /// Adds a piece of text unless it is empty or the stream has failed; true when it was added
    /// (and is to be passed on).
    func append(_ piece: String) -> Bool {
        guard !piece.isEmpty else { return false }
        return state.withLock { state in
            guard state.failure == nil else { return false }
            state.text += piece
            return true
        }
    }

    func fail(code: Int?, message: String) {
        state.withLock { state in
            if state.failure == nil { state.failure = (code, message) }
        }
    }

    /// The text, once the response is complete: a status that is not 2xx (its error object's
    /// message), a failure inside the stream, or no text at all is a `ProviderError`.
    func text(provider: String, response: OutboundResponse) throws -> String {
        guard (200..<300).contains(response.status) else {
            let message = ProviderWire.decode(ProviderErrorEnvelope.self, from: response.body)?.error?.message ?? "unexpected status"
            throw ProviderError(
                provider: provider,
                status: response.status,
                message: message,
                retryable: response.status >= 500 || response.status == 429
            )
        }
        let (text, failure) = state.withLock { ($0.text, $0.failure) }
        if let failure { throw ProviderError(provider: provider, status: failure.code, message: failure.message, retryable: true) }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ProviderError(provider: provider, status: response.status, message: "the stream carried no content", retryable: true)
        }
        return text
    }
}
