import Hummingbird
import MyBAOps

/// `GET /api/plans`: what is on sale, in cents (the catalog installed in the database).
struct PlansController {
    let database: AppDatabase

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: list)
    }

    @Sendable func list(_ request: Request, context: MyBARequestContext) async throws -> PlanCatalog {
        try await database.plans.installed().catalog
    }
}

extension PlanCatalog: ResponseEncodable {}
