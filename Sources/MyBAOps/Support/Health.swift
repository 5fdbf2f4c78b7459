import Foundation
import GRDB

/// What `/api/health` reports about storage.
public struct StorageHealth: Sendable, Equatable {
    public var databaseReadable: Bool
    public var customers: Int?
    public var problem: String?
}

extension AppDatabase {
    /// Reads a count from the database; a failure is reported, not thrown, since health checks
    /// must answer when storage is broken.
    public func health() async -> StorageHealth {
        do {
            let customers = try await customerCount()
            return StorageHealth(databaseReadable: true, customers: customers, problem: nil)
        } catch {
            return StorageHealth(databaseReadable: false, customers: nil, problem: "\(error)")
        }
    }
}
