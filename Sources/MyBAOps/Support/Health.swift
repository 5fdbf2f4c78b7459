import Foundation
import Synchronization

/// What `/api/health` reports about storage.
public struct StorageHealth: Sendable, Equatable {
    public var databaseReadable: Bool
    public var customers: Int?
    public var anonymousSessions: Int?
    public var problem: String?
}

extension ConsoleQueries {
    /// Reads a count from the database; a failure is reported, not thrown, since health checks
    /// must answer when storage is broken.
    public func health() async -> StorageHealth {
        do {
            let (customers, sessions) = try await database.read { tx in (try tx.queries.customerCount(), try tx.sessions.count()) }
            return StorageHealth(databaseReadable: true, customers: customers, anonymousSessions: sessions, problem: nil)
        } catch {
            return StorageHealth(databaseReadable: false, customers: nil, anonymousSessions: nil, problem: "\(error)")
        }
    }
}

/// Storage health for an endpoint that load balancers poll every few seconds. Readability is
/// checked on every call with a one-row read; the counts are full scans (20 ms with a million
/// anonymous sessions), so they are refreshed at most every `countsMaxAge` and reused between.
public final class StorageHealthProbe: Sendable {
    public struct Report: Sendable, Equatable {
        public var storage: StorageHealth
        public var outbox: OutboxStatus?
    }

    private let database: AppDatabase
    private let countsMaxAge: Duration
    private let cached = Mutex<(at: ContinuousClock.Instant, report: Report)?>(nil)

    public init(database: AppDatabase, countsMaxAge: Duration = .seconds(5)) {
        self.database = database
        self.countsMaxAge = countsMaxAge
    }

    public func check() async -> Report {
        do {
            // The tables the API cannot work without, read on every call.
            try await database.read { tx in try tx.queries.probeCoreTables() }
        } catch {
            cached.withLock { $0 = nil }
            return Report(storage: StorageHealth(databaseReadable: false, customers: nil, anonymousSessions: nil, problem: "\(error)"), outbox: nil)
        }
        let now = ContinuousClock.now
        if let recent = cached.withLock({ $0 }), now - recent.at < countsMaxAge { return recent.report }
        let report = Report(storage: await database.queries.health(), outbox: try? await database.outbox.status())
        // Only a complete report is reused: a failed read is tried again on the next call.
        if report.storage.databaseReadable, report.outbox != nil { cached.withLock { $0 = (now, report) } }
        return report
    }
}
