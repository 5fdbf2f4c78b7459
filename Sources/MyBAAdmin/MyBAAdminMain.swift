import ArgumentParser
import Foundation
import Logging
import MyBAOps

/// Entry point. ArgumentParser's own `main()` exits 64 on usage errors; MyBA's console promises
/// 0 ok, 1 failed, 2 usage, 3 check found problems, so the mapping is done here.
@main
enum MyBAAdminMain {
    static func main() async {
        // Backups, logs and databases the console creates are its owner's only.
        umask(0o077)
        let status = await ConsoleRunner.main(arguments: Array(CommandLine.arguments.dropFirst()))
        exit(status.rawValue)
    }
}

/// The exit statuses every console command uses.
enum ConsoleExit: Int32 {
    case ok = 0
    case failed = 1
    case usage = 2
    case checkFailed = 3
}

/// Parses command lines with the single command table and runs them, in all three modes.
enum ConsoleRunner {
    /// The process's arguments: one command, or (with none) the REPL or script mode.
    static func main(arguments: [String]) async -> ConsoleExit {
        if let root = try? MyBAAdmin.parseAsRoot(arguments) as? MyBAAdmin {
            let console: Console
            do {
                console = try Console(options: root.global, commandLine: "")
            } catch {
                Console.writeError("myba-admin: \(error)")
                return .failed
            }
            if isatty(STDIN_FILENO) == 1 {
                return await ReadlineShell(console: console).run()
            }
            return await ScriptMode(console: console, continueOnError: root.continueOnError, checkOnly: root.check).run()
        }
        return await run(arguments: arguments, console: nil, commandLine: arguments.joined(separator: " "))
    }

    /// Parses one command line (including its `validate()` checks) without running it.
    static func check(arguments: [String], line: Int) -> ConsoleExit {
        do {
            let parsed = try MyBAAdmin.parseAsRoot(arguments)
            if !(parsed is any ConsoleCommand) && !type(of: parsed).configuration.subcommands.isEmpty {
                Console.writeError("line \(line): \(arguments.joined(separator: " ")) names a command group, not a command")
                return .usage
            }
            return .ok
        } catch {
            if MyBAAdmin.exitCode(for: error) == .success { return .ok }
            Console.writeError("line \(line): \(MyBAAdmin.message(for: error))")
            return .usage
        }
    }

    /// Runs one command line. `console` is the long-lived console of the REPL or a script.
    static func run(arguments: [String], console: Console?, commandLine: String) async -> ConsoleExit {
        let parsed: any ParsableCommand
        do {
            parsed = try MyBAAdmin.parseAsRoot(arguments)
        } catch {
            let code = MyBAAdmin.exitCode(for: error)
            if code == .success {
                print(MyBAAdmin.fullMessage(for: error))
                return .ok
            }
            Console.writeError(MyBAAdmin.fullMessage(for: error))
            return .usage
        }
        guard let command = parsed as? any ConsoleCommand else {
            if !type(of: parsed).configuration.subcommands.isEmpty {
                // A group named without a subcommand: say what it takes.
                Console.writeError(MyBAAdmin.helpMessage(for: type(of: parsed)))
                return .usage
            }
            // ArgumentParser's built-in `help` command prints the help it was asked for.
            var builtIn = parsed
            do { try builtIn.run() } catch { print(MyBAAdmin.fullMessage(for: error)) }
            return .ok
        }
        let session: Console
        do {
            session =
                try console?.with(options: command.global, commandLine: commandLine) ?? Console(options: command.global, commandLine: commandLine)
        } catch {
            Console.writeError("myba-admin: \(error)")
            return .failed
        }
        let started = ContinuousClock.now
        session.logger.info("console command started", metadata: ["console.command": .string(session.commandLine)])
        if command.changesData { Console.writeError("request id \(session.requestId) (myba-admin logs trace \(session.requestId))") }
        let status: ConsoleExit
        var failure: String?
        do {
            try await command.execute(in: session)
            status = .ok
        } catch let checked as CheckFailed {
            if !checked.message.isEmpty { Console.writeError(checked.message) }
            status = .checkFailed
        } catch let error as ValidationError {
            Console.writeError("myba-admin: error: \(error.message)")
            failure = error.message
            status = .usage
        } catch {
            session.reportFailure(error)
            failure = "\(error)"
            status = .failed
        }
        if command.changesData, status == .failed, let failure {
            // A mutation that failed is audited too: what was tried, by whom, and why it failed.
            // The failure may be the database itself; the log line below still has it.
            try? await session.database().audit.record(
                session.operatorContext(reason: command.auditReason),
                userId: nil,
                outcome: "failed: " + Secrets.mask(failure)
            )
        }
        var metadata: Logger.Metadata = [
            "console.command": .string(session.commandLine), "console.exit": .stringConvertible(status.rawValue),
            "duration.ms": .stringConvertible((ContinuousClock.now - started).timeInterval * 1000),
        ]
        if let failure { metadata["error.message"] = .string(failure) }
        session.logger.log(level: status == .ok ? .info : .warning, "console command finished", metadata: metadata)
        return status
    }
}

/// Thrown by a check command that ran and found problems (exit 3). Its report is already printed.
struct CheckFailed: Error {
    var message: String
}

/// Commands read from standard input, one per line.
struct ScriptMode {
    let console: Console
    let continueOnError: Bool
    /// Parse every line, run none (`--check`): a cron script or a runbook is checked before use.
    var checkOnly = false

    func run() async -> ConsoleExit {
        var firstFailure: ConsoleExit?
        var number = 0
        while let line = readLine() {
            number += 1
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty || text.hasPrefix("#") { continue }
            let status: ConsoleExit
            do {
                let words = try LineTokenizer.split(text)
                if checkOnly {
                    status = ConsoleRunner.check(arguments: words, line: number)
                } else {
                    status = await ConsoleRunner.run(arguments: words, console: console, commandLine: text)
                }
            } catch {
                Console.writeError("myba-admin: line \(number): \(error)")
                status = .usage
            }
            if status != .ok {
                firstFailure = firstFailure ?? status
                if !continueOnError {
                    Console.writeError("myba-admin: stopped at line \(number) (use --continue-on-error to go on)")
                    return status
                }
            }
        }
        return firstFailure ?? .ok
    }
}

/// Splits a typed line into words as a shell would: spaces separate, quotes group, backslash escapes.
enum LineTokenizer {
    struct UnterminatedQuote: Error, CustomStringConvertible {
        var description: String { "unterminated quote" }
    }

    static func split(_ line: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
                inWord = true
                continue
            }
            if character == "\\" && quote != "'" {
                escaped = true
                continue
            }
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
                continue
            }
            if character == "\"" || character == "'" {
                quote = character
                inWord = true
                continue
            }
            if character.isWhitespace {
                if inWord {
                    words.append(current)
                    current = ""
                    inWord = false
                }
                continue
            }
            current.append(character)
            inWord = true
        }
        if quote != nil { throw UnterminatedQuote() }
        if inWord { words.append(current) }
        if words.first == "myba-admin" { words.removeFirst() }
        return words
    }
}
