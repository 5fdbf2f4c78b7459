import Foundation
import Logging
import MyBAOps

#if canImport(Glibc)
import Glibc
#endif

/// What a command talks to: the database (opened on first use, then kept), standard output,
/// and the output mode. Knows whether it writes to a terminal, so colour never reaches a pipe.
final class Console: @unchecked Sendable {
    let databasePath: String
    let json: Bool
    let useColor: Bool
    let settings: MyBASettings
    /// True when a person can answer questions (standard input is a terminal, not a script).
    let interactive: Bool
    /// Who is operating: `MYBA_OPERATOR`, else the login name.
    let operatorName: String
    /// The command as typed, secrets masked, for the audit log.
    var commandLine: String
    /// How to ask a question (readline in the REPL, a plain line read otherwise).
    var ask: (String) -> String? = { prompt in
        FileHandle.standardOutput.write(Data(prompt.utf8))
        return readLine()
    }
    private var openedDatabase: AppDatabase?
    /// This command's request id: every log line of the command carries it, so `logs trace`
    /// and `timeline` show what an operator did beside what the server did.
    let requestId = RequestIdentifier.generate()
    /// JSON lines into the server's log (`MYBA_LOG_FILE`), under `requestId`.
    private(set) lazy var logger: Logger = makeLogger()

    private func makeLogger() -> Logger {
        // The server rotates the file; the console only appends (a rename by the server leaves
        // this command's few lines in the rotated file, still read by `logs`).
        let destination = (try? RotatingFileWriter(path: settings.logFile, maxBytes: .max, maxFiles: 0)).map(LogDestination.file)
        var logger = Logger(label: "myba.admin") { label in
            guard let destination else { return SwiftLogNoOpLogHandler() }
            return JSONLogHandler(label: label, level: .info, destination: destination)
        }
        logger[metadataKey: "request.id"] = .string(requestId)
        logger[metadataKey: "operator.name"] = .string(operatorName)
        return logger
    }

    init(
        options: GlobalOptions,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        interactive: Bool = isatty(STDIN_FILENO) == 1,
        commandLine: String = CommandLine.arguments.dropFirst().joined(separator: " ")
    ) throws {
        let settings = try MyBASettings.fromEnvironment(environment)
        self.settings = settings
        self.databasePath = options.db ?? settings.databasePath
        self.json = options.json
        self.useColor = isatty(STDOUT_FILENO) == 1 && (environment["NO_COLOR"] ?? "").isEmpty && !options.json
        self.interactive = interactive
        self.operatorName =
            environment["MYBA_OPERATOR"] ?? environment["USER"] ?? environment["LOGNAME"]
            ?? getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid-\(geteuid())"
        self.commandLine = Secrets.mask(commandLine)
    }

    private init(copying other: Console, json: Bool, databasePath: String, commandLine: String) {
        self.databasePath = databasePath
        self.json = json
        self.useColor = other.useColor && !json
        self.settings = other.settings
        self.interactive = other.interactive
        self.operatorName = other.operatorName
        self.commandLine = Secrets.mask(commandLine)
        self.ask = other.ask
        self.openedDatabase = databasePath == other.databasePath ? other.openedDatabase : nil
    }

    /// This console for one command line of the REPL or a script, keeping the open database
    /// when the command names the same file.
    func with(options: GlobalOptions, commandLine: String) -> Console {
        Console(copying: self, json: options.json, databasePath: options.db ?? databasePath, commandLine: commandLine)
    }

    /// The context of an operator mutation, for the audit log.
    func operatorContext(reason: String) -> OperatorContext {
        OperatorContext(operatorName: operatorName, commandLine: "myba-admin " + commandLine, reason: reason)
    }

    /// A Stripe client from STRIPE_SECRET_KEY and STRIPE_API_BASE, or a failure naming the variable.
    func stripeClient() throws -> StripeClient {
        do {
            return try StripeClient(settings: settings.stripe, http: CurlHTTPClient())
        } catch {
            throw ConsoleFailure(code: "payments_disabled", description: "STRIPE_SECRET_KEY is not set; cannot reach Stripe")
        }
    }

