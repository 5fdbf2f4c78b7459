import Hummingbird
import MyBAOps

/// `POST /api/transfer-anonymous-tokens`: moves what an anonymous session has left to the
/// signed-in account, once. The server's count moves, never the client's claim.
struct TransferController {
    let database: AppDatabase
    let settings: AnonymousSettings

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post(use: transfer)
    }

    struct TransferRequest: Decodable {
        var sessionId: String
        var userId: String?
        var remainingTokens: Int?
    }

    struct TransferResponse: ResponseEncodable {
        var transferred: Int
        var tokens: Int
        /// How many more anonymous sessions this account may receive (`MYBA_MAX_SESSION_TRANSFERS`).
        var transfersLeft: Int
    }

    @Sendable func transfer(_ request: Request, context: MyBARequestContext) async throws -> TransferResponse {
        let user = try context.requireUser()
        let body = try await request.decodeJSON(as: TransferRequest.self, context: context)
        if let claimed = body.userId, claimed != user.userId {
            throw APIError(.forbidden, code: "forbidden", message: "userId does not match the signed-in user")
        }
        // Ignored, but a count below zero is no count: malformed input changes nothing.
        if let claimed = body.remainingTokens, claimed < 0 {
            throw APIError(.badRequest, code: "invalid_json", message: "remainingTokens must be 0 or more")
        }
        let result = try await database.sessions.transfer(
            sessionId: body.sessionId,
            to: user.userId,
            limit: settings.maxTransfersPerAccount,
            actor: "api",
            requestId: context.requestId
        )
        if let claimed = body.remainingTokens, claimed != result.transferred {
            context.logger.notice(
                "client claimed a different remaining count; the server's count moved",
                metadata: [
                    "session.digest": .string(SessionDigest.of(body.sessionId)), "tokens.claimed": .stringConvertible(claimed),
                    "tokens.transferred": .stringConvertible(result.transferred),
                ]
            )
        }
        context.logger.info(
            "anonymous tokens transferred",
            metadata: ["session.digest": .string(SessionDigest.of(body.sessionId)), "tokens.transferred": .stringConvertible(result.transferred)]
        )
        return TransferResponse(transferred: result.transferred, tokens: result.balance.tokens, transfersLeft: result.transfersLeft)
    }
}
