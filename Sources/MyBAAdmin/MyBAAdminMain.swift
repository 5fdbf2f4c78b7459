import ArgumentParser
import Foundation
import MyBAOps

/// Entry point. ArgumentParser's own `main()` exits 64 on usage errors; MyBA's console promises
/// 0 ok, 1 failed, 2 usage, 3 check found problems, so the mapping is done here.
@main
enum MyBAAdminMain {
    static func main() async {
        let status = await ConsoleRunner.run(arguments: Array(CommandLine.arguments.dropFirst()))
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

/// Parses one command line with the single command table and runs it. The REPL and the
/// line-by-line script mode call this too, so every mode dispatches the same way.
enum ConsoleRunner {
    static func run(arguments: [String], console: Console? = nil) async -> ConsoleExit {
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
                // A group named without a subcommand (or nothing at all): say what it takes.
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
            session = try console?.with(options: command.global) ?? Console(options: command.global)
        } catch {
            Console.writeError("myba-admin: \(error)")
            return .failed
        }
        do {
            try await command.execute(in: session)
            return .ok
        } catch let failure as CheckFailed {
            if !failure.message.isEmpty { Console.writeError(failure.message) }
            return .checkFailed
        } catch {
            session.reportFailure(error)
            return .failed
        }
    }
}

/// Thrown by a check command that ran and found problems (exit 3). Its report is already printed.
struct CheckFailed: Error {
    var message: String
}
