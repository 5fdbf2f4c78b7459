import Foundation
import Synchronization

/// User ids this process has recently seen with an open account, so that a signed-in request
/// does not read the customers table each time just to learn that the account exists.
///
/// An entry is trusted for `maxAge` only: a deletion (Clerk `user.deleted`, processed by this
/// process, another server or a console replay) is noticed on every route within that time, and
/// the spending path checks it in its own transaction at once. The set is bounded; when full it
/// starts over, which costs a read per user again and nothing else.
final class KnownAccounts: Sendable {
    static let capacity = 10_000
    static let maxAge = Duration.seconds(5)
    private let seen = Mutex([String: ContinuousClock.Instant]())

    func contains(_ userId: String) -> Bool {
        seen.withLock { seen in seen[userId].map { ContinuousClock.now - $0 < Self.maxAge } ?? false }
    }

    func insert(_ userId: String) {
        seen.withLock { seen in
            if seen.count >= Self.capacity { seen.removeAll(keepingCapacity: true) }
            seen[userId] = .now
        }
    }
}

extension Ledger {
    /// Opens the account of a signed-in user on their first request: the customer and the
    /// welcome grant, once (see `openAccount`). Returns the grant when this call made it; nil
    /// when the account already existed, which after the first time this process saw the user
    /// costs no database access.
    /// A deleted account is refused (`LedgerError.accountDeleted`).
    public func openAccountOnFirstRequest(userId: String, actor: String, requestId: String?) async throws -> PostingResult? {
        if database.knownAccounts.contains(userId) { return nil }
        if let customer = try await customer(userId: userId) {
            if customer.deletedAt != nil { throw LedgerError.accountDeleted(userId: userId) }
            database.knownAccounts.insert(userId)
            return nil
        }
        let opened = try await openAccount(userId: userId, email: nil, actor: actor, requestId: requestId)
        database.knownAccounts.insert(userId)
        return opened.replayed ? nil : opened
    }
}
