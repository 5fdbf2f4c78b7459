import ArgumentParser

/// `ledger …`: check the token ledger.
struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Check the token ledger.",
        subcommands: [LedgerVerifyCommand.self]
    )
}
