import Foundation
import GRDB

/// A paid Checkout Session, as refunds see it.
public struct Payment: Equatable, Sendable {
    public var checkoutSessionId: String
    public var paymentIntentId: String?
    public var userId: String
    public var planId: String?
    public var tokens: Int
    public var amountTotal: Int
    public var currency: String
    public var refundedAmount: Int
    public var refundedTokens: Int
}

extension Payment {
    /// The tokens to have taken back once `amount` (cumulative) is refunded: the refunded share,
    /// rounded down in the customer's favour, all of them for a full refund.
    public func tokensRefunded(atCumulativeAmount amount: Int) -> Int {
        amount >= amountTotal ? tokens : tokens * max(amount, 0) / max(amountTotal, 1)
    }
}

extension AppDatabase {
    /// The plan of refunding `amount` more of a payment: balances before and after, no writes.
    public func planRefund(payment: Payment, amount: Int) async throws -> MutationPlan {
        let cumulative = min(payment.refundedAmount + amount, payment.amountTotal)
        let owed = payment.tokensRefunded(atCumulativeAmount: cumulative) - payment.refundedTokens
        guard let before = try await balance(userId: payment.userId) else { throw LedgerError.unknownCustomer(userId: payment.userId) }
        let taken = min(max(owed, 0), before.tokens)
        let after = before.applying(LedgerEffect(tokens: -taken, purchased: -taken), at: Date())
        let key = "refund:\(payment.paymentIntentId ?? payment.checkoutSessionId):\(cumulative)"
        return MutationPlan(
            userId: payment.userId, before: before, after: after,
            entries: owed > 0 ? ["payment_refund -\(taken) key \(key)" + (owed > taken ? " (shortfall \(owed - taken))" : "")] : [],
            stripeCalls: ["POST /v1/refunds payment_intent=\(payment.paymentIntentId ?? "?") amount=\(amount)"])
    }
}

/// What a refund did to tokens.
public struct RefundOutcome: Equatable, Sendable {
    /// Tokens taken back now.
    public var taken: Int
    /// Tokens owed back that had already been spent.
    public var shortfall: Int
    public var entry: LedgerEntry?
    public var balance: Balance
}

/// Why a payment change could not be applied.
public enum PaymentError: Error, Equatable, CustomStringConvertible, Sendable {
    case unknownPayment(String)
    case invalidEvent(String)

    public var description: String {
        switch self {
        case .unknownPayment(let id): return "no purchase is recorded for \(id) (its checkout event may not have arrived yet)"
        case .invalidEvent(let why): return why
        }
    }
}

extension AppDatabase {
    public func payment(id: String) async throws -> Payment? {
        try await writer.read { db in try Self.fetchPayment(id: id, in: db) }
    }

