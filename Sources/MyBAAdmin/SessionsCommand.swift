import ArgumentParser
import MyBAOps

/// `sessions …`: anonymous visitors' sessions.
struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List and reap anonymous sessions.",
        subcommands: [SessionsListCommand.self, SessionsReapCommand.self]
    )
}

/// Reads a duration option (`90s`, `30m`, `24h`, `7d`).
func parseDuration(_ text: String, option: String) throws -> Double {
    guard let seconds = OperatorDuration.parse(text) else {
        throw ValidationError("\(option) takes a duration like 90s, 30m, 24h or 7d; got \(text)")
    }
    return seconds
}
