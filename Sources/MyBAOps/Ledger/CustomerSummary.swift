import Foundation

/// A customer with its balance and newest entries, read from one snapshot.
public struct CustomerSummary: Equatable, Sendable {
    public var customer: Customer
    public var balance: Balance
    /// Newest first.
    public var recentEntries: [LedgerEntry]
}

extension Ledger {
    /// The summary of `userId`, or `nil` for an unknown customer.
    public func summary(userId: String, entryLimit: Int) async throws -> CustomerSummary? {
        try await database.read { tx in
            guard let customer = try tx.ledger.customer(userId: userId) else { return nil }
            let balance = try tx.ledger.balance(userId: userId) ?? .empty(userId: userId, at: customer.createdAt)
            let entries = try tx.ledger.entries(userId: userId, limit: entryLimit)
            return CustomerSummary(customer: customer, balance: balance, recentEntries: entries)
        }
    }
}
