import ArgumentParser
import MyBAOps

/// The root of the one command table: dispatch, `help`, and the REPL's completion all walk it.
struct MyBAAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myba-admin",
        abstract: "Operate MyBA: customers, tokens, payments, anonymous sessions, audit.",
        discussion: """
            With no command on a terminal: an interactive shell (readline, history, Tab completion).
            With no command and piped input: runs one command per line ('#' starts a comment) and stops
            at the first failure unless --continue-on-error.
            Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 a check found problems.
            The database is --db, else MYBA_DATABASE, else \(MyBASettings.defaultDatabasePath).
            """,
        version: mybaVersion,
        subcommands: [
            CustomerCommand.self, LedgerCommand.self, TokensCommand.self, PaymentCommand.self,
            SessionsCommand.self, WebhooksCommand.self, LogsCommand.self, TimelineCommand.self, ReconcileCommand.self, ImportCommand.self,
            AuditCommand.self, StatsCommand.self, DatabaseCommand.self, PlansCommand.self,
        ]
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "With commands read from standard input: go on after a failing line (the exit code still reports it).")
    var continueOnError = false

    @Flag(
        name: .long,
        help: "With commands read from standard input: only check that every line parses (exit 2 naming the first bad line); run nothing."
    )
    var check = false
}

/// Options every command accepts, before or after the command name.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp("SQLite file to open (default: MYBA_DATABASE, then \(MyBASettings.defaultDatabasePath)).", valueName: "path")
    )
    var db: String?

    @Flag(name: .long, help: "Print one JSON document instead of tables.")
    var json = false
}

/// A command that does work. `run()` opens a console for one-shot use; the REPL and script
/// mode call `execute(in:)` with their long-lived console instead.
protocol ConsoleCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    /// Whether this invocation may change data: then its request id is printed (standard
    /// error), to find its log lines and audit row later.
    var changesData: Bool { get }
    /// The operator's reason, for the audit row of a mutation that failed.
    var auditReason: String { get }
    func execute(in console: Console) async throws
}

extension ConsoleCommand {
    var changesData: Bool { false }
    var auditReason: String { "" }

    mutating func run() async throws {
        try await execute(in: Console(options: global))
    }
}
