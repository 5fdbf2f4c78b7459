import Foundation

/// Settings shared by the server and the console, read from the environment.
///
/// Every setting has a default that works on a fresh machine; a value that is set but invalid
/// is an error naming the variable, never silently replaced by the default.
public struct MyBASettings: Equatable, Sendable {
    /// Where the SQLite file lives when `MYBA_DATABASE` is not set.
    public static let defaultDatabasePath = "data/myba.sqlite"
    public static let defaultLogFile = "data/logs/myba.jsonl"

    public var host: String
    public var port: Int
    public var databasePath: String
    public var logFile: String
    public var logMaxBytes: Int
    public var logMaxFiles: Int
    public var logLevel: String
    public var plansFile: String?
    /// `MYBA_ENV`: `development`, `staging`, `production`, … shown by the console.
    public var environmentName: String
    public var busyTimeoutSeconds: Double
    public var maxBodyBytes: Int

    public init(
        host: String = "127.0.0.1", port: Int = 3001, databasePath: String = defaultDatabasePath,
        logFile: String = defaultLogFile, logMaxBytes: Int = 50 * 1024 * 1024, logMaxFiles: Int = 5,
        logLevel: String = "info", plansFile: String? = nil, environmentName: String = "development",
        busyTimeoutSeconds: Double = 5, maxBodyBytes: Int = 1024 * 1024
    ) {
        self.host = host
        self.port = port
        self.databasePath = databasePath
        self.logFile = logFile
        self.logMaxBytes = logMaxBytes
        self.logMaxFiles = logMaxFiles
        self.logLevel = logLevel
        self.plansFile = plansFile
        self.environmentName = environmentName
        self.busyTimeoutSeconds = busyTimeoutSeconds
        self.maxBodyBytes = maxBodyBytes
    }

    /// Reads the settings from `environment` (the process environment by default).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MyBASettings {
        var settings = MyBASettings()
        let env = EnvironmentReader(environment)
        settings.host = env.string("MYBA_HOST") ?? settings.host
        settings.port = try env.integer("PORT", in: 0...65535) ?? settings.port
        settings.databasePath = env.string("MYBA_DATABASE") ?? settings.databasePath
        settings.logFile = env.string("MYBA_LOG_FILE") ?? settings.logFile
        settings.logMaxBytes = try env.integer("MYBA_LOG_MAX_BYTES", in: 4096...Int(Int32.max)) ?? settings.logMaxBytes
        settings.logMaxFiles = try env.integer("MYBA_LOG_MAX_FILES", in: 0...1000) ?? settings.logMaxFiles
        if let level = env.string("MYBA_LOG_LEVEL") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(level) else {
                throw SettingsError(variable: "MYBA_LOG_LEVEL", problem: "must be one of \(levels.joined(separator: ", ")), got \"\(level)\"")
            }
            settings.logLevel = level
        }
        settings.plansFile = env.string("MYBA_PLANS_FILE")
        settings.environmentName = env.string("MYBA_ENV") ?? settings.environmentName
        if let timeout = try env.integer("MYBA_DB_BUSY_TIMEOUT_MS", in: 1...600_000) {
            settings.busyTimeoutSeconds = Double(timeout) / 1000
        }
        settings.maxBodyBytes = try env.integer("MYBA_MAX_BODY_BYTES", in: 1024...(64 * 1024 * 1024)) ?? settings.maxBodyBytes
        return settings
    }
}

/// A variable that is set to something unusable.
public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public var variable: String
    public var problem: String
    public var description: String { "\(variable) \(problem)" }
}

struct EnvironmentReader {
    let values: [String: String]

    init(_ values: [String: String]) { self.values = values }

    /// The variable's value, treating empty as unset.
    func string(_ name: String) -> String? {
        guard let value = values[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw SettingsError(variable: name, problem: "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }
}
