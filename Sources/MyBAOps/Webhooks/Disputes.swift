import Foundation

/// A chargeback: the customer's bank disputes a purchase.
///
/// While a dispute is open, what is left of the disputed share of the purchase's tokens is held
/// back (an `adjust` entry, key `dispute:<dp_…>`, never below zero; what was already spent is
/// recorded as the dispute's shortfall). A dispute closed in the merchant's favour gives the held
/// tokens back (`dispute_won:<dp_…>`); a lost one keeps them. Each applies once, whatever the
/// order or number of deliveries: `charge.dispute.closed` (won) arriving before
/// `charge.dispute.created` means nothing is ever held, and a lost one arriving first still lets
/// the hold apply when its creation arrives.
public struct DisputeOutcome: Equatable, Sendable {
    public var message: String
    public var entry: LedgerEntry?
}

extension Payments {
    static func disputeOpened(
        disputeId: String,
        paymentIntent: String,
        amount: Int,
        reason: String?,
        actor: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> DisputeOutcome {
        guard let payment = try tx.payments.payment(id: paymentIntent) else { throw PaymentError.unknownPayment(paymentIntent) }
        try tx.payments.insertOpenDisputeIfNew(
            id: disputeId,
            checkoutSessionId: payment.checkoutSessionId,
            userId: payment.userId,
            amount: amount,
            at: now
        )
        guard let row = try tx.payments.dispute(id: disputeId) else {
            throw PaymentError.invalidEvent("dispute \(disputeId) could not be recorded")
        }
        if row.held { return DisputeOutcome(message: "dispute \(disputeId) was already applied", entry: nil) }
        if row.status == "won" {
            return DisputeOutcome(message: "dispute \(disputeId) was already won; nothing held back", entry: nil)
        }
        // The disputed share of the purchase, less what refunds already took back.
        let share = payment.tokensRefunded(atCumulativeAmount: amount)
        let owed = max(min(share, payment.tokens - payment.refundedTokens), 0)
        let balance = try tx.ledger.balance(userId: payment.userId) ?? .empty(userId: payment.userId, at: now)
        let taken = min(owed, balance.tokens)
        var entry: LedgerEntry?
        if taken > 0 {
            entry = try Ledger.post(
                LedgerPosting(
                    userId: payment.userId,
                    kind: .adjust,
                    delta: -taken,
                    idempotencyKey: "dispute:\(disputeId)",
                    reference: payment.checkoutSessionId,
                    actor: actor,
                    reason: "dispute \(disputeId) opened (\(reason ?? "no reason given")): held back",
                    requestId: requestId
                ),
                now: now,
                in: tx
            ).entry
        }
        try tx.payments.markDisputeHeld(id: disputeId, taken: taken, shortfall: owed - taken, at: now)
        var message = "dispute \(disputeId): held back \(taken) tokens of \(payment.userId) for \(payment.checkoutSessionId)"
        if owed > taken { message += "; shortfall \(owed - taken) (already spent)" }
        return DisputeOutcome(message: message, entry: entry)
    }

    static func disputeClosed(
        disputeId: String,
        paymentIntent: String,
        amount: Int,
        status: String,
        actor: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> DisputeOutcome {
        guard status == "won" || status == "lost" else {
            return DisputeOutcome(message: "dispute \(disputeId) closed as \(status); nothing to change", entry: nil)
        }
        guard let payment = try tx.payments.payment(id: paymentIntent) else { throw PaymentError.unknownPayment(paymentIntent) }
        guard let row = try tx.payments.dispute(id: disputeId) else {
            // Closed before its creation arrived: remember the verdict; a won dispute then never
            // holds anything, a lost one holds when its creation arrives.
            try tx.payments.insertClosedDispute(
                id: disputeId,
                checkoutSessionId: payment.checkoutSessionId,
                userId: payment.userId,
                amount: amount,
                status: status,
                at: now
            )
            return DisputeOutcome(message: "dispute \(disputeId) \(status) before it was opened here; recorded", entry: nil)
        }
        let previous = row.status
        guard previous == "open" else { return DisputeOutcome(message: "dispute \(disputeId) was already \(previous)", entry: nil) }
        try tx.payments.setDisputeStatus(id: disputeId, status: status, at: now)
        let taken = row.taken
        guard status == "won", taken > 0 else {
            return DisputeOutcome(
                message: status == "won"
                    ? "dispute \(disputeId) won; nothing had been held back" : "dispute \(disputeId) lost; the \(taken) held tokens stay taken back",
                entry: nil
            )
        }
        let entry = try Ledger.post(
            LedgerPosting(
                userId: payment.userId,
                kind: .adjust,
                delta: taken,
                idempotencyKey: "dispute_won:\(disputeId)",
                reference: payment.checkoutSessionId,
                actor: actor,
                reason: "dispute \(disputeId) won: held tokens given back",
                requestId: requestId
            ),
            now: now,
            in: tx
        ).entry
        return DisputeOutcome(message: "dispute \(disputeId) won: gave back \(taken) tokens to \(payment.userId)", entry: entry)
    }
}
