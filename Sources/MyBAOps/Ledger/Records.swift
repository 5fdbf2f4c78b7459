import Foundation
import GRDB

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

// MARK: - Persistence

// Columns are mapped by hand rather than through Codable so dates go through `SQLTimestamp`:
// a value written and read back is then exactly equal, and no `DateFormatter` runs per row.

extension Customer: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "customers"

    public init(row: Row) throws {
        self.init(
            userId: row["user_id"],
            email: row["email"],
            stripeCustomerId: row["stripe_customer_id"],
            createdAt: row.timestamp("created_at") ?? Date(timeIntervalSince1970: 0),
            deletedAt: row.timestamp("deleted_at")
        )
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["user_id"] = userId
        container["email"] = email
        container["stripe_customer_id"] = stripeCustomerId
        container["created_at"] = SQLTimestamp.string(createdAt)
        container["deleted_at"] = deletedAt.map(SQLTimestamp.string)
    }
}

extension LedgerEntry: FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "ledger_entries"

    public init(row: Row) throws {
        let kindName: String = row["kind"]
        guard let kind = LedgerEntryKind(rawValue: kindName) else {
            throw LedgerError.invalidPosting("stored entry has unknown kind \(kindName)")
        }
        self.init(
            id: row["id"],
            userId: row["user_id"],
            kind: kind,
            delta: row["delta"],
            usedDelta: row["used_delta"],
            purchasedDelta: row["purchased_delta"],
            transferredDelta: row["transferred_delta"],
            setsLastPurchase: row.timestamp("sets_last_purchase"),
            setsTransferDate: row.timestamp("sets_transfer_date"),
            idempotencyKey: row["idempotency_key"],
            reference: row["reference"],
            actor: row["actor"],
            reason: row["reason"],
            requestId: row["request_id"],
            createdAt: row.timestamp("created_at") ?? Date(timeIntervalSince1970: 0),
            shortfall: row["shortfall"] ?? 0
        )
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["id"] = id
        container["shortfall"] = shortfall
        container["user_id"] = userId
        container["kind"] = kind.rawValue
        container["delta"] = delta
        container["used_delta"] = usedDelta
        container["purchased_delta"] = purchasedDelta
        container["transferred_delta"] = transferredDelta
        container["sets_last_purchase"] = setsLastPurchase.map(SQLTimestamp.string)
        container["sets_transfer_date"] = setsTransferDate.map(SQLTimestamp.string)
        container["idempotency_key"] = idempotencyKey
        container["reference"] = reference
        container["actor"] = actor
        container["reason"] = reason
        container["request_id"] = requestId
        container["created_at"] = SQLTimestamp.string(createdAt)
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

extension Balance: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "balances"

    public init(row: Row) throws {
        self.init(
            userId: row["user_id"],
            tokens: row["tokens"],
            tokensUsed: row["tokens_used"],
            tokensPurchased: row["tokens_purchased"],
            tokensTransferred: row["tokens_transferred"],
            lastPurchase: row.timestamp("last_purchase"),
            transferDate: row.timestamp("transfer_date"),
            updatedAt: row.timestamp("updated_at") ?? Date(timeIntervalSince1970: 0)
        )
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["user_id"] = userId
        container["tokens"] = tokens
        container["tokens_used"] = tokensUsed
        container["tokens_purchased"] = tokensPurchased
        container["tokens_transferred"] = tokensTransferred
        container["last_purchase"] = lastPurchase.map(SQLTimestamp.string)
        container["transfer_date"] = transferDate.map(SQLTimestamp.string)
        container["updated_at"] = SQLTimestamp.string(updatedAt)
    }
}

extension Date {
    /// The date exactly as it reads back from the database (milliseconds), so an entry returned
    /// by a write equals the same entry read later.
    public var truncatedToMilliseconds: Date {
        SQLTimestamp.date(milliseconds: SQLTimestamp.milliseconds(self))
    }
}
