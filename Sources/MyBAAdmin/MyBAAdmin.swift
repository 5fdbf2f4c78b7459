import ArgumentParser
import MyBAOps

/// The root of the one command table: dispatch, help and (in the REPL) completion all walk it.
struct MyBAAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myba-admin",
        abstract: "Operate MyBA: inspect customers and check the token ledger.",
        discussion: """
            Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 a check found problems.
            The database is --db, else MYBA_DATABASE, else \(MyBASettings.defaultDatabasePath).
            """,
        version: mybaVersion,
        subcommands: [CustomerCommand.self, LedgerCommand.self]
    )

    @OptionGroup var global: GlobalOptions
}

/// Options every command accepts, before or after the command name.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("SQLite file to open (default: MYBA_DATABASE, then \(MyBASettings.defaultDatabasePath)).", valueName: "path"))
    var db: String?

    @Flag(name: .long, help: "Print one JSON document instead of tables.")
    var json = false
}

/// A command that does work. `run()` opens a console for one-shot use; the REPL calls
/// `execute(in:)` with its long-lived console instead.
protocol ConsoleCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    func execute(in console: Console) async throws
}

extension ConsoleCommand {
    mutating func run() async throws {
        try await execute(in: Console(options: global))
    }
}