    /// A payment by Checkout Session id (`cs_…`) or PaymentIntent id (`pi_…`).
    static func fetchPayment(id: String, in db: Database) throws -> Payment? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM payments WHERE checkout_session_id = ? OR payment_intent_id = ?", arguments: [id, id]) else {
            return nil
        }
        return Payment(
            checkoutSessionId: row["checkout_session_id"], paymentIntentId: row["payment_intent_id"], userId: row["user_id"],
            planId: row["plan_id"], tokens: row["tokens"], amountTotal: row["amount_total"], currency: row["currency"],
            refundedAmount: row["refunded_amount"], refundedTokens: row["refunded_tokens"])
    }

    /// Grants a paid Checkout Session's tokens once (key `purchase:<cs_id>`) and records the payment.
    static func recordPurchase(
        checkoutSessionId: String, paymentIntentId: String?, stripeCustomerId: String?, userId: String, planId: String?,
        tokens: Int, amountTotal: Int, currency: String, actor: String, requestId: String?, now: Date, in db: Database
    ) throws -> PostingResult {
        try insertCustomerIfMissing(userId: userId, email: nil, now: now, in: db)
        if let stripeCustomerId {
            // Keep the first Stripe customer we learn of; never steal one linked to another user.
            try db.execute(sql: """
                UPDATE customers SET stripe_customer_id = ?
                WHERE user_id = ? AND stripe_customer_id IS NULL
                  AND NOT EXISTS (SELECT 1 FROM customers WHERE stripe_customer_id = ?)
                """, arguments: [stripeCustomerId, userId, stripeCustomerId])
        }
        let result = try post(
            LedgerPosting(userId: userId, kind: .purchase, delta: tokens, idempotencyKey: "purchase:\(checkoutSessionId)",
                          reference: checkoutSessionId, actor: actor, reason: planId.map { "plan \($0)" }, requestId: requestId),
            now: now, in: db)
        try db.execute(sql: """
            INSERT INTO payments (checkout_session_id, payment_intent_id, user_id, plan_id, tokens, amount_total, currency, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (checkout_session_id) DO NOTHING
            """, arguments: [checkoutSessionId, paymentIntentId, userId, planId, tokens, amountTotal, currency, SQLTimestamp.string(now)])
        return result
    }

    /// Brings the tokens taken back for a payment in line with the cumulative amount refunded
    /// (Stripe's `amount_refunded`): the refunded share of the purchase's tokens, never taking the
    /// balance below zero; what cannot be taken is recorded as the entry's shortfall. Applying the
    /// same cumulative amount twice changes nothing.
    static func applyRefund(paymentId: String, amountRefunded: Int, actor: String, requestId: String?, now: Date, in db: Database) throws -> RefundOutcome {
        guard let payment = try fetchPayment(id: paymentId, in: db) else { throw PaymentError.unknownPayment(paymentId) }
        guard amountRefunded >= 0 else { throw PaymentError.invalidEvent("amount_refunded is negative") }
        let refunded = min(amountRefunded, payment.amountTotal)
        let target = payment.tokensRefunded(atCumulativeAmount: refunded)
        let owed = target - payment.refundedTokens
        let current = try LedgerStatements.balance(userId: payment.userId, in: db) ?? .empty(userId: payment.userId, at: now)
        guard owed > 0 else {
            try db.execute(sql: "UPDATE payments SET refunded_amount = max(refunded_amount, ?) WHERE checkout_session_id = ?", arguments: [refunded, payment.checkoutSessionId])
            return RefundOutcome(taken: 0, shortfall: 0, entry: nil, balance: current)
        }
        let taken = min(owed, current.tokens)
        let shortfall = owed - taken
        let result = try post(
            LedgerPosting(userId: payment.userId, kind: .paymentRefund, delta: -taken,
                          idempotencyKey: "refund:\(payment.paymentIntentId ?? payment.checkoutSessionId):\(refunded)",
                          reference: payment.checkoutSessionId, actor: actor,
                          reason: "refund of \(refunded) of \(payment.amountTotal) \(payment.currency)", requestId: requestId, shortfall: shortfall),
            now: now, in: db)
        try db.execute(sql: "UPDATE payments SET refunded_amount = ?, refunded_tokens = ? WHERE checkout_session_id = ?",
                       arguments: [refunded, target, payment.checkoutSessionId])
        return RefundOutcome(taken: taken, shortfall: shortfall, entry: result.entry, balance: result.balance)
    }
}

extension AppDatabase {
    /// True when the customer has bought nothing yet (the first-purchase discount applies): no
    /// purchase entry, and no purchases carried over from the legacy store by the import.
    public func isFirstPurchase(userId: String) async throws -> Bool {
        try await writer.read { db in
            let purchased = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries WHERE user_id = ? AND kind = 'purchase'", arguments: [userId]) ?? 0
            let carried = try Int.fetchOne(db, sql: "SELECT tokens_purchased FROM balances WHERE user_id = ?", arguments: [userId]) ?? 0
            return purchased == 0 && carried == 0
        }
    }

    /// Records the customer's Stripe customer id unless one is already set; returns the id in use.
    public func linkStripeCustomer(userId: String, stripeCustomerId: String) async throws -> String {
        try await immediateWrite { db in
            try db.execute(sql: "UPDATE customers SET stripe_customer_id = ? WHERE user_id = ? AND stripe_customer_id IS NULL",
                           arguments: [stripeCustomerId, userId])
            return try String.fetchOne(db, sql: "SELECT stripe_customer_id FROM customers WHERE user_id = ?", arguments: [userId]) ?? stripeCustomerId
        }
    }
}
