import Hummingbird
import MyBAOps

/// `POST /api/anonymous-session`: a visitor's free tokens, one session per fingerprint.
struct AnonymousSessionController {
    let database: AppDatabase
    let settings: AnonymousSettings

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post(use: start)
    }

    struct StartRequest: Decodable {
        var fingerprint: String
    }

    struct StartResponse: ResponseEncodable {
        var sessionId: String
        var tokens: Int
        var tokensRemaining: Int
    }

    @Sendable func start(_ request: Request, context: MyBARequestContext) async throws -> StartResponse {
        let body = try await request.decodeJSON(as: StartRequest.self, context: context)
        let started = try await database.sessions.start(
            fingerprint: body.fingerprint,
            clientAddress: context.clientAddress,
            settings: settings
        )
        if started.created {
            context.logger.info("anonymous session created", metadata: ["session.digest": .string(SessionDigest.of(started.session.id))])
        }
        return StartResponse(sessionId: started.session.id, tokens: started.session.granted, tokensRemaining: started.session.remaining)
    }
}
