import Hummingbird
import MyBAOps

/// `GET /api/user-tokens/:userId`: the signed-in user's balance, in the legacy field names.
struct UserTokensController {
    let database: AppDatabase

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(":userId", use: show)
    }

    @Sendable func show(_ request: Request, context: MyBARequestContext) async throws -> BalanceResponse {
        let user = try context.requireUser()
        let userId = try context.parameters.require("userId")
        guard userId == user.userId else {
            throw APIError(.forbidden, code: "forbidden", message: "you can only read your own tokens")
        }
        guard let balance = try await database.balance(userId: userId) else {
            throw APIError(.notFound, code: "unknown_customer", message: "no customer with id \(userId)")
        }
        return BalanceResponse(balance)
    }
}

/// A balance as the front end reads it; dates `YYYY-MM-DD` or null.
struct BalanceResponse: ResponseEncodable {
    var userId: String
    var tokens: Int
    var tokensUsed: Int
    var tokensPurchased: Int
    var tokensTransferred: Int
    var lastPurchase: String?
    var transferDate: String?

    init(_ balance: Balance) {
        userId = balance.userId
        tokens = balance.tokens
        tokensUsed = balance.tokensUsed
        tokensPurchased = balance.tokensPurchased
        tokensTransferred = balance.tokensTransferred
        lastPurchase = balance.lastPurchase.map(LedgerDates.day)
        transferDate = balance.transferDate.map(LedgerDates.day)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(userId, forKey: .userId)
        try container.encode(tokens, forKey: .tokens)
        try container.encode(tokensUsed, forKey: .tokensUsed)
        try container.encode(tokensPurchased, forKey: .tokensPurchased)
        try container.encode(tokensTransferred, forKey: .tokensTransferred)
        try container.encode(lastPurchase, forKey: .lastPurchase)
        try container.encode(transferDate, forKey: .transferDate)
    }

    enum CodingKeys: String, CodingKey {
        case userId, tokens, tokensUsed, tokensPurchased, tokensTransferred, lastPurchase, transferDate
    }
}
