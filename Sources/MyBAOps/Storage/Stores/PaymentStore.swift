import Foundation

/// Money at Stripe as MyBA records it: paid Checkout Sessions (`payments`), refunds Stripe
/// reports failed (`failed_refunds`), chargebacks (`disputes`) and the Checkout Sessions the API
/// opened (`checkout_sessions`).
struct PaymentStore {
    let sql: SQLConnection

    // MARK: Payments

    /// A payment by Checkout Session id (`cs_…`) or PaymentIntent id (`pi_…`), its refunded
    /// amount net of the refunds that failed after the newest snapshot.
    /// In a PostgreSQL write the row stays locked until commit: a refund, a failed refund and a
    /// dispute of one payment take turns, each seeing what the previous one took.
    func payment(id: String) throws -> Payment? {
        guard
            let row = try sql.fetchOne(
                "SELECT * FROM payments WHERE checkout_session_id = ? OR payment_intent_id = ?\(sql.forUpdate)",
                [id, id]
            )
        else {
            return nil
        }
        // The newest snapshot less the refunds that failed after it was taken (a snapshot of
        // unknown time, from before snapshots were dated, counts as older than every failure).
        var refunded: Int = try row.get("refunded_amount")
        if let paymentIntent: String = try row.get("payment_intent_id") {
            let snapshotAt: Int? = try row.get("refund_snapshot_at")
            let failed: Int?
            if let snapshotAt {
                failed = try sql.value(
                    "SELECT COALESCE(SUM(amount), 0) FROM failed_refunds WHERE payment_intent_id = ? AND refund_created <= ? AND failed_at > ?",
                    [paymentIntent, snapshotAt, snapshotAt]
                )
            } else {
                failed = try sql.value("SELECT COALESCE(SUM(amount), 0) FROM failed_refunds WHERE payment_intent_id = ?", [paymentIntent])
            }
            refunded = max(refunded - (failed ?? 0), 0)
        }
        return Payment(
            checkoutSessionId: try row.get("checkout_session_id"),
            paymentIntentId: try row.get("payment_intent_id"),
            userId: try row.get("user_id"),
            planId: try row.get("plan_id"),
            tokens: try row.get("tokens"),
            amountTotal: try row.get("amount_total"),
            currency: try row.get("currency"),
            refundedAmount: refunded,
            refundedTokens: try row.get("refunded_tokens")
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
        try sql.execute(
            """
            INSERT INTO payments (checkout_session_id, payment_intent_id, user_id, plan_id, tokens, amount_total, currency, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (checkout_session_id) DO NOTHING
            """,
            [checkoutSessionId, paymentIntentId, userId, planId, tokens, amountTotal, currency, now]
        )
    }

    /// Stores a charge snapshot (`refunded`, capped at the payment's total, as of `at`) unless a
    /// newer one is stored, or one as new that refunds no less.
    func recordRefundSnapshot(checkoutSessionId: String, refunded: Int, cappedAt total: Int, at: Int) throws {
        try sql.execute(
            """
            UPDATE payments SET refunded_amount = ?, refund_snapshot_at = ?
            WHERE checkout_session_id = ?
              AND (refund_snapshot_at IS NULL OR refund_snapshot_at < ? OR (refund_snapshot_at = ? AND refunded_amount < ?))
            """,
            [min(refunded, total), at, checkoutSessionId, at, at, refunded]
        )
    }

    func setRefundedTokens(_ tokens: Int, checkoutSessionId: String) throws {
        try sql.execute(
            "UPDATE payments SET refunded_tokens = ? WHERE checkout_session_id = ?",
            [tokens, checkoutSessionId]
        )
    }

    /// Records a refund Stripe reports failed or canceled, once; returns whether it was new.
    func recordFailedRefund(_ failure: FailedRefund, at now: Date) throws -> Bool {
        try sql.execute(
            """
            INSERT INTO failed_refunds (refund_id, payment_intent_id, amount, status, refund_created, failed_at, recorded_at)
            VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (refund_id) DO NOTHING
            """,
            [
                failure.refundId, failure.paymentIntentId, failure.amount, failure.status, failure.refundCreated, failure.failedAt,
                now,
            ]
        ) > 0
    }

    /// Makes the grant of Checkout Session `id`'s purchase and an operator's manual credit for
    /// it take turns until commit, across servers (PostgreSQL's advisory lock; SQLite's single
    /// writer already does).
    func lockCheckout(_ id: String) throws {
        try sql.lockUntilCommit("checkout:" + id)
    }

    // MARK: Disputes

    /// Records an open dispute unless it is known.
    func insertOpenDisputeIfNew(id: String, checkoutSessionId: String, userId: String, amount: Int, at now: Date) throws {
        try sql.execute(
            """
            INSERT INTO disputes (id, checkout_session_id, user_id, amount, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?)
            ON CONFLICT (id) DO NOTHING
            """,
            [id, checkoutSessionId, userId, amount, now, now]
        )
    }

    /// Records a dispute first heard of closed, with its verdict.
    func insertClosedDispute(id: String, checkoutSessionId: String, userId: String, amount: Int, status: String, at now: Date) throws {
        try sql.execute(
            """
            INSERT INTO disputes (id, checkout_session_id, user_id, amount, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            [id, checkoutSessionId, userId, amount, status, now, now]
        )
    }

    /// A dispute's status, whether its hold was applied, and what the hold took.
    func dispute(id: String) throws -> (status: String, held: Bool, taken: Int)? {
        try sql.fetchOne("SELECT status, held, taken FROM disputes WHERE id = ?\(sql.forUpdate)", [id]).map {
            (try $0.get("status"), try $0.get("held"), try $0.get("taken"))
        }
    }

    func markDisputeHeld(id: String, taken: Int, shortfall: Int, at now: Date) throws {
        try sql.execute(
            "UPDATE disputes SET held = TRUE, taken = ?, shortfall = ?, updated_at = ? WHERE id = ?",
            [taken, shortfall, now, id]
        )
    }

    func setDisputeStatus(id: String, status: String, at now: Date) throws {
        try sql.execute(
            "UPDATE disputes SET status = ?, updated_at = ? WHERE id = ?",
            [status, now, id]
        )
    }

    // MARK: Checkout Sessions

    /// When the account's sessions opened after `since` were opened, oldest first, at most `limit`.
    func checkoutCreationTimes(userId: String, since: String, limit: Int) throws -> [String] {
        try sql.values(
            "SELECT created_at FROM checkout_sessions WHERE user_id = ? AND created_at > ? ORDER BY created_at LIMIT ?",
            [userId, StoredTimestamp(text: since), limit],
            as: StoredTimestamp.self
        ).map(\.text)
    }

    /// The account's discounted sessions still open, oldest first, recorded before `sequence`.
    func openDiscountedCheckouts(userId: String, before sequence: Int64) throws -> [String] {
        try sql.values(
            "SELECT id FROM checkout_sessions WHERE user_id = ? AND discounted = TRUE AND status = 'open' AND seq < ? ORDER BY seq",
            [userId, sequence]
        )
    }

    /// Records an opened session unless known; returns its sequence number.
    func recordCheckout(id: String, userId: String, planId: String, amount: Int, discounted: Bool, at now: Date) throws -> Int64 {
        try sql.execute(
            """
            INSERT INTO checkout_sessions (id, user_id, plan_id, amount, discounted, status, created_at) VALUES (?, ?, ?, ?, ?, 'open', ?)
            ON CONFLICT (id) DO NOTHING
            """,
            [id, userId, planId, amount, discounted, now]
        )
        return try sql.value("SELECT seq FROM checkout_sessions WHERE id = ?", [id]) ?? 0
    }

    /// Open sessions move to `complete` or `expired`; a completed one stays completed.
    func markCheckout(id: String, status: String) throws {
        try sql.execute(
            "UPDATE checkout_sessions SET status = ? WHERE id = ? AND status = 'open'",
            [status, id]
        )
    }

    /// Who opened Checkout Session `id`, if MyBA opened it.
    func checkoutBuyer(id: String) throws -> String? {
        try sql.value("SELECT user_id FROM checkout_sessions WHERE id = ?", [id])
    }
}
