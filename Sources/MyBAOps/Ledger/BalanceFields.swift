/// A balance under the field names the front end and the legacy service use — the API's
/// `/api/user-tokens` answer and the top level of `myba-admin customer show --json`. Dates are
/// `YYYY-MM-DD`; every key is always present (null when unset) so scripts can rely on it.
public struct BalanceFields: Encodable, Sendable {
    public var userId: String
    public var tokens: Int
    public var tokensUsed: Int
    public var tokensPurchased: Int
    public var tokensTransferred: Int
    public var lastPurchase: String?
    public var transferDate: String?

    public init(_ balance: Balance) {
        userId = balance.userId
        tokens = balance.tokens
        tokensUsed = balance.tokensUsed
        tokensPurchased = balance.tokensPurchased
        tokensTransferred = balance.tokensTransferred
        lastPurchase = balance.lastPurchase.map(Timestamps.day)
        transferDate = balance.transferDate.map(Timestamps.day)
    }

    public func encode(to encoder: any Encoder) throws {
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
