import Hummingbird
import MyBAOps

/// `GET /api/user-tokens/:userId`: the signed-in user's balance, in the legacy field names.
struct UserTokensController {
    let database: AppDatabase

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(":userId", use: show)
    }

    @Sendable func show(_ request: Request, context: MyBARequestContext) async throws -> BalanceFields {
        let user = try context.requireUser()
        let userId = try context.parameters.require("userId")
        guard userId == user.userId else {
            throw APIError(.forbidden, code: "forbidden", message: "you can only read your own tokens")
        }
        guard let balance = try await database.ledger.balance(userId: userId) else {
            throw APIError(.notFound, code: "unknown_customer", message: "no customer with id \(userId)")
        }
        return BalanceFields(balance)
    }
}

extension BalanceFields: ResponseEncodable {}
