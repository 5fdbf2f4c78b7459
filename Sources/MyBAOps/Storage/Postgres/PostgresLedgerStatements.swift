import Foundation
import PostgresNIO

/// The ledger's statements on PostgreSQL, behind `LedgerStore` (which answers with SQLite's
/// otherwise). Binds are postgres-nio's interpolation, never text pasted into SQL.
enum PostgresLedgerStatements {
    static let entryColumns = """
        id, user_id, kind, delta, used_delta, purchased_delta, transferred_delta, sets_last_purchase, sets_transfer_date,
        idempotency_key, reference, actor, reason, request_id, created_at, shortfall
        """

    static func entry(idempotencyKey: String, in session: PostgresSession) throws -> LedgerEntry? {
        var query = PostgresQuery(unsafeSQL: "SELECT \(entryColumns) FROM ledger_entries WHERE idempotency_key = $1")
        query.binds.append(idempotencyKey, context: .default)
        return try session.rows(query).first.map(ledgerEntry)
    }

    static func entries(userId: String, limit: Int, in session: PostgresSession) throws -> [LedgerEntry] {
        var query = PostgresQuery(unsafeSQL: "SELECT \(entryColumns) FROM ledger_entries WHERE user_id = $1 ORDER BY id DESC LIMIT $2")
        query.binds.append(userId, context: .default)
        query.binds.append(limit, context: .default)
        return try session.rows(query).map(ledgerEntry)
    }

    static func ledgerEntry(_ row: PostgresRow) throws -> LedgerEntry {
        let (id, userId, kind, delta, used, purchased, transferred, setsLastPurchase, setsTransferDate) =
            try row.decode((Int64, String, String, Int, Int, Int, Int, Date?, Date?).self)
        let cells = row.makeRandomAccess()
        guard let entryKind = LedgerEntryKind(rawValue: kind) else {
            throw LedgerError.invalidPosting("ledger entry \(id) has an unknown kind \(kind)")
        }
        return LedgerEntry(
            id: id,
            userId: userId,
            kind: entryKind,
            delta: delta,
            usedDelta: used,
            purchasedDelta: purchased,
            transferredDelta: transferred,
            setsLastPurchase: setsLastPurchase.map(SQLTimestamp.fromPostgres),
            setsTransferDate: setsTransferDate.map(SQLTimestamp.fromPostgres),
            idempotencyKey: try cells["idempotency_key"].decode(String.self),
            reference: try cells["reference"].decode(String?.self),
            actor: try cells["actor"].decode(String.self),
            reason: try cells["reason"].decode(String?.self),
            requestId: try cells["request_id"].decode(String?.self),
            createdAt: SQLTimestamp.fromPostgres(try cells["created_at"].decode(Date.self)),
            shortfall: try cells["shortfall"].decode(Int.self)
        )
    }

    /// The balance of `userId`. In a write transaction the row is locked until commit: writers
    /// of one account (on any server) take their turns on it, and each sees the balance the
    /// previous one left, which is what the ledger's check relies on.
    static func balance(userId: String, in session: PostgresSession) throws -> Balance? {
        let lock = session.writing ? " FOR UPDATE" : ""
        var query = PostgresQuery(
            unsafeSQL: """
                SELECT tokens, tokens_used, tokens_purchased, tokens_transferred, last_purchase, transfer_date, updated_at
                FROM balances WHERE user_id = $1\(lock)
                """
        )
        query.binds.append(userId, context: .default)
        guard let row = try session.rows(query).first else { return nil }
        let (tokens, used, purchased, transferred, lastPurchase, transferDate, updatedAt) =
            try row.decode((Int, Int, Int, Int, Date?, Date?, Date).self)
        return Balance(
            userId: userId,
            tokens: tokens,
            tokensUsed: used,
            tokensPurchased: purchased,
            tokensTransferred: transferred,
            lastPurchase: lastPurchase.map(SQLTimestamp.fromPostgres),
            transferDate: transferDate.map(SQLTimestamp.fromPostgres),
            updatedAt: SQLTimestamp.fromPostgres(updatedAt)
        )
    }

