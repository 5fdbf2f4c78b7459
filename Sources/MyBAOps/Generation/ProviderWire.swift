import Foundation

/// The AI providers' wire formats, as much as MyBA sends and reads. Unknown fields are ignored;
/// what a provider may leave out is optional, so a reply without the expected part is reported
/// as such ("reply has no choices[0].message.content") rather than as a decoding failure.
enum ProviderWire {
    static func encode(_ value: some Encodable) throws -> Data { try JSONEncoder().encode(value) }

    /// nil when `data` is not JSON of that shape.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data) -> T? { try? JSONDecoder().decode(type, from: data) }
}

struct ChatMessage: Codable, Sendable {
    var role: String
    var content: String
}

/// `POST …/chat/completions` (OpenRouter, OpenAI).
struct ChatCompletionsRequest: Encodable, Sendable {
    var model: String
    var messages: [ChatMessage]
    var maxTokens = 1200
    var temperature = 0.3
    /// Left out (not false) when not streaming, as the providers' own examples do.
    var stream: Bool?

    enum CodingKeys: String, CodingKey {
        case model, messages, temperature, stream
        case maxTokens = "max_tokens"
    }
}

/// A chat-completions reply, or one chunk of a streamed one (`delta` instead of `message`).
/// OpenRouter reports some failures with HTTP 200 and an `error` object, also inside a stream.
struct ChatCompletionsReply: Decodable, Sendable {
    var choices: [Choice]?
    var error: ProviderErrorBody?

    enum CodingKeys: String, CodingKey { case choices, error }

    /// A part of another shape (an `error` that is a bare string, say) reads as absent, as the
    /// provider's other fields still may say what happened.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        choices = try? container.decodeIfPresent([Choice].self, forKey: .choices)
        error = try? container.decodeIfPresent(ProviderErrorBody.self, forKey: .error)
    }

    struct Choice: Decodable, Sendable {
        var message: Content?
        var delta: Content?
    }

    struct Content: Decodable, Sendable {
        var content: String?
    }
}

/// `{"error": {"code": 429 | "invalid_api_key", "message": "…"}}`: OpenRouter's code is a number,
/// OpenAI's a string (only a number is an HTTP-like status).
struct ProviderErrorBody: Decodable, Sendable {
    var code: Int?
    var message: String?

    enum CodingKeys: String, CodingKey { case code, message }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        code = try? container.decodeIfPresent(Int.self, forKey: .code)
        message = try? container.decodeIfPresent(String.self, forKey: .message)
    }
}

/// Just the error object of a failed reply, whatever else it carries.
struct ProviderErrorEnvelope: Decodable, Sendable {
    var error: ProviderErrorBody?

    enum CodingKeys: String, CodingKey { case error }

    init(from decoder: any Decoder) throws {
        error = try? decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(ProviderErrorBody.self, forKey: .error)
    }
}

/// `POST …/messages` (Anthropic).
struct AnthropicRequest: Encodable, Sendable {
    var model: String
    var maxTokens = 1200
    var system: String
    var messages: [ChatMessage]
    var stream: Bool?

    enum CodingKeys: String, CodingKey {
        case model, system, messages, stream
        case maxTokens = "max_tokens"
    }
}

/// A Messages reply: content blocks, the text ones carrying the answer.
struct AnthropicReply: Decodable, Sendable {
    var content: [Block]?

    struct Block: Decodable, Sendable {
        var type: String?
        var text: String?
    }
}

/// One event of a streamed Messages reply (`content_block_delta`, `error`, …).
struct AnthropicStreamEvent: Decodable, Sendable {
    var type: String?
    var delta: Delta?
    var error: ProviderErrorBody?

    struct Delta: Decodable, Sendable {
        var type: String?
        var text: String?
    }
}
