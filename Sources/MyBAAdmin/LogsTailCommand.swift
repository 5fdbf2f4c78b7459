import ArgumentParser
import Foundation
import MyBAOps

/// `logs tail`.
struct LogsTailCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Show the last log lines, filtered; --follow keeps reading across rotations."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var logFile: LogFileOptions

    @Flag(name: .shortAndLong, help: "Keep printing new lines (survives rotation); stop with Ctrl-C.")
    var follow = false

    @Option(help: ArgumentHelp("Only this request.", valueName: "id"))
    var requestId: String?

    @Option(help: ArgumentHelp("Only lines carrying this user.id.", valueName: "user-id"))
    var user: String?

    @Option(help: ArgumentHelp("This level and above: trace, debug, info, notice, warning, error, critical.", valueName: "level"))
    var level: String?

    @Option(help: ArgumentHelp("Only lines from within this duration (90s, 30m, 24h, 7d).", valueName: "duration"))
    var since: String?

    @Option(help: ArgumentHelp("Only lines containing this text.", valueName: "text"))
    var grep: String?

    @Option(name: .shortAndLong, help: "How many of the last matching lines to show first.")
    var lines = 50

    func validate() throws {
        if let level, !LogFilter.levels.contains(level) {
            throw ValidationError("--level must be one of \(LogFilter.levels.joined(separator: ", ")), got \(level)")
        }
        if let since { _ = try parseDuration(since, option: "--since") }
        guard lines >= 0 else { throw ValidationError("--lines cannot be negative") }
    }

    func execute(in console: Console) async throws {
        let reader = try console.logReader(logFile)
        let filter = LogFilter(
            requestId: requestId,
            userId: user,
            minimumLevel: level,
            since: try since.map { Date().addingTimeInterval(-(try parseDuration($0, option: "--since"))) },
            text: grep
        )
        for line in try reader.lines(matching: filter, limit: lines) { console.writeLogLine(line) }
        if follow {
            try await reader.follow(filter: filter) { console.writeLogLine($0) }
        }
    }
}