    /// Inserts `entry` unless its key exists; its new id, or nil when the key was taken. A
    /// concurrent transaction inserting the same key makes this one wait for its outcome. A new
    /// entry also tells every server listening on this database (`relayBalanceChanges`) that
    /// the user's balance changed: `pg_notify` in the same statement, delivered on commit only.
    static func insertIfNewKey(_ entry: LedgerEntry, in session: PostgresSession) throws -> Int64? {
        let rows = try session.rows(
            """
            INSERT INTO ledger_entries (user_id, kind, delta, used_delta, purchased_delta, transferred_delta,
                sets_last_purchase, sets_transfer_date, idempotency_key, reference, actor, reason, request_id, created_at, shortfall)
            VALUES (\(entry.userId), \(entry.kind.rawValue), \(entry.delta), \(entry.usedDelta), \(entry.purchasedDelta),
                \(entry.transferredDelta), \(entry.setsLastPurchase?.truncatedToMilliseconds), \(entry.setsTransferDate?.truncatedToMilliseconds), \(entry.idempotencyKey),
                \(entry.reference), \(entry.actor), \(entry.reason), \(entry.requestId), \(entry.createdAt.truncatedToMilliseconds), \(entry.shortfall))
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id, pg_notify(\(PostgresEngine.balanceChannel), user_id)
            """
        )
        return try rows.first.map { try $0.makeRandomAccess()[0].decode(Int64.self) }
    }

    static func update(_ balance: Balance, in session: PostgresSession) throws {
        try session.rows(
            """
            UPDATE balances SET tokens = \(balance.tokens), tokens_used = \(balance.tokensUsed), tokens_purchased = \(balance.tokensPurchased),
                tokens_transferred = \(balance.tokensTransferred), last_purchase = \(balance.lastPurchase?.truncatedToMilliseconds),
                transfer_date = \(balance.transferDate?.truncatedToMilliseconds), updated_at = \(balance.updatedAt.truncatedToMilliseconds)
            WHERE user_id = \(balance.userId)
            """
        )
    }

    static func customer(userId: String, in session: PostgresSession) throws -> Customer? {
        let rows = try session.rows(
            "SELECT user_id, email, stripe_customer_id, created_at, deleted_at FROM customers WHERE user_id = \(userId)"
        )
        guard let row = rows.first else { return nil }
        let (id, email, stripeCustomerId, createdAt, deletedAt) = try row.decode((String, String?, String?, Date, Date?).self)
        return Customer(
            userId: id,
            email: email,
            stripeCustomerId: stripeCustomerId,
            createdAt: SQLTimestamp.fromPostgres(createdAt),
            deletedAt: deletedAt.map(SQLTimestamp.fromPostgres)
        )
    }

    /// Makes the rules that open an account or decide from its being empty (`import
    /// from-stripe`) take turns until commit, across servers: the balance row they would lock
    /// may not exist yet.
    static func lockAccount(userId: String, in session: PostgresSession) throws {
        try session.rows("SELECT pg_advisory_xact_lock(hashtextextended(\("account:" + userId), 0))")
    }

    /// Creates the customer and its zero balance when missing (two servers opening one account
    /// at once: one inserts, the other finds it), filling in an email the stored one lacks.
    static func createCustomerIfMissing(userId: String, email: String?, now: Date, in session: PostgresSession) throws -> Customer {
        try lockAccount(userId: userId, in: session)
        let inserted = try session.rows(
            """
            INSERT INTO customers (user_id, email, created_at) VALUES (\(userId), \(email), \(now.truncatedToMilliseconds))
            ON CONFLICT (user_id) DO NOTHING RETURNING user_id
            """
        )
        if !inserted.isEmpty {
            try session.rows("INSERT INTO balances (user_id, updated_at) VALUES (\(userId), \(now.truncatedToMilliseconds))")
        } else if let email {
            try session.rows("UPDATE customers SET email = \(email) WHERE user_id = \(userId) AND email IS NULL")
        }
        guard let customer = try customer(userId: userId, in: session) else {
            throw LedgerError.unknownCustomer(userId: userId)
        }
        return customer
    }
}
