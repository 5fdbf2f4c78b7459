import Foundation
import GRDB

/// Money at Stripe as MyBA records it: paid Checkout Sessions (`payments`), refunds Stripe
/// reports failed (`failed_refunds`), chargebacks (`disputes`) and the Checkout Sessions the API
/// opened (`checkout_sessions`).
struct PaymentStore {
    let db: Database

    // MARK: Payments

    /// A payment by Checkout Session id (`cs_…`) or PaymentIntent id (`pi_…`), its refunded
    /// amount net of the refunds that failed after the newest snapshot.
    func payment(id: String) throws -> Payment? {
        guard
            let row = try Row.fetchOne(db, sql: "SELECT * FROM payments WHERE checkout_session_id = ? OR payment_intent_id = ?", arguments: [id, id])
        else {
            return nil
        }
        // The newest snapshot less the refunds that failed after it was taken (a snapshot of
        // unknown time, from before snapshots were dated, counts as older than every failure).
        var refunded: Int = row["refunded_amount"]
        if let paymentIntent: String = row["payment_intent_id"] {
            let snapshotAt: Int? = row["refund_snapshot_at"]
            let failed =
                try Int.fetchOne(
                    db,
                    sql: """
                        SELECT COALESCE(SUM(amount), 0) FROM failed_refunds
                        WHERE payment_intent_id = ? AND (? IS NULL OR (refund_created <= ? AND failed_at > ?))
                        """,
                    arguments: [paymentIntent, snapshotAt, snapshotAt, snapshotAt]
                ) ?? 0
            refunded = max(refunded - failed, 0)
        }
        return Payment(
            checkoutSessionId: row["checkout_session_id"],
            paymentIntentId: row["payment_intent_id"],
            userId: row["user_id"],
            planId: row["plan_id"],
            tokens: row["tokens"],
            amountTotal: row["amount_total"],
            currency: row["currency"],
            refundedAmount: refunded,
            refundedTokens: row["refunded_tokens"]
        )
    }

    /// Records a paid session once (a replay keeps the first record).
    func insertIfNew(
        checkoutSessionId: String,
        paymentIntentId: String?,
        userId: String,
        planId: String?,
        tokens: Int,
        amountTotal: Int,
        currency: String,
        at now: Date
    ) throws {
        try db.execute(
            sql: """
                INSERT INTO payments (checkout_session_id, payment_intent_id, user_id, plan_id, tokens, amount_total, currency, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (checkout_session_id) DO NOTHING
                """,
            arguments: [checkoutSessionId, paymentIntentId, userId, planId, tokens, amountTotal, currency, SQLTimestamp.string(now)]
        )
    }

    /// Stores a charge snapshot (`refunded`, capped at the payment's total, as of `at`) unless a
    /// newer one is stored, or one as new that refunds no less.
    func recordRefundSnapshot(checkoutSessionId: String, refunded: Int, cappedAt total: Int, at: Int) throws {
        try db.execute(
            sql: """
                UPDATE payments SET refunded_amount = ?, refund_snapshot_at = ?
                WHERE checkout_session_id = ?
                  AND (refund_snapshot_at IS NULL OR refund_snapshot_at < ? OR (refund_snapshot_at = ? AND refunded_amount < ?))
                """,
            arguments: [min(refunded, total), at, checkoutSessionId, at, at, refunded]
        )
    }

    func setRefundedTokens(_ tokens: Int, checkoutSessionId: String) throws {
        try db.execute(sql: "UPDATE payments SET refunded_tokens = ? WHERE checkout_session_id = ?", arguments: [tokens, checkoutSessionId])
    }

    /// Records a refund Stripe reports failed or canceled, once; returns whether it was new.
    func recordFailedRefund(_ failure: FailedRefund, at now: Date) throws -> Bool {
        try db.execute(
            sql: """
                INSERT INTO failed_refunds (refund_id, payment_intent_id, amount, status, refund_created, failed_at, recorded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (refund_id) DO NOTHING
                """,
            arguments: [
                failure.refundId, failure.paymentIntentId, failure.amount, failure.status, failure.refundCreated, failure.failedAt,
                SQLTimestamp.string(now),
            ]
        )
        return db.changesCount > 0
    }

