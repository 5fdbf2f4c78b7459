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
        record(request, path: path, body: ["model": model, "messages": (body["messages"] as? [[String: String]]) ?? []])
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
