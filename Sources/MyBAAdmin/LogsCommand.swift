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
