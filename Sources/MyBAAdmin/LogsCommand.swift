import ArgumentParser
import Foundation
import MyBAOps

/// `logs …`: the server's JSON log file and its rotated predecessors.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Read the server's JSON logs (MYBA_LOG_FILE and its rotated files).",
        subcommands: [LogsTailCommand.self, LogsTraceCommand.self]
    )
}

/// Options shared by the log commands.
struct LogFileOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Log file (default: MYBA_LOG_FILE, then data/logs/myba.jsonl).", valueName: "path"))
    var file: String?
}

extension Console {
    func logReader(_ options: LogFileOptions) throws -> LogReader {
        let path = options.file ?? settings.logFile
        guard !RotatingFileWriter.existingFiles(forLog: path).isEmpty else {
            throw ConsoleFailure(code: "no_log", description: "no log file at \(path) (set MYBA_LOG_FILE or pass --file)")
        }
        return LogReader(path: path)
    }

    /// A log line for people: time, level, message, then the other fields; raw JSON with --json.
    /// Every value is escaped for the terminal: a field can never start a line of its own.
    func writeLogLine(_ line: String) {
        guard !json, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            write(json ? line : TerminalText.escape(line))
            return
        }
        let level = TerminalText.escape(object["level"] as? String ?? "?")
        let fields = object.keys.filter { !["ts", "level", "msg", "label"].contains($0) }.sorted()
            .map { "\(TerminalText.escape($0))=\(TerminalText.escape("\(object[$0]!)"))" }
        let coloured = ["error", "critical"].contains(level) ? red(level) : level
        write(
            "\(TerminalText.escape(object["ts"] as? String ?? "")) \(coloured) \(TerminalText.escape(object["msg"] as? String ?? "")) \(fields.joined(separator: " "))"
        )
    }
}

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

/// `logs trace <request-id>`.
struct LogsTraceCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "trace", abstract: "Every log line of one request, in order, across rotated files.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var logFile: LogFileOptions

    @Argument(help: ArgumentHelp("The request id (X-Request-ID of the response).", valueName: "request-id"))
    var requestId: String

    func execute(in console: Console) async throws {
        let found = try console.logReader(logFile).trace(requestId: requestId)
        guard !found.isEmpty else { throw ConsoleFailure(code: "not_found", description: "no log line carries request.id \(requestId)") }
        for line in found { console.writeLogLine(line) }
    }
}
