@preconcurrency import CReadline
import Foundation
import MyBAOps

/// The interactive console on GNU readline: line editing, persistent history without secrets,
/// Tab completion of commands, subcommands, options and user ids.
struct ReadlineShell {
    let console: Console

    /// `MYBA_ADMIN_HISTORY`, else `~/.myba_admin_history`.
    static var historyPath: String {
        if let path = ProcessInfo.processInfo.environment["MYBA_ADMIN_HISTORY"], !path.isEmpty { return path }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".myba_admin_history")
    }

    var prompt: String {
        let environment = console.settings.environmentName
        let database = console.databaseShortName
        var label = environment
        if console.useColor {
            // \u{1} and \u{2} tell readline the colour codes take no room on the line.
            let color = environment == "production" ? "\u{1}\u{1B}[1;37;41m\u{2}" : "\u{1}\u{1B}[36m\u{2}"
            label = color + environment + "\u{1}\u{1B}[0m\u{2}"
        }
        return "myba-admin [\(label)] \(database)> "
    }

    func run() async -> ConsoleExit {
        ShellState.console = console
        let history = Self.historyPath
        using_history()
        stifle_history(2000)
        _ = read_history(history)
        rl_readline_name = UnsafePointer(strdup("myba-admin"))
        rl_attempted_completion_function = completeLine
        let askConsole = console
        askConsole.ask = { question in
            guard let line = readline(question) else { return nil }
            defer { free(line) }
            return String(cString: line)
        }
        if !console.json {
            console.write(
                "myba-admin \(mybaVersion) on \(TerminalText.escape(console.databaseDescription)) (\(console.settings.environmentName)). Tab completes; 'help' lists commands; 'exit' quits."
            )
        }
        // On PostgreSQL the connection opens now, so that Tab can complete customer ids from the
        // first line (completion cannot wait for a connection). An error shows with the first command.
        if console.isPostgres { _ = try? await console.database() }
        var last = ConsoleExit.ok
        while true {
            guard let raw = readline(prompt) else {
                console.write("")
                break
            }
            let line = String(cString: raw)
            free(raw)
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if ["exit", "quit", "\\q"].contains(text) { break }
            // A line with a secret is run but never written to the history file.
            if !Secrets.contains(text) {
                add_history(text)
                if append_history(1, history) != 0 { _ = write_history(history) }
                _ = history_truncate_file(history, 2000)
            }
            do {
                last = await ConsoleRunner.run(arguments: try LineTokenizer.split(text), console: askConsole, commandLine: text)
            } catch {
                Console.writeError("myba-admin: \(error)")
                last = .usage
            }
        }
        return last
    }
}

/// State the C completion callbacks read: they cannot capture Swift context.
enum ShellState {
    nonisolated(unsafe) static var console: Console?
    nonisolated(unsafe) static var candidates: [String] = []
    nonisolated(unsafe) static var index = 0
}

private let completeLine: @convention(c) (UnsafePointer<CChar>?, Int32, Int32) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = {
    text,
    start,
    _ in
    rl_attempted_completion_over = 1  // never fall back to file names
    let buffer = rl_line_buffer.map { String(cString: $0) } ?? ""
    let before = String(decoding: Array(buffer.utf8).prefix(Int(start)), as: UTF8.self)
    let current = text.map { String(cString: $0) } ?? ""
    let words = (try? LineTokenizer.split(before)) ?? []
    ShellState.candidates =
        CommandTree.shared?.candidates(words: words, current: current) { prefix in
            (try? ShellState.console?.databaseSync()?.queries.userIdsSync(prefix: prefix)) ?? []
        } ?? []
    ShellState.index = 0
    if ShellState.candidates.isEmpty, let tree = CommandTree.shared {
        // Nothing to complete: show what the command takes instead (a hint, as redis-cli gives).
        let node = tree.node(for: words)
        if node.commandName != tree.command.commandName {
            FileHandle.standardOutput.write(Data(("\n  " + node.hint + "\n").utf8))
            rl_on_new_line()
        }
        return nil
    }
    return rl_completion_matches(text, nextCandidate)
}

private let nextCandidate: @convention(c) (UnsafePointer<CChar>?, Int32) -> UnsafeMutablePointer<CChar>? = { _, state in
    if state == 0 { ShellState.index = 0 }
    guard ShellState.index < ShellState.candidates.count else { return nil }
    defer { ShellState.index += 1 }
    return strdup(ShellState.candidates[ShellState.index])
}
