import Foundation
import Hummingbird

/// What the API reads from every request the same way: JSON bodies and idempotency keys.
extension Request {
    /// The `Idempotency-Key` header, else the request id. A key we cannot use is refused, not
    /// dropped: silently ignoring it would charge the client's retry a second time.
    func idempotencyKey(context: MyBARequestContext) throws -> String {
        guard let sent = headers[.idempotencyKey] else { return context.requestId }
        guard let usable = RequestIDMiddleware.acceptable(sent) else {
            throw APIError(
                .badRequest,
                code: "invalid_idempotency_key",
                message: "Idempotency-Key must be 1–128 characters of A–Z, a–z, 0–9, '-', '_', '.', ':'"
            )
        }
        return usable
    }

    /// Decodes the JSON body of an API call. A declared non-JSON content type is 415; a body that
    /// is not the expected JSON is 400 `invalid_json` with a message naming the field, so a client
    /// can fix its request without reading our source.
    func decodeJSON<Body: Decodable>(as type: Body.Type, context: MyBARequestContext) async throws -> Body {
        if let contentType = headers[.contentType] {
            let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            guard mediaType == "application/json" || mediaType.hasSuffix("+json") else {
                throw APIError(
                    .unsupportedMediaType,
                    code: "unsupported_media_type",
                    message: "send the body as application/json, not \(mediaType.prefix(80))"
                )
            }
        }
        let buffer = try await body.collect(upTo: context.maxUploadSize)
        do {
            return try JSONDecoder().decode(Body.self, from: Data(buffer: buffer))
        } catch let error as DecodingError {
            throw APIError(.badRequest, code: "invalid_json", message: Self.explain(error))
        }
    }

    private static func explain(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing field \(path(context.codingPath + [key]))"
        case .typeMismatch(_, let context) where context.codingPath.isEmpty:
            return "the body must be a JSON object"
        case .typeMismatch(let type, let context):
            return "field \(path(context.codingPath)) must be \(Self.jsonName(of: type))"
        case .valueNotFound(let type, let context):
            return "field \(path(context.codingPath)) must be \(Self.jsonName(of: type)), not null"
        case .dataCorrupted(let context) where !context.codingPath.isEmpty:
            return "field \(path(context.codingPath)) has an invalid value"
        default:
            return "the body is not valid JSON"
        }
    }

    private static func jsonName(of type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Bool.Type: return "true or false"
        default: return "an object"
        }
    }
}
