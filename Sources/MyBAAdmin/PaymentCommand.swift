import ArgumentParser

/// `payment …`: act on Stripe payments.
struct PaymentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payment",
        abstract: "Refund Stripe payments.",
        subcommands: [PaymentRefundCommand.self]
    )
}
