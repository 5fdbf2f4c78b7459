import ArgumentParser

/// `customer …`: inspect customers.
struct CustomerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "customer",
        abstract: "Inspect customers.",
        subcommands: [CustomerShowCommand.self, CustomerListCommand.self, CustomerFindCommand.self, CustomerForgetCommand.self]
    )
}
