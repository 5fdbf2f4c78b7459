import Foundation

/// A paid Checkout Session, as refunds see it.
public struct Payment: Equatable, Sendable {
    public var checkoutSessionId: String
    public var paymentIntentId: String?
    public var userId: String
    public var planId: String?
    public var tokens: Int
    public var amountTotal: Int
    public var currency: String
    /// What Stripe has refunded and not seen fail: the newest charge snapshot less the refunds
    /// that failed or were canceled after it.
    public var refundedAmount: Int
    /// The refunded share of `tokens` (taken back, or owed as shortfall).
    public var refundedTokens: Int
}

extension Payment {
    /// The tokens to have taken back once `amount` (cumulative) is refunded: the refunded share,
    /// rounded down in the customer's favour, all of them for a full refund.
    public func tokensRefunded(atCumulativeAmount amount: Int) -> Int {
        amount >= amountTotal ? tokens : tokens * max(amount, 0) / max(amountTotal, 1)
    }
}

extension Payments {
    /// The plan of refunding `amount` more of a payment: balances before and after, no writes.
    public func planRefund(payment: Payment, amount: Int) async throws -> MutationPlan {
        let cumulative = min(payment.refundedAmount + amount, payment.amountTotal)
        let owed = payment.tokensRefunded(atCumulativeAmount: cumulative) - payment.refundedTokens
        guard let before = try await database.ledger.balance(userId: payment.userId) else {
            throw LedgerError.unknownCustomer(userId: payment.userId)
        }
        let taken = min(max(owed, 0), before.tokens)
        let after = before.applying(LedgerEffect(tokens: -taken, purchased: -taken), at: Date())
        let key = "refund:\(payment.paymentIntentId ?? payment.checkoutSessionId):\(cumulative)"
        return MutationPlan(
            userId: payment.userId,
            before: before,
            after: after,
            entries: owed > 0 ? ["payment_refund -\(taken) key \(key)" + (owed > taken ? " (shortfall \(owed - taken))" : "")] : [],
            stripeCalls: ["POST /v1/refunds payment_intent=\(payment.paymentIntentId ?? "?") amount=\(amount)"]
        )
    }
}

/// What a refund did to tokens.
public struct RefundOutcome: Equatable, Sendable {
    /// Tokens taken back now.
    public var taken: Int
    /// Tokens owed back that had already been spent.
    public var shortfall: Int
    /// Tokens given back because a refund failed or was canceled at Stripe.
    public var givenBack: Int
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

extension Payments {
    public func payment(id: String) async throws -> Payment? {
        try await database.read { tx in try tx.payments.payment(id: id) }
    }