    /// Whether to go ahead with a change: `yes` goes on, a terminal asks `question`, anything
    /// else refuses with a message saying how to proceed.
    func approve(_ question: String, yes: Bool) throws -> Bool {
        if yes { return true }
        guard interactive else {
            throw ConsoleFailure(
                code: "confirmation_required",
                description: "refused: not on a terminal, so pass --yes to apply (or --dry-run to see the plan)"
            )
        }
        guard let answer = ask(question + " type yes to confirm: "), answer.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
            write("not applied")
            return false
        }
        return true
    }

    /// Resolves `user_…`, an email or `cus_…` to a user id, or fails naming it.
    func userId(for reference: String) async throws -> String {
        let resolved: String?
        do {
            resolved = try await database().queries.resolveUserId(reference)
        } catch let ambiguous as AmbiguousCustomer {
            throw ConsoleFailure(code: "ambiguous_customer", description: TerminalText.escape(ambiguous.description))
        }
        guard let userId = resolved else {
            throw ConsoleFailure(code: "unknown_customer", description: "no customer matches \(reference) (user id, email or cus_… id)")
        }
        return userId
    }

    /// The database, opened and migrated on first use. A missing file is an error, not a new
    /// empty ledger.
    func database() async throws -> AppDatabase {
        if let openedDatabase { return openedDatabase }
        let database = try await AppDatabase.open(databasePath, options: .init(busyTimeout: settings.busyTimeoutSeconds, createIfMissing: false))
        openedDatabase = database
        return database
    }

    /// The database for a caller that cannot await (readline's completion): an SQLite file is
    /// opened now; PostgreSQL only once a command opened it.
    func databaseSync() throws -> AppDatabase? {
        if let openedDatabase { return openedDatabase }
        guard case .sqlite(let path) = try DatabaseLocation.parse(databasePath) else { return nil }
        let database = try AppDatabase.openFile(at: path, options: .init(busyTimeout: settings.busyTimeoutSeconds, createIfMissing: false))
        openedDatabase = database
        return database
    }

    /// The database as shown to the operator: the file, or the PostgreSQL URL without its password.
    var databaseDescription: String {
        switch try? DatabaseLocation.parse(databasePath) {
        case .postgres(let location): return location.description
        default: return databasePath
        }
    }

    /// A short name for the prompt: the file's name, or the PostgreSQL database's.
    var databaseShortName: String {
        switch try? DatabaseLocation.parse(databasePath) {
        case .postgres(let location): return location.database
        default: return (databasePath as NSString).lastPathComponent
        }
    }

    /// Whether the database is PostgreSQL (a `postgres://` URL) rather than an SQLite file.
    var isPostgres: Bool {
        if case .postgres = try? DatabaseLocation.parse(databasePath) { return true }
        return false
    }

    /// Forgets the open database (a restore is about to replace its file).
    func closeDatabase() {
        openedDatabase = nil
    }

    /// A progress line on standard error, rewritten in place (`nil` ends it). Only on a terminal.
    static func writeProgress(_ text: String?) {
        if let text {
            FileHandle.standardError.write(Data(("\r\u{1B}[2K" + text).utf8))
        } else {
            FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
        }
    }

    func write(_ text: String) {
        FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// Writes `value` as one pretty JSON document.
    func writeJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamps.timestamp(date))
        }
        write(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func writeError(_ text: String, newline: Bool = true) {
        FileHandle.standardError.write(Data((newline && !text.hasSuffix("\n") ? text + "\n" : text).utf8))
    }

    /// Reports a failed operation: a message on stderr, and with `--json` an error document on
    /// stdout so scripts reading stdout see it too.
    func reportFailure(_ error: any Error) {
        let message = "\(error)"
        Console.writeError("myba-admin: error: \(message)")
        if json, let interrupted = error as? ReapInterrupted {
            // Scripts must learn what was removed before the stop, not only that it stopped.
            struct Document: Encodable {
                var error: Detail
                struct Detail: Encodable {
                    var code: String
                    var message: String
                    var removed: Int
                    var batches: Int
                }
            }
            try? writeJSON(
                Document(
                    error: .init(code: "database_locked", message: message, removed: interrupted.result.removed, batches: interrupted.result.batches)
                )
            )
            return
        }
        if json {
            let code: String
            switch error {
            case let failure as ConsoleFailure: code = failure.code
            case let failure as CodedError: code = failure.code
            case is StripeError: code = "stripe_error"
            default: code = "failed"
            }
            try? writeJSON(["error": ["code": code, "message": message]])
        }
    }

    func bold(_ text: String) -> String { useColor ? "\u{1B}[1m\(text)\u{1B}[0m" : text }
    func red(_ text: String) -> String { useColor ? "\u{1B}[31m\(text)\u{1B}[0m" : text }
    func green(_ text: String) -> String { useColor ? "\u{1B}[32m\(text)\u{1B}[0m" : text }
}

/// A command that could not do what it was asked (exit 1), with a message naming the problem.
struct ConsoleFailure: Error, CustomStringConvertible {
    var code: String
    var description: String
}
