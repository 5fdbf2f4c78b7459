import ArgumentParser
import Foundation
import MyBAOps

/// `payment refund <cs_…|pi_…>`: refunds through Stripe, then takes back the refunded share of
/// tokens with the processing the `charge.refunded` webhook uses (same key), so the webhook that
/// follows changes nothing.
struct PaymentRefundCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "refund",
        abstract: "Refund a purchase through Stripe and take back the refunded share of its tokens.",
        discussion: "Needs STRIPE_SECRET_KEY (and STRIPE_API_BASE for the emulator)."
    )

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

    @Option(
        help: ArgumentHelp(
            "Stripe idempotency key of this refund (default: made of the payment, the amount and --reason, so the same command retried never refunds twice).",
            valueName: "key"
        )
    )
    var key: String?

    func validate() throws {
        guard payment.hasPrefix("cs_") || payment.hasPrefix("pi_") else { throw ValidationError("give a cs_… or pi_… id, got \(payment)") }
        if let amount, amount <= 0 { throw ValidationError("--amount must be positive cents, got \(amount)") }
    }

    func execute(in console: Console) async throws {
        let refunds = PaymentRefunds(database: try await console.database(), stripe: try console.stripeClient())
        let prepared = try await refunds.prepare(paymentId: payment, amount: amount)
        let record = prepared.payment
        guard
            try console.confirm(
                prepared.plan,
                options: mutation,
                title: "refund \(prepared.amount) \(record.currency) cents of \(record.checkoutSessionId)"
            )
        else { return }
        let (refundId, outcome) = try await refunds.execute(
            prepared,
            stripeReason: stripeReason?.rawValue,
            idempotencyKey: key,
            context: console.operatorContext(reason: mutation.reasonText)
        )
        if console.json {
            var document = PlanDocument(prepared.plan, title: "refund", applied: true)
            document.after = BalanceFields(outcome.balance)
            try console.writeJSON(document)
        } else {
            console.write(
                console.green("refunded") + ": Stripe refund \(refundId); took back \(outcome.taken) tokens"
                    + (outcome.shortfall > 0 ? ", shortfall \(outcome.shortfall) already spent" : "")
                    + "; \(record.userId) now has \(outcome.balance.tokens)"
            )
        }
    }
}
