import GRDB

/// A customer with its balance and newest entries, read from one snapshot.
public struct CustomerSummary: Equatable, Sendable {
    public var customer: Customer
    public var balance: Balance
    /// Newest first.
    public var recentEntries: [LedgerEntry]
}

extension AppDatabase {
    /// The summary of `userId`, or `nil` for an unknown customer.
    public func customerSummary(userId: String, entryLimit: Int) async throws -> CustomerSummary? {
        try await writer.read { db in
            guard let customer = try Customer.fetchOne(db, key: userId) else { return nil }
            let balance = try Balance.fetchOne(db, key: userId) ?? .empty(userId: userId, at: customer.createdAt)
            let entries =
                try LedgerEntry
                .filter(Column("user_id") == userId)
                .order(Column("id").desc)
                .limit(entryLimit)
                .fetchAll(db)
            return CustomerSummary(customer: customer, balance: balance, recentEntries: entries)
        }
    }
}