    // MARK: Disputes

    /// Records an open dispute unless it is known.
    func insertOpenDisputeIfNew(id: String, checkoutSessionId: String, userId: String, amount: Int, at now: Date) throws {
        let stamp = SQLTimestamp.string(now)
        try db.execute(
            sql: """
                INSERT INTO disputes (id, checkout_session_id, user_id, amount, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?)
                ON CONFLICT (id) DO NOTHING
                """,
            arguments: [id, checkoutSessionId, userId, amount, stamp, stamp]
        )
    }

    /// Records a dispute first heard of closed, with its verdict.
    func insertClosedDispute(id: String, checkoutSessionId: String, userId: String, amount: Int, status: String, at now: Date) throws {
        let stamp = SQLTimestamp.string(now)
        try db.execute(
            sql: """
                INSERT INTO disputes (id, checkout_session_id, user_id, amount, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [id, checkoutSessionId, userId, amount, status, stamp, stamp]
        )
    }

    /// A dispute's status, whether its hold was applied, and what the hold took.
    func dispute(id: String) throws -> (status: String, held: Bool, taken: Int)? {
        try Row.fetchOne(db, sql: "SELECT status, held, taken FROM disputes WHERE id = ?", arguments: [id]).map {
            ($0["status"], $0["held"], $0["taken"])
        }
    }

    func markDisputeHeld(id: String, taken: Int, shortfall: Int, at now: Date) throws {
        try db.execute(
            sql: "UPDATE disputes SET held = 1, taken = ?, shortfall = ?, updated_at = ? WHERE id = ?",
            arguments: [taken, shortfall, SQLTimestamp.string(now), id]
        )
    }

    func setDisputeStatus(id: String, status: String, at now: Date) throws {
        try db.execute(sql: "UPDATE disputes SET status = ?, updated_at = ? WHERE id = ?", arguments: [status, SQLTimestamp.string(now), id])
    }

    // MARK: Checkout Sessions

    /// When the account's sessions opened after `since` were opened, oldest first, at most `limit`.
    func checkoutCreationTimes(userId: String, since: String, limit: Int) throws -> [String] {
        try String.fetchAll(
            db,
            sql: """
                SELECT created_at FROM checkout_sessions WHERE user_id = ? AND created_at > ? ORDER BY created_at LIMIT ?
                """,
            arguments: [userId, since, limit]
        )
    }

    /// The account's discounted sessions still open, oldest first, recorded before `sequence`.
    func openDiscountedCheckouts(userId: String, before sequence: Int64) throws -> [String] {
        try String.fetchAll(
            db,
            sql: """
                SELECT id FROM checkout_sessions WHERE user_id = ? AND discounted = 1 AND status = 'open' AND seq < ? ORDER BY seq
                """,
            arguments: [userId, sequence]
        )
    }

    /// Records an opened session unless known; returns its sequence number.
    func recordCheckout(id: String, userId: String, planId: String, amount: Int, discounted: Bool, at now: Date) throws -> Int64 {
        try db.execute(
            sql: """
                INSERT INTO checkout_sessions (id, user_id, plan_id, amount, discounted, status, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)
                ON CONFLICT (id) DO NOTHING
                """,
            arguments: [id, userId, planId, amount, discounted, SQLTimestamp.string(now)]
        )
        return try Int64.fetchOne(db, sql: "SELECT seq FROM checkout_sessions WHERE id = ?", arguments: [id]) ?? 0
    }

    /// Open sessions move to `complete` or `expired`; a completed one stays completed.
    func markCheckout(id: String, status: String) throws {
        try db.execute(sql: "UPDATE checkout_sessions SET status = ? WHERE id = ? AND status = 'open'", arguments: [status, id])
    }

    /// Who opened Checkout Session `id`, if MyBA opened it.
    func checkoutBuyer(id: String) throws -> String? {
        try String.fetchOne(db, sql: "SELECT user_id FROM checkout_sessions WHERE id = ?", arguments: [id])
    }
}
