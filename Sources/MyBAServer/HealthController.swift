import Foundation
import Hummingbird
import MyBAOps

/// `GET /api/health`: liveness and the state of storage.
struct HealthController {
    let database: AppDatabase
    let startedAt: Date

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: health)
    }

    struct HealthResponse: ResponseEncodable, Equatable {
        var status: String
        var version: String
        var uptimeSeconds: Int
        var database: String
        var customers: Int?
    }

    @Sendable func health(_ request: Request, context: MyBARequestContext) async throws -> EditedResponse<HealthResponse> {
        let storage = await database.health()
        let body = HealthResponse(
            status: storage.databaseReadable ? "ok" : "degraded",
            version: mybaVersion,
            uptimeSeconds: Int(Date().timeIntervalSince(startedAt)),
            database: storage.databaseReadable ? "ok" : "unavailable",
            customers: storage.customers)
        if let problem = storage.problem {
            context.logger.error("health check: database unreadable", metadata: ["error.message": .string(problem)])
        }
        return EditedResponse(status: storage.databaseReadable ? .ok : .serviceUnavailable, response: body)
    }
}
