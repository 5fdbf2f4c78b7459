import Foundation
import GRDB

/// The Stripe outbox (`stripe_outbox`): one row per customer whose Stripe metadata is behind
/// the ledger, written in the transaction of every balance change and drained by the mirror.
struct StripeOutboxStore {
    let sqlite: Database?
    let postgres: PostgresSession?

    /// SQLite's connection; on PostgreSQL, an error for what has no PostgreSQL statement yet.
    private var db: Database {
        get throws { try StorageTransaction.sqlite(sqlite, for: "the Stripe outbox's queue") }
    }

    /// Marks `userId`'s Stripe metadata as behind the ledger (coalesced: one row per customer).
    /// On the ledger's hot path: a cached statement.
    func enqueue(userId: String, now: Date) throws {
        if let postgres {
            try postgres.rows(
                """
                INSERT INTO stripe_outbox (user_id, changes, pending_since, attempts, next_attempt_at) VALUES (\(userId), 1, \(now), 0, \(now))
                ON CONFLICT (user_id) DO UPDATE SET changes = stripe_outbox.changes + 1
                """
            )
            return
        }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO stripe_outbox (user_id, changes, pending_since, attempts, next_attempt_at) VALUES (?, 1, ?, 0, ?)
                ON CONFLICT (user_id) DO UPDATE SET changes = changes + 1
                """
        )
        let timestamp = SQLTimestamp.string(now)
        try statement.execute(arguments: [userId, timestamp, timestamp])
    }

    func contains(userId: String) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM stripe_outbox WHERE user_id = ?", arguments: [userId]) ?? false
    }

    /// Every user with a row.
    func userIds() throws -> [String] {
        try String.fetchAll(db, sql: "SELECT user_id FROM stripe_outbox")
    }

    /// Every row, next attempt first.
    func rows() throws -> [PendingPush] {
        try Row.fetchAll(
            db,
            sql: "SELECT user_id, pending_since, attempts, next_attempt_at, last_error FROM stripe_outbox ORDER BY next_attempt_at"
        ).map { row in
            PendingPush(
                userId: row["user_id"],
                pendingSince: row["pending_since"],
                attempts: row["attempts"],
                nextAttemptAt: row["next_attempt_at"],
                lastError: row["last_error"]
            )
        }
    }

    func count() throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM stripe_outbox") ?? 0
    }

    /// The oldest row's `pending_since` as stored.
    func oldestPendingSinceText() throws -> String? {
        try String.fetchOne(db, sql: "SELECT MIN(pending_since) FROM stripe_outbox")
    }

    /// Users due for a push at `now`, longest pending first.
    func due(now: Date, limit: Int) throws -> [String] {
        try String.fetchAll(
            db,
            sql: "SELECT user_id FROM stripe_outbox WHERE next_attempt_at <= ? ORDER BY pending_since LIMIT ?",
            arguments: [SQLTimestamp.string(now), limit]
        )
    }

    /// The row's change count and failed attempts, nil when there is none.
    func changesAndAttempts(userId: String) throws -> (changes: Int, attempts: Int)? {
        try Row.fetchOne(db, sql: "SELECT changes, attempts FROM stripe_outbox WHERE user_id = ?", arguments: [userId]).map {
            ($0["changes"], $0["attempts"])
        }
    }

    func attempts(userId: String) throws -> Int? {
        try Int.fetchOne(db, sql: "SELECT attempts FROM stripe_outbox WHERE user_id = ?", arguments: [userId])
    }

    /// Puts the next attempt off to `next`, with why, without counting a failure.
    func postpone(userId: String, until next: Date, note: String) throws {
        try db.execute(
            sql: "UPDATE stripe_outbox SET last_error = ?, next_attempt_at = ? WHERE user_id = ?",
            arguments: [note, SQLTimestamp.string(next), userId]
        )
    }

    func recordFailure(userId: String, attempts: Int, error: String, nextAttemptAt: Date) throws {
        try db.execute(
            sql: "UPDATE stripe_outbox SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE user_id = ?",
            arguments: [attempts, error, SQLTimestamp.string(nextAttemptAt), userId]
        )
    }

    /// Removes the row if it still counts `changes` (nothing changed while pushing); returns
    /// whether it did.
    func remove(userId: String, ifChanges changes: Int) throws -> Bool {
        try db.execute(sql: "DELETE FROM stripe_outbox WHERE user_id = ? AND changes = ?", arguments: [userId, changes])
        return try db.changesCount > 0
    }

    func remove(userId: String) throws {
        try db.execute(sql: "DELETE FROM stripe_outbox WHERE user_id = ?", arguments: [userId])
    }

    /// Clears the row's failures, for another push soon.
    func resetAttempts(userId: String) throws {
        try db.execute(sql: "UPDATE stripe_outbox SET attempts = 0, last_error = NULL WHERE user_id = ?", arguments: [userId])
    }

    /// Clears the row's failures and makes it due at `now`.
    func makeDue(userId: String, now: Date) throws {
        try db.execute(
            sql: "UPDATE stripe_outbox SET attempts = 0, last_error = NULL, next_attempt_at = ? WHERE user_id = ?",
            arguments: [SQLTimestamp.string(now), userId]
        )
    }
}
