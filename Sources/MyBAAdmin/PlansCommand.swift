import ArgumentParser

/// `plans …`: the catalog the server sells and webhooks are decided by.
struct PlansCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plans",
        abstract: "Show or change the plan catalog (stored in the database; the server and replays read the same one).",
        subcommands: [PlansShowCommand.self, PlansSetCommand.self]
    )
}
