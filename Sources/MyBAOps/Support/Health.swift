import Foundation
import GRDB

/// What `/api/health` reports about storage.
public struct StorageHealth: Sendable, Equatable {
    public var databaseReadable: Bool
    public var customers: Int?
    public var anonymousSessions: Int?
    public var problem: String?
}

extension AppDatabase {
    /// Reads a count from the database; a failure is reported, not thrown, since health checks
    /// must answer when storage is broken.
    public func health() async -> StorageHealth {
        do {
            let (customers, sessions) = try await writer.read { db in
                (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM customers") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions") ?? 0)
            }
            return StorageHealth(databaseReadable: true, customers: customers, anonymousSessions: sessions, problem: nil)
        } catch {
            return StorageHealth(databaseReadable: false, customers: nil, anonymousSessions: nil, problem: "\(error)")
        }
    }
}
