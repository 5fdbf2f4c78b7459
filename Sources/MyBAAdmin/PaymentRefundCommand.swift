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
        let remaining = record.amountTotal - record.refundedAmount
        let refund = amount ?? remaining
        guard refund > 0, refund <= remaining else {
            throw ConsoleFailure(code: "refund_too_large", description: "refused: \(refund) cents asked, \(remaining) of \(record.amountTotal) \(record.currency) not yet refunded")
        }
        let plan = try await database.planRefund(payment: record, amount: refund)
        guard try console.confirm(plan, options: mutation, title: "refund \(refund) \(record.currency) cents of \(record.checkoutSessionId)") else { return }
        let stripe = try console.stripeClient()
        let cumulative = record.refundedAmount + refund
        let response = try await stripe.createRefund(
            paymentIntent: paymentIntent, amount: refund, reason: stripeReason?.rawValue,
            idempotencyKey: "myba-refund:\(paymentIntent):\(cumulative)")
        let outcome = try await database.applyOperatorRefund(paymentId: paymentIntent, amountRefunded: cumulative, by: console.operatorContext(reason: mutation.reasonText))
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
