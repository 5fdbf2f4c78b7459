import Foundation
import Logging

/// An error a shell shows as a machine-readable code (API `error.code`, console JSON) beside its
/// message.
public protocol CodedError: Error, CustomStringConvertible {
    var code: String { get }
}

extension LedgerError: CodedError {}

/// Why an operator's refund was refused or not recorded.
public enum PaymentRefundError: CodedError, Equatable {
    case unknownPayment(String)
    case noPaymentIntent(String)
    case tooLarge(asked: Int, refundable: Int, total: Int, currency: String)
    /// Stripe refunded, the ledger did not record it: money moved.
    case notRecorded(refundId: String, amount: Int, underlying: String)

    public var code: String {
        switch self {
        case .unknownPayment, .noPaymentIntent: return "unknown_payment"
        case .tooLarge: return "refund_too_large"
        case .notRecorded: return "refund_not_recorded"
        }
    }

    public var description: String {
        switch self {
        case .unknownPayment(let id): return "no purchase recorded for \(id)"
        case .noPaymentIntent(let id): return "\(id) has no PaymentIntent recorded; refund it in the Stripe dashboard"
        case .tooLarge(let asked, let refundable, let total, let currency):
            return "refused: \(asked) cents asked, \(refundable) of \(total) \(currency) not yet refunded at Stripe"
        case .notRecorded(let refundId, let amount, let underlying):
            return """
                money moved: Stripe refund \(refundId) of \(amount) cents was made, but the ledger could not record it (\(underlying)). \
                Do not refund again: the charge.refunded webhook takes the tokens back, or run this same command again (same --reason), which Stripe answers without refunding twice
                """
        }
    }
}

/// Refunding a purchase from the console: through Stripe first, then the refunded share of its
/// tokens taken back by the processing `charge.refunded` uses, so the webhook that follows
/// changes nothing.
///
/// The refundable remainder is what Stripe says is not refunded yet, not only what this ledger
/// has heard of: a refund made by an earlier run whose ledger write failed is money already
/// moved. The Stripe idempotency key is one per operator intent (payment, amount, reason), so
/// the same command retried is answered by Stripe again instead of refunding twice.
public struct PaymentRefunds: Sendable {
    let database: AppDatabase
    let stripe: StripeClient

    public init(database: AppDatabase, stripe: StripeClient) {
        self.database = database
        self.stripe = stripe
    }

    /// A refund checked against Stripe and planned, not yet made.
    public struct Prepared: Sendable {
        public var payment: Payment
        public var paymentIntentId: String
        /// Cents to refund now.
        public var amount: Int
        public var plan: MutationPlan
    }

    /// Checks `amount` (default: all not yet refunded at Stripe) and plans its effect on tokens.
    public func prepare(paymentId: String, amount: Int?) async throws -> Prepared {
        guard let payment = try await database.payments.payment(id: paymentId) else { throw PaymentRefundError.unknownPayment(paymentId) }
        guard let paymentIntent = payment.paymentIntentId else { throw PaymentRefundError.noPaymentIntent(paymentId) }
        let knownToStripe: Int
        do {
            knownToStripe = try await stripe.amountRefunded(paymentIntent: paymentIntent)
        } catch let error as StripeError where error.code == "resource_missing" {
            // Stripe does not know the payment (a dry run against another account, say): the
            // ledger's count stands, and a real refund would be refused by Stripe itself.
            knownToStripe = 0
        }
        let refundedAtStripe = max(knownToStripe, payment.refundedAmount)
        let remaining = payment.amountTotal - refundedAtStripe
        let refund = amount ?? remaining
        guard refund > 0, refund <= remaining else {
            throw PaymentRefundError.tooLarge(asked: refund, refundable: remaining, total: payment.amountTotal, currency: payment.currency)
        }
        var current = payment
        current.refundedAmount = refundedAtStripe
        let plan = try await database.payments.planRefund(payment: current, amount: refund)
        return Prepared(payment: payment, paymentIntentId: paymentIntent, amount: refund, plan: plan)
    }

    /// Refunds at Stripe, then records it with its audit row. Returns Stripe's refund id and
    /// what happened to tokens.
    public func execute(
        _ prepared: Prepared,
        stripeReason: String?,
        idempotencyKey: String?,
        context: OperatorContext
    ) async throws -> (refundId: String, outcome: RefundOutcome) {
        let key =
            idempotencyKey
            ?? StripeClient.refundIdempotencyKey(paymentIntent: prepared.paymentIntentId, amount: prepared.amount, reason: context.reason)
        let response: StripeRefund
        do {
            response = try await stripe.createRefund(
                paymentIntent: prepared.paymentIntentId,
                amount: prepared.amount,
                reason: stripeReason,
                idempotencyKey: key
            )
        } catch let error as StripeError where error.code == "unexpected_answer" {
            // Stripe answered 2xx: the money moved even though its answer could not be read.
            throw PaymentRefundError.notRecorded(refundId: "?", amount: prepared.amount, underlying: "\(error)")
        }
        let refundId = response.id
        let created = response.created
        do {
            let cumulative = try await stripe.amountRefunded(paymentIntent: prepared.paymentIntentId)
            let outcome = try await database.payments.applyOperatorRefund(
                paymentId: prepared.paymentIntentId,
                snapshot: RefundSnapshot(amountRefunded: cumulative, at: created),
                by: context
            )
            return (refundId, outcome)
        } catch {
            throw PaymentRefundError.notRecorded(refundId: refundId, amount: prepared.amount, underlying: "\(error)")
        }
    }
}
