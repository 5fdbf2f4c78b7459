import Foundation
import GRDB

// Columns are mapped by hand rather than through Codable so dates go through `SQLTimestamp`:
// a value written and read back is then exactly equal, and no `DateFormatter` runs per row. Rows
// are read by `SQLRow`'s mapping, shared with PostgreSQL.

extension Customer: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "customers"

    /// The same mapping as on PostgreSQL (`SQLRow`), so the two backends read one way.
    public init(row: Row) throws {
        self = try SQLRow(sqlite: row).customer()
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

    /// The same mapping as on PostgreSQL (`SQLRow`), so the two backends read one way.
    public init(row: Row) throws {
        self = try SQLRow(sqlite: row).ledgerEntry()
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

    /// The same mapping as on PostgreSQL (`SQLRow`), so the two backends read one way.
    public init(row: Row) throws {
        self = try SQLRow(sqlite: row).balance()
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
