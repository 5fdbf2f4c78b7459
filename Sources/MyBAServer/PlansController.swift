import Hummingbird
import MyBAOps

/// `GET /api/plans`: what is on sale, in cents.
struct PlansController {
    let catalog: PlanCatalog

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: list)
    }

    @Sendable func list(_ request: Request, context: MyBARequestContext) async throws -> PlanCatalog {
        catalog
    }
}

extension PlanCatalog: ResponseEncodable {}
