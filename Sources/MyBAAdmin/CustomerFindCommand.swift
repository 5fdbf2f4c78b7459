import ArgumentParser
import MyBAOps

/// `customer find <text>`: customers whose id or email contains the text, or with that cus_ id.
struct CustomerFindCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Find customers by part of their user id or email, or by cus_… id."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Text to look for.")
    var text: String

    @Option(help: "How many matches at most (1–10000).")
    var limit = 50

    func validate() throws {
        guard !text.isEmpty else { throw ValidationError("give some text to look for") }
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        try printCustomers(try await console.database().queries.listCustomers(limit: limit, sortByTokens: false, matching: text), in: console)
    }
}
