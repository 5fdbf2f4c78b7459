import Foundation
import GRDB

/// The Stripe outbox (`stripe_outbox`): one row per customer whose Stripe metadata is behind
/// the ledger, written in the transaction of every balance change and drained by the mirror.
struct StripeOutboxStore {
    let sql: SQLConnection

    /// Marks `userId`'s Stripe metadata as behind the ledger (coalesced: one row per customer).
    /// On the ledger's hot path: a cached statement on SQLite.
    func enqueue(userId: String, now: Date) throws {
        guard let db = sql.sqlite else {
            try sql.execute(
                """
                INSERT INTO stripe_outbox (user_id, changes, pending_since, attempts, next_attempt_at) VALUES (?, 1, ?, 0, ?)
                ON CONFLICT (user_id) DO UPDATE SET changes = stripe_outbox.changes + 1
                """,
                [userId, now, now]
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
        try sql.fetchOne("SELECT 1 FROM stripe_outbox WHERE user_id = ?", [userId]) != nil
    }

    /// Every user with a row.
    func userIds() throws -> [String] {
        try sql.values("SELECT user_id FROM stripe_outbox")
    }

    /// Every row, next attempt first.
    func rows() throws -> [PendingPush] {
        try sql.fetchAll("SELECT user_id, pending_since, attempts, next_attempt_at, last_error FROM stripe_outbox ORDER BY next_attempt_at").map {
            row in
            PendingPush(
                userId: try row.get("user_id"),
                pendingSince: try row.get("pending_since"),
                attempts: try row.get("attempts"),
                nextAttemptAt: try row.get("next_attempt_at"),
                lastError: try row.get("last_error")
            )
        }
    }

    func count() throws -> Int {
        try sql.value("SELECT COUNT(*) FROM stripe_outbox") ?? 0
    }

    /// The oldest row's `pending_since` as stored.
    func oldestPendingSinceText() throws -> String? {
        try sql.value("SELECT MIN(pending_since) FROM stripe_outbox", as: StoredTimestamp.self)?.text
    }

    /// Users due for a push at `now`, longest pending first.
    func due(now: Date, limit: Int) throws -> [String] {
        try sql.values("SELECT user_id FROM stripe_outbox WHERE next_attempt_at <= ? ORDER BY pending_since LIMIT ?", [now, limit])
    }

    /// The users this process may push now. On PostgreSQL they are claimed: leased for
    /// `leaseSeconds` (by the database's clock, so servers' clocks need not agree) and skipped
    /// by other servers meanwhile (`FOR UPDATE SKIP LOCKED`), so two servers never push one
    /// customer at once; a server that dies mid-push leaves the row to the others once the lease
    /// runs out. SQLite has one writer: the due rows themselves.
    func claimDue(now: Date, limit: Int, leaseSeconds: Int) throws -> [String] {
        guard sql.isPostgres else { return try due(now: now, limit: limit) }
        return try sql.values(
            """
            UPDATE stripe_outbox SET lease_until = now() + make_interval(secs => ?) WHERE user_id IN (
                SELECT user_id FROM stripe_outbox WHERE next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= now())
                ORDER BY pending_since LIMIT ? FOR UPDATE SKIP LOCKED)
            RETURNING user_id
            """,
            [leaseSeconds, now, limit]
        )
    }

    /// Ends this process's claim on the row (PostgreSQL's lease column).
    private var releasingLease: String { sql.isPostgres ? ", lease_until = NULL" : "" }

    /// The row's change count and failed attempts, nil when there is none.
    func changesAndAttempts(userId: String) throws -> (changes: Int, attempts: Int)? {
        try sql.fetchOne("SELECT changes, attempts FROM stripe_outbox WHERE user_id = ?", [userId]).map {
            (try $0.get("changes"), try $0.get("attempts"))
        }
    }

    func attempts(userId: String) throws -> Int? {
        try sql.value("SELECT attempts FROM stripe_outbox WHERE user_id = ?", [userId])
    }

    /// Puts the next attempt off to `next`, with why, without counting a failure.
    func postpone(userId: String, until next: Date, note: String) throws {
        try sql.execute("UPDATE stripe_outbox SET last_error = ?, next_attempt_at = ?\(releasingLease) WHERE user_id = ?", [note, next, userId])
    }

    func recordFailure(userId: String, attempts: Int, error: String, nextAttemptAt: Date) throws {
        try sql.execute(
            "UPDATE stripe_outbox SET attempts = ?, last_error = ?, next_attempt_at = ?\(releasingLease) WHERE user_id = ?",
            [attempts, error, nextAttemptAt, userId]
        )
    }

    /// Removes the row if it still counts `changes` (nothing changed while pushing); returns
    /// whether it did.
    func remove(userId: String, ifChanges changes: Int) throws -> Bool {
        try sql.execute("DELETE FROM stripe_outbox WHERE user_id = ? AND changes = ?", [userId, changes]) > 0
    }

    func remove(userId: String) throws {
        try sql.execute("DELETE FROM stripe_outbox WHERE user_id = ?", [userId])
    }

    /// Clears the row's failures, for another push soon.
    func resetAttempts(userId: String) throws {
        try sql.execute("UPDATE stripe_outbox SET attempts = 0, last_error = NULL\(releasingLease) WHERE user_id = ?", [userId])
    }

    /// Clears the row's failures and makes it due at `now`.
    func makeDue(userId: String, now: Date) throws {
        try sql.execute("UPDATE stripe_outbox SET attempts = 0, last_error = NULL, next_attempt_at = ? WHERE user_id = ?", [now, userId])
    }
}
