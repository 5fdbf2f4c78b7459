import Foundation
import GRDB

/// The SQL of the ledger's hot path, as cached prepared statements with hand-written row
/// mapping: a consume runs four statements and no Codable round trip, which keeps the ledger
/// close to the speed of a bare UPDATE transaction (see BENCHMARKS.md).
enum LedgerStatements {
    static func entry(idempotencyKey: String, in db: Database) throws -> LedgerEntry? {
        let statement = try db.cachedStatement(sql: "SELECT * FROM ledger_entries WHERE idempotency_key = ?")
        return try LedgerEntry.fetchOne(statement, arguments: [idempotencyKey])
    }

    static func balance(userId: String, in db: Database) throws -> Balance? {
        let statement = try db.cachedStatement(
            sql: """
                SELECT tokens, tokens_used, tokens_purchased, tokens_transferred, last_purchase, transfer_date, updated_at
                FROM balances WHERE user_id = ?
                """
        )
        guard let row = try Row.fetchOne(statement, arguments: [userId]) else { return nil }
        return Balance(
            userId: userId,
            tokens: row[0],
            tokensUsed: row[1],
            tokensPurchased: row[2],
            tokensTransferred: row[3],
            lastPurchase: row.timestamp(at: 4),
            transferDate: row.timestamp(at: 5),
            updatedAt: row.timestamp(at: 6) ?? Date(timeIntervalSince1970: 0)
        )
    }

    /// Inserts `entry` unless its idempotency key exists; returns whether it was inserted. The
    /// unique index answers the existence question during the insert itself, so the common case
    /// (a new key) costs no separate lookup.
    static func insertIfNewKey(_ entry: inout LedgerEntry, in db: Database) throws -> Bool {
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO ledger_entries (user_id, kind, delta, used_delta, purchased_delta, transferred_delta,
                    sets_last_purchase, sets_transfer_date, idempotency_key, reference, actor, reason, request_id, created_at, shortfall)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (idempotency_key) DO NOTHING
                """
        )
        try statement.execute(arguments: [
            entry.userId, entry.kind.rawValue, entry.delta, entry.usedDelta, entry.purchasedDelta, entry.transferredDelta,
            entry.setsLastPurchase.map(SQLTimestamp.string), entry.setsTransferDate.map(SQLTimestamp.string),
            entry.idempotencyKey, entry.reference, entry.actor, entry.reason, entry.requestId, SQLTimestamp.string(entry.createdAt),
            entry.shortfall,
        ])
        guard db.changesCount == 1 else { return false }
        entry.id = db.lastInsertedRowID
        let kind = entry.kind
        let delta = entry.delta
        let userId = entry.userId
        db.afterCommit {
            MyBAMetrics.recordCommittedEntry(kind: kind, delta: delta)
            BalanceChanges.shared.notify(userId: userId)
        }
        return true
    }

    /// Marks `userId`'s Stripe metadata as behind the ledger (coalesced: one row per customer).
    static func enqueueMirror(userId: String, now: Date, in db: Database) throws {
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO stripe_outbox (user_id, changes, pending_since, attempts, next_attempt_at) VALUES (?, 1, ?, 0, ?)
                ON CONFLICT (user_id) DO UPDATE SET changes = changes + 1
                """
        )
        let timestamp = SQLTimestamp.string(now)
        try statement.execute(arguments: [userId, timestamp, timestamp])
    }

    static func update(_ balance: Balance, in db: Database) throws {
        let statement = try db.cachedStatement(
            sql: """
                UPDATE balances SET tokens = ?, tokens_used = ?, tokens_purchased = ?, tokens_transferred = ?,
                    last_purchase = ?, transfer_date = ?, updated_at = ?
                WHERE user_id = ?
                """
        )
        try statement.execute(arguments: [
            balance.tokens, balance.tokensUsed, balance.tokensPurchased, balance.tokensTransferred,
            balance.lastPurchase.map(SQLTimestamp.string), balance.transferDate.map(SQLTimestamp.string),
            SQLTimestamp.string(balance.updatedAt), balance.userId,
        ])
    }
}
