import Foundation

/// Where `MYBA_DATABASE` (or the console's `--db`) points: an SQLite file, or a PostgreSQL
/// database given as `postgres://user[:password]@host[:port]/database[?sslmode=…]`.
public enum DatabaseLocation: Equatable, Sendable {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    /// A `postgres://` or `postgresql://` URL selects PostgreSQL; anything else is a file path.
    /// The password comes from the URL or, when the URL has none, from `PGPASSWORD`.
    public static func parse(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseLocation {
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else { return .sqlite(path: text) }
        return .postgres(try PostgresLocation(url: text, environment: environment))
    }

    public var isSQLite: Bool {
        if case .sqlite = self { return true }
        return false
    }
}

/// A PostgreSQL database to connect to. Its description never shows the password.
public struct PostgresLocation: Equatable, Sendable, CustomStringConvertible {
    public enum TLSMode: String, Sendable {
        /// Plain TCP (`sslmode=disable`).
        case disable
        /// TLS when the server offers it (`sslmode=prefer`, libpq's default), certificate not checked.
        case prefer
        /// TLS required, certificate not checked (`sslmode=require`).
        case require
        /// TLS required and the server's certificate and name checked (`verify-full`, `verify-ca`).
        case verify

        /// The same mode for libpq's tools (`PGSSLMODE` of `pg_dump`).
        public var libpqMode: String {
            switch self {
            case .disable: return "disable"
            case .prefer: return "prefer"
            case .require: return "require"
            case .verify: return "verify-full"
            }
        }
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    public init(url text: String, environment: [String: String] = [:]) throws {
        func problem(_ detail: String) -> SettingsError {
            SettingsError(
                variable: "MYBA_DATABASE",
                problem: "\(detail) (expected postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require|verify-full])"
            )
        }
        guard let url = URLComponents(string: text), let scheme = url.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw problem("is not a PostgreSQL URL")
        }
        guard let host = url.host, !host.isEmpty else { throw problem("names no host") }
        guard let user = url.user, !user.isEmpty else { throw problem("names no user") }
        let database = String(url.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw problem("names no database") }
        let port = url.port ?? 5432
        guard (1...65535).contains(port) else { throw problem("has a port out of range") }
        var mode = TLSMode.prefer
        for item in url.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": mode = .disable
                case "allow", "prefer": mode = .prefer
                case "require": mode = .require
                case "verify-ca", "verify-full": mode = .verify
                default: throw problem("has an unknown sslmode \"\(item.value ?? "")\"")
                }
            default:
                throw problem("has an unsupported parameter \"\(item.name)\"")
            }
        }
        self.host = host
        self.port = port
        self.username = user.removingPercentEncoding ?? user
        self.password = url.password.map { $0.removingPercentEncoding ?? $0 } ?? environment["PGPASSWORD"]
        self.database = database.removingPercentEncoding ?? database
        self.tls = mode
    }

    /// `postgres://user@host:port/database?sslmode=…`, without the password.
    public var description: String {
        "postgres://\(username)@\(host):\(port)/\(database)?sslmode=\(tls == .verify ? "verify-full" : tls.rawValue)"
    }
}
