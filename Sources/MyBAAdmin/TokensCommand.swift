import ArgumentParser

/// `tokens …`: change a customer's tokens, with a plan, a reason and an audit row.
struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Adjust or credit back a customer's tokens.",
        subcommands: [TokensAdjustCommand.self, TokensRefundCommand.self]
    )
}
