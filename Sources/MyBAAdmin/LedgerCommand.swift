import ArgumentParser

/// `ledger …`: read and check the token ledger.
struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Read and check the token ledger.",
        subcommands: [LedgerShowCommand.self, LedgerVerifyCommand.self]
    )
}
