import Foundation
import GRDB

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