    /// Grants a paid Checkout Session's tokens once (key `purchase:<cs_id>`) and records the payment.
    static func recordPurchase(
        checkoutSessionId: String,
        paymentIntentId: String?,
        stripeCustomerId: String?,
        userId: String,
        planId: String?,
        tokens: Int,
        amountTotal: Int,
        currency: String,
        actor: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> PostingResult {
        // The purchase and an operator's credit for it take turns (see `postManualCredit`).
        try tx.payments.lockCheckout(checkoutSessionId)
        try tx.ledger.createCustomerIfMissing(userId: userId, email: nil, now: now)
        if let stripeCustomerId { try tx.ledger.linkStripeCustomerIfFree(stripeCustomerId, userId: userId) }
        let result = try Ledger.post(
            LedgerPosting(
                userId: userId,
                kind: .purchase,
                delta: tokens,
                idempotencyKey: "purchase:\(checkoutSessionId)",
                reference: checkoutSessionId,
                actor: actor,
                reason: planId.map { "plan \($0)" },
                requestId: requestId
            ),
            now: now,
            in: tx
        )
        // An operator who credited this payment by hand before its event arrived
        // (`tokens adjust … --payment cs_…`): the purchase is granted as usual, so its counters
        // are right, and the manual credit is settled against it, once, so the tokens are had once.
        if !result.replayed, let manual = try tx.ledger.entry(idempotencyKey: ManualPurchaseCredit.key(checkoutSessionId)),
            manual.delta > 0
        {
            _ = try Ledger.post(
                LedgerPosting(
                    userId: manual.userId,
                    kind: .adjust,
                    delta: -min(manual.delta, tokens),
                    idempotencyKey: ManualPurchaseCredit.settlementKey(checkoutSessionId),
                    reference: checkoutSessionId,
                    actor: actor,
                    reason: "the purchase of \(checkoutSessionId) arrived: the manual credit #\(manual.id ?? 0) standing for it is settled",
                    requestId: requestId
                ),
                now: now,
                in: tx
            )
        }
        try tx.payments.insertIfNew(
            checkoutSessionId: checkoutSessionId,
            paymentIntentId: paymentIntentId,
            userId: userId,
            planId: planId,
            tokens: tokens,
            amountTotal: amountTotal,
            currency: currency,
            at: now
        )
        return result
    }

    /// Brings the tokens taken back for a payment in line with what Stripe has refunded of it.
    ///
    /// What counts as refunded is the newest charge snapshot (`charge.refunded`'s
    /// `amount_refunded`, ordered by Stripe's `created`; an older snapshot arriving late changes
    /// nothing) less the refunds that failed or were canceled after that snapshot was taken. The
    /// refunded share of the purchase's tokens is taken back, never below zero (what cannot be
    /// taken is the entry's shortfall); when the share shrinks because a refund failed, the
    /// shortfall is forgiven first and the rest given back. Applying the same state twice
    /// changes nothing, in whatever order the events arrive.
    static func applyRefund(
        paymentId: String,
        snapshot: RefundSnapshot?,
        actor: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> RefundOutcome {
        guard var payment = try tx.payments.payment(id: paymentId) else { throw PaymentError.unknownPayment(paymentId) }
        if let snapshot {
            guard snapshot.amountRefunded >= 0 else { throw PaymentError.invalidEvent("amount_refunded is negative") }
            let at = snapshot.at ?? Int(now.timeIntervalSince1970)
            try tx.payments.recordRefundSnapshot(
                checkoutSessionId: payment.checkoutSessionId,
                refunded: snapshot.amountRefunded,
                cappedAt: payment.amountTotal,
                at: at
            )
            payment = try tx.payments.payment(id: paymentId) ?? payment
        }
        let refunded = payment.refundedAmount
        let target = payment.tokensRefunded(atCumulativeAmount: refunded)
        let owed = target - payment.refundedTokens
        let current = try tx.ledger.balance(userId: payment.userId) ?? .empty(userId: payment.userId, at: now)
        guard owed != 0 else { return RefundOutcome(taken: 0, shortfall: 0, givenBack: 0, entry: nil, balance: current) }
        let paymentKey = payment.paymentIntentId ?? payment.checkoutSessionId
        let outcome: RefundOutcome
        if owed > 0 {
            let taken = min(owed, current.tokens)
            let result = try Ledger.post(
                LedgerPosting(
                    userId: payment.userId,
                    kind: .paymentRefund,
                    delta: -taken,
                    idempotencyKey: try uniqueRefundKey("refund:\(paymentKey):\(refunded)", reference: payment.checkoutSessionId, in: tx),
                    reference: payment.checkoutSessionId,
                    actor: actor,
                    reason: "refund of \(refunded) of \(payment.amountTotal) \(payment.currency)",
                    requestId: requestId,
                    shortfall: owed - taken
                ),
                now: now,
                in: tx
            )
            outcome = RefundOutcome(taken: taken, shortfall: owed - taken, givenBack: 0, entry: result.entry, balance: result.balance)
        } else {
            // Tokens the refunds of this payment actually took (what they could not take is owed
            // as shortfall, which a failed refund forgives before anything is given back).
            let takenSoFar = -(try tx.ledger.paymentRefundDeltaSum(reference: payment.checkoutSessionId))
            let shortfall = max(payment.refundedTokens - takenSoFar, 0)
            let givenBack = min(max(-owed - shortfall, 0), max(takenSoFar, 0))
            var entry: LedgerEntry?
            var balance = current
            if givenBack > 0 {
                let result = try Ledger.post(
                    LedgerPosting(
                        userId: payment.userId,
                        kind: .paymentRefund,
                        delta: givenBack,
                        idempotencyKey: try uniqueRefundKey(
                            "refund_reversed:\(paymentKey):\(refunded)",
                            reference: payment.checkoutSessionId,
                            in: tx
                        ),
                        reference: payment.checkoutSessionId,
                        actor: actor,
                        reason:
                            "refunds of \(payment.checkoutSessionId) failed at Stripe: \(refunded) of \(payment.amountTotal) \(payment.currency) stays refunded",
                        requestId: requestId
                    ),
                    now: now,
                    in: tx
                )
                entry = result.entry
                balance = result.balance
            }
            outcome = RefundOutcome(taken: 0, shortfall: 0, givenBack: givenBack, entry: entry, balance: balance)
        }
        try tx.payments.setRefundedTokens(target, checkoutSessionId: payment.checkoutSessionId)
        return outcome
    }

    /// `base`, or `base:<n>` when the payment's refunds already used it (the same refunded total
    /// reached again after a failed refund is a new movement of tokens, not a replay).
    private static func uniqueRefundKey(_ base: String, reference: String, in tx: StorageTransaction) throws -> String {
        guard try tx.ledger.keyExists(base) else { return base }
        let count = try tx.ledger.paymentRefundCount(reference: reference)
        return "\(base):\(count)"
    }

    /// Records a refund Stripe reports failed or canceled, once per refund, and gives back what
    /// it took if its purchase is known (else when the purchase arrives, since the refunded
    /// amount is always computed net of failed refunds).
    static func refundFailed(
        _ failure: FailedRefund,
        actor: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> (message: String, outcome: RefundOutcome?) {
        guard failure.amount > 0 else { throw PaymentError.invalidEvent("refund \(failure.refundId) has no positive amount") }
        guard try tx.payments.recordFailedRefund(failure, at: now) else {
            return ("refund \(failure.refundId) was already recorded as \(failure.status)", nil)
        }
        guard try tx.payments.payment(id: failure.paymentIntentId) != nil else {
            return (
                "refund \(failure.refundId) of \(failure.paymentIntentId) \(failure.status); no purchase known for it yet, recorded for when it arrives",
                nil
            )
        }
        let outcome = try applyRefund(paymentId: failure.paymentIntentId, snapshot: nil, actor: actor, requestId: requestId, now: now, in: tx)
        var message = "refund \(failure.refundId) of \(failure.paymentIntentId) \(failure.status) at Stripe: gave back \(outcome.givenBack) tokens"
        if outcome.givenBack == 0 { message += " (its share had not been taken, or had been spent)" }
        return (message, outcome)
    }
}

/// A charge's refunded total as Stripe reported it at one moment.
public struct RefundSnapshot: Equatable, Sendable {
    /// The charge's `amount_refunded`.
    public var amountRefunded: Int
    /// When Stripe took the snapshot (the event's or the refund's `created`, Unix seconds); nil
    /// means now.
    public var at: Int?

    public init(amountRefunded: Int, at: Int?) {
        self.amountRefunded = amountRefunded
        self.at = at
    }
}

/// A refund Stripe reports `failed` or `canceled`: its money went back to the merchant.
struct FailedRefund: Equatable, Sendable {
    var refundId: String
    var paymentIntentId: String
    var amount: Int
    var status: String
    /// The refund's `created`.
    var refundCreated: Int
    /// The event's `created`: when Stripe reported the failure.
    var failedAt: Int
}

extension Payments {
    /// True when the customer has bought nothing yet (the first-purchase discount applies): no
    /// purchase entry, and no purchases carried over from the legacy store by the import.
    public func isFirstPurchase(userId: String) async throws -> Bool {
        try await database.read { tx in
            let purchased = try tx.ledger.purchaseCount(userId: userId)
            let carried = try tx.ledger.tokensPurchased(userId: userId) ?? 0
            return purchased == 0 && carried == 0
        }
    }
}

extension StripeCustomers {
    /// Records the customer's Stripe customer id unless one is already set; returns the id in use.
    public func link(userId: String, stripeCustomerId: String) async throws -> String {
        try await database.write { tx in try tx.ledger.linkStripeCustomer(userId: userId, stripeCustomerId: stripeCustomerId) ?? stripeCustomerId }
    }
}

/// A credit an operator gives by hand for a payment whose purchase event has not arrived
/// (`tokens adjust USER +N --payment cs_…`). Its key names the payment, so there is one per
/// payment; when the purchase lands, the purchase is granted and this credit settled against it.
public enum ManualPurchaseCredit {
    public static func key(_ checkoutSessionId: String) -> String { "manual_purchase:\(checkoutSessionId)" }
    static func settlementKey(_ checkoutSessionId: String) -> String { "manual_purchase_settled:\(checkoutSessionId)" }

    /// Why a manual credit for `checkoutSessionId` is refused, or nil.
    static func refusal(checkoutSessionId: String, userId: String, delta: Int, in tx: StorageTransaction) throws -> String? {
        guard checkoutSessionId.hasPrefix("cs_") else { return "--payment takes the Checkout Session id (cs_…)" }
        guard delta > 0 else { return "a manual credit for a payment adds tokens (+N)" }
        if try tx.ledger.entry(idempotencyKey: "purchase:\(checkoutSessionId)") != nil {
            return "the purchase of \(checkoutSessionId) was already granted by its event; nothing to credit"
        }
        // The purchase is settled against whoever was credited for it: crediting someone else
        // would, once the event lands, take the tokens from the wrong account (or fail the
        // purchase when that account has spent them).
        if let buyer = try tx.payments.checkoutBuyer(id: checkoutSessionId), buyer != userId {
            return "\(checkoutSessionId) was opened by \(buyer), not \(userId); credit the buyer"
        }
        return nil
    }
}

extension Payments {
    /// The plan of a manual credit for `checkoutSessionId`, refused as the credit itself would
    /// be (a purchase already granted): a dry run never shows a plan the real run refuses.
    public func planManualCredit(_ posting: LedgerPosting, checkoutSessionId: String) async throws -> MutationPlan {
        let refusal = try await database.read { tx in
            try ManualPurchaseCredit.refusal(checkoutSessionId: checkoutSessionId, userId: posting.userId, delta: posting.delta, in: tx)
        }
        if let refusal { throw LedgerError.invalidPosting(refusal) }
        return try await database.ledger.plan(posting)
    }

    /// Posts an operator's credit standing for the payment `checkoutSessionId`, with its audit
    /// row; refused (nothing written) when the purchase was granted already — checked in the
    /// same transaction, so a purchase landing meanwhile cannot make it a second grant.
    public func postManualCredit(
        userId: String,
        tokens: Int,
        checkoutSessionId: String,
        by context: OperatorContext
    ) async throws -> PostingResult {
        try await database.write { tx in
            // Several servers: the purchase's event may be processed at this moment; whichever
            // comes second sees the other (SQLite's single writer does the same).
            try tx.payments.lockCheckout(checkoutSessionId)
            if let refusal = try ManualPurchaseCredit.refusal(checkoutSessionId: checkoutSessionId, userId: userId, delta: tokens, in: tx) {
                throw LedgerError.invalidPosting(refusal)
            }
            let posting = LedgerPosting(
                userId: userId,
                kind: .adjust,
                delta: tokens,
                idempotencyKey: ManualPurchaseCredit.key(checkoutSessionId),
                reference: checkoutSessionId,
                actor: "operator:\(context.operatorName)",
                reason: context.reason
            )
            try Ledger.validate(posting)
            let result = try Ledger.post(posting, now: Date(), in: tx)
            try AuditLog.insert(
                context: context,
                userId: userId,
                entryIds: result.entry.id.map { [$0] } ?? [],
                idempotencyKey: posting.idempotencyKey,
                outcome: result.replayed
                    ? "replayed: the manual credit for \(checkoutSessionId) existed" : "credited \(tokens) for \(checkoutSessionId) by hand",
                in: tx
            )
            return result
        }
    }
}
