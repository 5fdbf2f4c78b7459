import ArgumentParser
import Foundation
import MyBAOps

/// `payment refund <cs_…|pi_…>`: refunds through Stripe, then takes back the refunded share of
/// tokens with the processing the `charge.refunded` webhook uses (same key), so the webhook that
/// follows changes nothing.
struct PaymentRefundCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "refund",
        abstract: "Refund a purchase through Stripe and take back the refunded share of its tokens.",
        discussion: "Needs STRIPE_SECRET_KEY (and STRIPE_API_BASE for the emulator).")

    enum Reason: String, ExpressibleByArgument, CaseIterable {
        case duplicate, fraudulent
        case requestedByCustomer = "requested_by_customer"
    }

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The Checkout Session (cs_…) or PaymentIntent (pi_…).", valueName: "payment"))
    var payment: String

    @Option(help: ArgumentHelp("Amount to refund in cents (default: all that is not refunded yet).", valueName: "cents"))
    var amount: Int?

    @Option(name: .customLong("stripe-reason"), help: "Stripe's refund reason: duplicate, fraudulent or requested_by_customer.")
    var stripeReason: Reason?

    @OptionGroup var mutation: MutationOptions

    @Option(help: ArgumentHelp("Stripe idempotency key of this refund (default: made of the payment, the amount and --reason, so the same command retried never refunds twice).", valueName: "key"))
    var key: String?

    func validate() throws {
        guard payment.hasPrefix("cs_") || payment.hasPrefix("pi_") else { throw ValidationError("give a cs_… or pi_… id, got \(payment)") }
        if let amount, amount <= 0 { throw ValidationError("--amount must be positive cents, got \(amount)") }
    }

    func execute(in console: Console) async throws {
        let database = try console.database()
        guard let record = try await database.payment(id: payment) else {
            throw ConsoleFailure(code: "unknown_payment", description: "no purchase recorded for \(payment)")
        }
        guard let paymentIntent = record.paymentIntentId else {
            throw ConsoleFailure(code: "unknown_payment", description: "\(payment) has no PaymentIntent recorded; refund it in the Stripe dashboard")
        }
        // What Stripe has refunded, not only what this ledger has heard of: a refund made by an
        // earlier run whose ledger write failed is already money moved.
        let stripe = try console.stripeClient()
        let knownToStripe: Int
        do {
            knownToStripe = try await stripe.amountRefunded(paymentIntent: paymentIntent)
        } catch let error as StripeError where error.code == "resource_missing" {
            // Stripe does not know the payment (a dry run against another account, say): the
            // ledger's count stands, and a real refund would be refused by Stripe itself.
            knownToStripe = 0
        }
        let refundedAtStripe = max(knownToStripe, record.refundedAmount)
        let remaining = record.amountTotal - refundedAtStripe
        let refund = amount ?? remaining
        guard refund > 0, refund <= remaining else {
            throw ConsoleFailure(code: "refund_too_large", description: "refused: \(refund) cents asked, \(remaining) of \(record.amountTotal) \(record.currency) not yet refunded at Stripe")
        }
        var current = record
        current.refundedAmount = refundedAtStripe
        let plan = try await database.planRefund(payment: current, amount: refund)
        guard try console.confirm(plan, options: mutation, title: "refund \(refund) \(record.currency) cents of \(record.checkoutSessionId)") else { return }
        // One key per operator intent: the same payment, amount and reason retried is the same
        // refund to Stripe, which answers it again instead of moving money twice.
        let intentKey = key ?? StripeClient.refundIdempotencyKey(paymentIntent: paymentIntent, amount: refund, reason: mutation.reasonText)
        let response = try await stripe.createRefund(paymentIntent: paymentIntent, amount: refund, reason: stripeReason?.rawValue, idempotencyKey: intentKey)
        let cumulative = (try? await stripe.amountRefunded(paymentIntent: paymentIntent)) ?? (refundedAtStripe + refund)
        let outcome: RefundOutcome
        do {
            outcome = try await database.applyOperatorRefund(paymentId: paymentIntent, amountRefunded: cumulative, by: console.operatorContext(reason: mutation.reasonText))
        } catch {
            throw ConsoleFailure(code: "refund_not_recorded", description: """
                money moved: Stripe refund \(response["id"] as? String ?? "?") of \(refund) cents was made, but the ledger could not record it (\(error)). \
                Do not refund again: the charge.refunded webhook takes the tokens back, or run this same command again (same --reason), which Stripe answers without refunding twice
                """)
        }
        if console.json {
            var document = PlanDocument(plan, title: "refund", applied: true)
            document.after = BalanceFields(outcome.balance)
            try console.writeJSON(document)
        } else {
            console.write(console.green("refunded") + ": Stripe refund \(response["id"] as? String ?? "?"); took back \(outcome.taken) tokens"
                + (outcome.shortfall > 0 ? ", shortfall \(outcome.shortfall) already spent" : "") + "; \(record.userId) now has \(outcome.balance.tokens)")
        }
    }
}
