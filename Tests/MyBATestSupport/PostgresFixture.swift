import Foundation

@testable import MyBAOps

/// A fresh database on the test cluster (`MYBA_TEST_POSTGRES_URL`, started by `scripts/test.sh`
/// from the machine's PostgreSQL), and engines on it that stand for separate servers.
public struct PostgresFixture: Sendable {
    public let location: PostgresLocation
    let admin: PostgresEngine

    /// Whether a test cluster is configured; the PostgreSQL suites are enabled only then.
    public static var isAvailable: Bool { ProcessInfo.processInfo.environment["MYBA_TEST_POSTGRES_URL"] != nil }

    public static func make() async throws -> PostgresFixture {
        guard let url = ProcessInfo.processInfo.environment["MYBA_TEST_POSTGRES_URL"] else {
            throw TestSupportError("MYBA_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, which starts a PostgreSQL cluster")
        }
        let server = try PostgresLocation(url: url)
        let admin = PostgresEngine(location: server, maxConnections: 2)
        var location = server
        location.database = "myba_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try await admin.runOutsideTransaction("CREATE DATABASE \(location.database)")
        return PostgresFixture(location: location, admin: admin)
    }

    /// The database's URL, as `MYBA_DATABASE` takes it.
    public var url: String {
        "postgres://\(location.username)@\(location.host):\(location.port)/\(location.database)?sslmode=disable"
    }

    /// An engine of its own, as another server would have.
    public func engine(maxConnections: Int = 8) -> PostgresEngine {
        PostgresEngine(location: location, maxConnections: maxConnections)
    }

    /// A migrated `AppDatabase` on its own engine.
    public func database(maxConnections: Int = 8) async throws -> AppDatabase {
        try await AppDatabase.open(postgres: engine(maxConnections: maxConnections))
    }

    public func remove(_ engines: [PostgresEngine] = []) async {
        for engine in engines { await engine.shutdown() }
        try? await admin.runOutsideTransaction("DROP DATABASE IF EXISTS \(location.database) WITH (FORCE)")
        await admin.shutdown()
    }
}

/// The backends a storage or ledger test runs on: SQLite always, PostgreSQL when the test
/// cluster is configured (`scripts/test.sh` starts one).
public enum TestBackend: String, Sendable, CustomStringConvertible, CaseIterable {
    case sqlite
    case postgres

    public static var available: [TestBackend] { PostgresFixture.isAvailable ? [.sqlite, .postgres] : [.sqlite] }

    public var description: String { rawValue }
}
