import Crypto
import CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBAOps
import NIOCore
import Synchronization

/// A local HTTP server speaking the wire formats of Clerk's JWKS endpoint, OpenRouter/OpenAI
/// chat completions and Anthropic messages. The model name in a request picks the behaviour:
/// `ok-json`, `ok-markdown`, `fail-429`, `fail-500`, `fail-401`, `error-200` (OpenRouter's HTTP
/// 200 with an `error` body), `overloaded` (Anthropic 529), `slow` (answers after 3 s).
final class FakeUpstream: Sendable {
    struct Recorded: Sendable {
        var path: String
        var headers: [String: String]
        var body: [String: any Sendable]
    }

    /// Header names are lowercased.
    private let recorded = Mutex<[Recorded]>([])
    let jwks = Mutex<[[String: String]]>([])
    /// `ok`, `slow` (answers after 300 ms) or `fail` (500).
    let jwksBehaviour = Mutex<String>("ok")

    var requests: [Recorded] { recorded.withLock { $0 } }

    /// Runs the fake on a free loopback port for the duration of `body`.
    func run<T: Sendable>(_ body: @Sendable (URL) async throws -> T) async throws -> T {
        let router = Router()
        for path in ["/v1/jwks", "/.well-known/jwks.json"] {
            router.get(RouterPath(path)) { request, _ in
                self.record(request, path: path, body: [:])
                switch self.jwksBehaviour.withLock({ $0 }) {
                case "fail": return try Self.json(["errors": [["message": "internal"]]], status: .internalServerError)
                case "slow": try await Task.sleep(for: .milliseconds(300))
                default: break
                }
                return try Self.json(["keys": self.jwks.withLock { $0 }])
            }
        }
        router.post("/api/v1/chat/completions") { request, context in try await self.chat(request, context: context, path: "openrouter") }
        router.post("/v1/chat/completions") { request, context in try await self.chat(request, context: context, path: "openai") }
        router.post("/v1/messages") { request, context in try await self.messages(request, context: context) }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            try await body(URL(string: "http://127.0.0.1:\(client.port!)")!)
        }
    }

    private func record(_ request: Request, path: String, body: [String: any Sendable]) {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
        recorded.withLock { $0.append(Recorded(path: path, headers: headers, body: body)) }
    }

    private func decodeBody(_ request: Request) async throws -> [String: Any] {
        let buffer = try await request.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any]) ?? [:]
    }

    private func chat(_ request: Request, context: some RequestContext, path: String) async throws -> Response {
        let body = try await decodeBody(request)
        let model = body["model"] as? String ?? ""
        record(
            request,
            path: path,
            body: ["model": model, "messages": (body["messages"] as? [[String: String]]) ?? [], "stream": body["stream"] as? Bool ?? false]
        )
        if body["stream"] as? Bool == true, !model.hasPrefix("fail-") {
            return try await Self.chatStream(model: model)
        }
        switch model {
        case "fail-429": return try Self.json(["error": ["code": 429, "message": "rate limited upstream"]], status: .tooManyRequests)
        case "fail-500": return try Self.json(["error": ["code": 500, "message": "internal"]], status: .internalServerError)
        case "fail-401":
            let key = request.headers[.authorization]?.replacingOccurrences(of: "Bearer ", with: "") ?? ""
            return try Self.json(["error": ["code": 401, "message": "Incorrect API key provided: \(key)"]], status: .unauthorized)
        case "error-200": return try Self.json(["error": ["code": 502, "message": "provider returned error"]])
        case "slow":
            try await Task.sleep(for: .seconds(3))
            return try Self.json(["choices": [["message": ["role": "assistant", "content": Self.ticketJSON]]]])
        case "ok-markdown":
            return try Self.json([
                "choices": [["index": 0, "message": ["role": "assistant", "content": Self.ticketMarkdown]]], "usage": ["total_tokens": 10],
            ])
        default:
            return try Self.json([
                "id": "gen-1", "choices": [["index": 0, "message": ["role": "assistant", "content": "```json\n\(Self.ticketJSON)\n```"]]],
                "usage": ["total_tokens": 10],
            ])
        }
    }

    private func messages(_ request: Request, context: some RequestContext) async throws -> Response {
        let body = try await decodeBody(request)
        let model = body["model"] as? String ?? ""
        record(
            request,
            path: "anthropic",
            body: ["model": model, "max_tokens": (body["max_tokens"] as? Int) ?? -1, "system": (body["system"] as? String) ?? ""]
        )
        if body["stream"] as? Bool == true, model != "overloaded", model != "fail-401" {
            return Self.messagesStream(model: model)
        }
        if model == "overloaded" {
            return try Self.json(
                ["type": "error", "error": ["type": "overloaded_error", "message": "Overloaded"]],
                status: .init(code: 529, reasonPhrase: "Overloaded")
            )
        }
        if model == "fail-401" {
            return try Self.json(
                [
                    "type": "error",
                    "error": ["type": "authentication_error", "message": "invalid x-api-key \(request.headers[HTTPField.Name("x-api-key")!] ?? "")"],
                ],
                status: .unauthorized
            )
        }
        return try Self.json([
            "id": "msg_1", "type": "message", "role": "assistant", "content": [["type": "text", "text": Self.ticketJSON]], "stop_reason": "end_turn",
        ])
    }

    /// The pieces a streamed reply carries, cut where a provider's would be: mid-word.
    static func pieces(of text: String, count: Int = 6) -> [String] {
        let size = max(text.count / count, 1)
        var pieces: [String] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            pieces.append(String(rest.prefix(size)))
            rest = rest.dropFirst(size)
        }
        return pieces
    }

    /// A `text/event-stream` response writing `bytes` in pieces cut at odd places (mid-line, a
    /// CRLF split), `pause` apart.
    static func eventStream(_ text: String, pause: Duration = .milliseconds(20)) -> Response {
        let bytes = Array(text.utf8)
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream"],
            body: ResponseBody { writer in
                var offset = 0
                var size = 7
                while offset < bytes.count {
                    let end = min(offset + size, bytes.count)
                    try await writer.write(ByteBuffer(bytes: bytes[offset..<end]))
                    offset = end
                    size = size * 3 % 97 + 5
                    try await Task.sleep(for: pause)
                }
                try await writer.finish(nil)
            }
        )
    }

    /// OpenRouter's streamed chat completion: a keep-alive comment, `data:` chunks (CRLF line
    /// ends on some), and `[DONE]`; `stream-error-mid` fails after two chunks with an `error`
    /// object, as OpenRouter reports a provider failing mid-stream; `slow` starts after 3 s.
    static func chatStream(model: String) async throws -> Response {
        if model == "slow" { try await Task.sleep(for: .seconds(3)) }
        var text = ": OPENROUTER PROCESSING\n\n"
        let pieces = Self.pieces(of: "```json\n\(Self.ticketJSON)\n```")
        for (index, piece) in pieces.enumerated() {
            if model == "stream-error-mid" && index == 2 {
                let error = try JSONSerialization.data(withJSONObject: [
                    "id": "gen-1", "error": ["code": 502, "message": "provider disconnected"],
                    "choices": [["index": 0, "delta": ["content": ""], "finish_reason": "error"]],
                ])
                text += "data: \(String(decoding: error, as: UTF8.self))\n\n"
                break
            }
            let chunk = try JSONSerialization.data(withJSONObject: [
                "id": "gen-1", "object": "chat.completion.chunk", "choices": [["index": 0, "delta": ["role": "assistant", "content": piece]]],
            ])
            text += "data: \(String(decoding: chunk, as: UTF8.self))" + (index % 2 == 0 ? "\r\n\r\n" : "\n\n")
        }
        text += "data: [DONE]\n\n"
        return eventStream(text)
    }

    /// Anthropic's streaming Messages API; `stream-error-mid` sends an `error` event after the first delta.
    static func messagesStream(model: String) -> Response {
        func event(_ name: String, _ object: [String: Any]) -> String {
            "event: \(name)\ndata: \(String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self))\n\n"
        }
        var text = event(
            "message_start",
            ["type": "message_start", "message": ["id": "msg_1", "type": "message", "role": "assistant", "content": []]]
        )
        text += event("content_block_start", ["type": "content_block_start", "index": 0, "content_block": ["type": "text", "text": ""]])
        text += event("ping", ["type": "ping"])
        for (index, piece) in Self.pieces(of: Self.ticketJSON).enumerated() {
            if model == "stream-error-mid" && index == 1 {
                text += event("error", ["type": "error", "error": ["type": "overloaded_error", "message": "Overloaded"]])
                return eventStream(text)
            }
            text += event("content_block_delta", ["type": "content_block_delta", "index": 0, "delta": ["type": "text_delta", "text": piece]])
        }
        text += event("content_block_stop", ["type": "content_block_stop", "index": 0])
        text += event("message_delta", ["type": "message_delta", "delta": ["stop_reason": "end_turn"]])
        text += event("message_stop", ["type": "message_stop"])
        return eventStream(text)
    }

    static let ticketJSON =
        #"{"title":"Add CSV export to reports","description":"Users need to export report tables as CSV.","acceptanceCriteria":["An Export button downloads the table as CSV","Columns match the table"],"priority":"high","storyPoints":"5","labels":["Reports","export"]}"#
    static let ticketMarkdown = """
        # Add CSV export to reports

        ## Description
        Users need to export report tables as CSV.

        ## Acceptance Criteria
        - [ ] An Export button downloads the table as CSV
        - [ ] Columns match the table

        **Priority:** Low
        **Story Points:** 2
        **Labels:** reports, export
        """

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
