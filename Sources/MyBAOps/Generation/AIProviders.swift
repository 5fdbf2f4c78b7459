import Foundation

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
        let body: [String: Any] = [
            "model": model,
            "messages": [["role": "system", "content": TicketPrompt.system], ["role": "user", "content": input]],
            "max_tokens": 1200,
            "temperature": 0.3,
        ]
        let response = try await send(body: body)
        guard let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] else {
            throw ProviderError(provider: providerName, status: response.status, message: "reply is not JSON", retryable: response.status >= 500)
        }
        // OpenRouter reports some generation failures with HTTP 200 and an `error` object.
        if let error = object["error"] as? [String: Any] {
            let code = (error["code"] as? NSNumber)?.intValue ?? response.status
            let message = error["message"] as? String ?? "unknown error"
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
        guard let choices = object["choices"] as? [[String: Any]],
            let message = choices.first?["message"] as? [String: Any],
            let content = message["content"] as? String,
            !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else {
            throw ProviderError(provider: providerName, status: response.status, message: "reply has no choices[0].message.content", retryable: true)
        }
        return content
    }

    private func send(body: [String: Any]) async throws -> OutboundResponse {
        var headers = [("Authorization", "Bearer \(apiKey)"), ("Content-Type", "application/json")]
        headers += extraHeaders
        let request = OutboundRequest(
            method: "POST",
            url: baseURL.appendingPathComponent("chat/completions"),
            headers: headers,
            body: try JSONSerialization.data(withJSONObject: body),
            timeout: timeout
        )
        do {
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
        let body: [String: Any] = [
            "model": model,
            "max_tokens": 1200,
            "system": TicketPrompt.system,
            "messages": [["role": "user", "content": input]],
        ]
        let request = OutboundRequest(
            method: "POST",
            url: baseURL.appendingPathComponent("messages"),
            headers: [("x-api-key", apiKey), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
            body: try JSONSerialization.data(withJSONObject: body),
            timeout: timeout
        )
        let response: OutboundResponse
        do {
            response = try await http.send(request)
        } catch {
            throw ProviderError(provider: "anthropic", status: nil, message: "\(error)", retryable: true)
        }
        let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any]
        guard (200..<300).contains(response.status) else {
            let message = ((object?["error"] as? [String: Any])?["message"] as? String) ?? "unexpected status"
            throw ProviderError(
                provider: "anthropic",
                status: response.status,
                message: message,
                retryable: response.status == 429 || response.status >= 500
            )
        }
        guard let content = object?["content"] as? [[String: Any]],
            let text = content.first(where: { $0["type"] as? String == "text" || $0["text"] != nil })?["text"] as? String
        else { throw ProviderError(provider: "anthropic", status: response.status, message: "reply has no content[0].text", retryable: true) }
        return text
    }
}
