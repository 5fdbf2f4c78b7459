import Foundation

/// A MyBA user, keyed by the Clerk user id (`user_…`).
public struct Customer: Codable, Equatable, Sendable {
    public var userId: String
    public var email: String?
    public var stripeCustomerId: String?
    public var createdAt: Date
    public var deletedAt: Date?

    public init(userId: String, email: String? = nil, stripeCustomerId: String? = nil, createdAt: Date, deletedAt: Date? = nil) {
        self.userId = userId
        self.email = email
        self.stripeCustomerId = stripeCustomerId
        self.createdAt = createdAt
        self.deletedAt = deletedAt
    }
}

/// One append-only movement of tokens.
public struct LedgerEntry: Codable, Equatable, Sendable {
    public var id: Int64?
    public var userId: String
    public var kind: LedgerEntryKind
    /// Signed change of the spendable balance.
    public var delta: Int
    public var usedDelta: Int
    public var purchasedDelta: Int
    public var transferredDelta: Int
    public var setsLastPurchase: Date?
    public var setsTransferDate: Date?
    public var idempotencyKey: String
    public var reference: String?
    public var actor: String
    public var reason: String?
    public var requestId: String?
    public var createdAt: Date
    /// For `payment_refund`: tokens owed back but already spent (recorded, not taken).
    public var shortfall: Int = 0

    /// The effect this entry recorded on the projection.
    public var effect: LedgerEffect {
        LedgerEffect(
            tokens: delta,
            used: usedDelta,
            purchased: purchasedDelta,
            transferred: transferredDelta,
            setsLastPurchase: setsLastPurchase,
            setsTransferDate: setsTransferDate
        )
    }
}

/// The per-user projection of the ledger: what the API returns and Stripe metadata mirrors.
public struct Balance: Codable, Equatable, Sendable {
    public var userId: String
    public var tokens: Int
    public var tokensUsed: Int
    public var tokensPurchased: Int
    public var tokensTransferred: Int
    public var lastPurchase: Date?
    public var transferDate: Date?
    public var updatedAt: Date

    /// A zero balance, as a new customer has before any entry.
    public static func empty(userId: String, at date: Date) -> Balance {
        Balance(
            userId: userId,
            tokens: 0,
            tokensUsed: 0,
            tokensPurchased: 0,
            tokensTransferred: 0,
            lastPurchase: nil,
            transferDate: nil,
            updatedAt: date
        )
    }

    /// This balance after `effect`.
    public func applying(_ effect: LedgerEffect, at date: Date) -> Balance {
        var next = self
        next.tokens += effect.tokens
        next.tokensUsed += effect.used
        next.tokensPurchased += effect.purchased
        next.tokensTransferred += effect.transferred
        next.lastPurchase = latest(lastPurchase, effect.setsLastPurchase)
        next.transferDate = latest(transferDate, effect.setsTransferDate)
        next.updatedAt = date
        return next
    }
}

func latest(_ a: Date?, _ b: Date?) -> Date? {
    switch (a, b) {
    case let (a?, b?): return max(a, b)
    case let (a?, nil): return a
    case let (nil, b): return b
    }
}

extension Date {
    /// The date exactly as it reads back from the database (milliseconds), so an entry returned
    /// by a write equals the same entry read later.
    public var truncatedToMilliseconds: Date {
        SQLTimestamp.date(milliseconds: SQLTimestamp.milliseconds(self))
    }
}
