import Foundation
import Synchronization

/// User ids this process has seen with an account, so that a signed-in request does not read
/// the customers table each time just to learn that the account exists.
///
/// Remembering is safe because a customer row is never removed: deletion only sets
/// `deleted_at`, and ledger entries reference the row. The set is bounded; when full it starts
/// over, which costs a read per user again and nothing else.
final class KnownAccounts: Sendable {
    static let capacity = 10_000
    private let ids = Mutex(Set<String>())

    func contains(_ userId: String) -> Bool { ids.withLock { $0.contains(userId) } }

    func insert(_ userId: String) {
        ids.withLock { ids in
            if ids.count >= Self.capacity { ids.removeAll(keepingCapacity: true) }
            ids.insert(userId)
        }
    }
}

extension AppDatabase {
    /// Opens the account of a signed-in user on their first request: the customer and the
    /// welcome grant, once (see `openAccount`). Returns the grant when this call made it; nil
    /// when the account already existed, which after the first time this process saw the user
    /// costs no database access.
    public func openAccountOnFirstRequest(userId: String, actor: String, requestId: String?) async throws -> PostingResult? {
        if knownAccounts.contains(userId) { return nil }
        if try await customer(userId: userId) != nil {
            knownAccounts.insert(userId)
            return nil
        }
        let opened = try await openAccount(userId: userId, email: nil, actor: actor, requestId: requestId)
        knownAccounts.insert(userId)
        return opened.replayed ? nil : opened
    }
}
