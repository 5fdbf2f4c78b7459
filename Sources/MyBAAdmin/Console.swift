import Foundation
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
    private var openedDatabase: AppDatabase?

    init(options: GlobalOptions, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let settings = try MyBASettings.fromEnvironment(environment)
        self.databasePath = options.db ?? settings.databasePath
        self.json = options.json
        self.useColor = isatty(STDOUT_FILENO) == 1 && (environment["NO_COLOR"] ?? "").isEmpty && !options.json
        self.busyTimeout = settings.busyTimeoutSeconds
    }

    private let busyTimeout: Double

    private init(copying other: Console, json: Bool, databasePath: String) {
        self.databasePath = databasePath
        self.json = json
        self.useColor = other.useColor && !json
        self.busyTimeout = other.busyTimeout
        self.openedDatabase = databasePath == other.databasePath ? other.openedDatabase : nil
    }

    /// This console with one command's options applied, keeping the open database when the
    /// command names the same file.
    func with(options: GlobalOptions) throws -> Console {
        Console(copying: self, json: options.json, databasePath: options.db ?? databasePath)
    }

    /// The database, opened and migrated on first use. A missing file is an error, not a new
    /// empty ledger.
    func database() throws -> AppDatabase {
        if let openedDatabase { return openedDatabase }
        let database = try AppDatabase.openFile(at: databasePath, options: .init(busyTimeout: busyTimeout, createIfMissing: false))
        openedDatabase = database
        return database
    }

    func write(_ text: String) {
        FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// Writes `value` as one pretty JSON document.
    func writeJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        write(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func writeError(_ text: String) {
        FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// Reports a failed operation: a message on stderr, and with `--json` an error document on
    /// stdout so scripts reading stdout see it too.
    func reportFailure(_ error: any Error) {
        let message = "\(error)"
        Console.writeError("myba-admin: error: \(message)")
        if json {
            let code: String
            switch error {
            case let failure as ConsoleFailure: code = failure.code
            case let failure as LedgerError: code = failure.code
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
