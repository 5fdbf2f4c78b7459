import ArgumentParser
import Foundation
import MyBAOps

/// `import from-stripe`: take legacy balances over from Stripe metadata.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Take legacy balances over.",
        subcommands: [ImportFromStripeCommand.self]
    )
}
