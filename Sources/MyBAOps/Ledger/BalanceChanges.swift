import Synchronization

/// Wakes this process's balance listeners (the web page's balance stream) when a user's
/// balance changes.
///
/// Every balance change is a ledger entry, and each entry posts here after its transaction has
/// committed, so a listener that reads the balance when woken sees the change. Changes made by
/// another process on the same file (the console, a second server) are not posted here: the
/// listeners also re-read the balance now and then (see the account stream).
public final class BalanceChanges: Sendable {
    /// The process's one instance: the ledger posts to it from wherever an entry commits.
    public static let shared = BalanceChanges()

    private let state = Mutex(State())

    private struct State {
        var nextId = 0
        var listeners: [String: [Int: AsyncStream<Void>.Continuation]] = [:]
    }

    /// One listener's wake-ups: changes close together are coalesced into one.
    public struct Subscription: Sendable {
        public let wakeUps: AsyncStream<Void>
        let continuation: AsyncStream<Void>.Continuation

        /// Wakes the listener as a change would (a timer's re-read).
        public func poke() { continuation.yield() }
        /// Ends the wake-ups and forgets the listener.
        public func cancel() { continuation.finish() }
    }

    public init() {}

    /// Listens to `userId`'s balance; nil when the user already has `limit` listeners, so one
    /// account cannot hold unbounded streams open.
    public func subscribe(userId: String, limit: Int) -> Subscription? {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: Int? = state.withLock { state in
            guard state.listeners[userId, default: [:]].count < limit else { return nil }
            state.nextId += 1
            state.listeners[userId, default: [:]][state.nextId] = continuation
            return state.nextId
        }
        guard let id else {
            continuation.finish()
            return nil
        }
        continuation.onTermination = { [weak self] _ in self?.remove(userId: userId, id: id) }
        return Subscription(wakeUps: stream, continuation: continuation)
    }

    /// How many listeners `userId` has now.
    public func listenerCount(userId: String) -> Int {
        state.withLock { $0.listeners[userId]?.count ?? 0 }
    }

    /// Wakes `userId`'s listeners; called after an entry of theirs committed.
    func notify(userId: String) {
        let listeners = state.withLock { state in state.listeners[userId].map { Array($0.values) } ?? [] }
        for listener in listeners { listener.yield() }
    }

    private func remove(userId: String, id: Int) {
        state.withLock { state in
            state.listeners[userId]?[id] = nil
            if state.listeners[userId]?.isEmpty == true { state.listeners[userId] = nil }
        }
    }
}
