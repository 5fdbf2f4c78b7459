import Hummingbird
import MyBAOps

/// `POST /api/generate`: one AI ticket for one token (none with the caller's own key).
struct GenerateController {
    let generator: TicketGenerator

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post(use: generate)
    }

    struct GenerateRequest: Decodable {
        var input: String
        var sessionId: String?
        var provider: String?
        var apiKey: String?
        var model: String?
    }

    @Sendable func generate(_ request: Request, context: MyBARequestContext) async throws -> GenerationResult {
        let body = try await request.decodeJSON(as: GenerateRequest.self, context: context)
        guard let provider = GenerationProvider(rawValue: body.provider ?? "myba") else {
            throw APIError(.badRequest, code: "invalid_input", message: "provider must be \"myba\", \"openai\" or \"anthropic\"")
        }
        // A key we cannot use is refused, not dropped: silently ignoring it would charge the
        // client's retry a second time.
        let idempotencyKey: String
        if let sent = request.headers[.idempotencyKey] {
            guard let usable = RequestIDMiddleware.acceptable(sent) else {
                throw APIError(.badRequest, code: "invalid_idempotency_key", message: "Idempotency-Key must be 1–128 characters of A–Z, a–z, 0–9, '-', '_', '.', ':'")
            }
            idempotencyKey = usable
        } else {
            idempotencyKey = context.requestId
        }
        let generation = GenerationRequest(
            input: body.input, provider: provider, apiKey: body.apiKey, model: body.model,
            userId: context.user?.userId, sessionId: context.user == nil ? body.sessionId : nil,
            idempotencyKey: "\(context.user?.userId ?? body.sessionId ?? "-"):\(idempotencyKey)", requestId: context.requestId)
        let result = try await generator.generate(generation, logger: context.logger)
        context.logger.info("ticket generated", metadata: [
            "ai.provider": .string(result.provider), "ai.model": .string(result.model), "tokens.remaining": .stringConvertible(result.tokensRemaining),
        ])
        return result
    }
}

extension GenerationResult: ResponseEncodable {}
