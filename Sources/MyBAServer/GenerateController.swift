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

    @Sendable func generate(_ request: Request, context: MyBARequestContext) async throws -> Response {
        let body = try await request.decodeJSON(as: GenerateRequest.self, context: context)
        guard let provider = GenerationProvider(rawValue: body.provider ?? "myba") else {
            throw APIError(.badRequest, code: "invalid_input", message: "provider must be \"myba\", \"openai\" or \"anthropic\"")
        }
        let generation = GenerationRequest.fromCaller(
            input: body.input,
            provider: provider,
            apiKey: body.apiKey,
            model: body.model,
            signedInUserId: context.user?.userId,
            sessionId: body.sessionId,
            requestKey: try request.idempotencyKey(context: context),
            requestId: context.requestId,
            clientAddress: context.clientAddress
        )
        let answer = try await generator.answer(generation, logger: context.logger)
        let result = answer.result
        context.logger.info(
            "ticket generated",
            metadata: [
                "ai.provider": .string(result.provider), "ai.model": .string(result.model),
                "tokens.remaining": .stringConvertible(result.tokensRemaining),
            ]
        )
        // The JSON stored for replays is the body: encoded once, and a replay is byte for byte
        // the first answer.
        return Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: answer.json))
        )
    }
}
