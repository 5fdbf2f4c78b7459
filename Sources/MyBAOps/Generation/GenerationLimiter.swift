import Synchronization

/// Caps on generations waiting for an AI provider: one for the whole server, one per payer
/// (account, anonymous session, or own-key caller). Past a cap the request is refused at once,
/// before anything is reserved, instead of queueing behind calls that take seconds each.
public final class GenerationLimiter: Sendable {
    public enum Refusal: Error, Equatable, Sendable {
        /// The server has `limit` generations in flight.
        case server(limit: Int)
        /// This payer has `limit` generations in flight.
        case payer(limit: Int)
    }

    private let total: Int
    private let perPayer: Int
    private let state = Mutex<(count: Int, byPayer: [String: Int])>((0, [:]))

    public init(total: Int, perPayer: Int) {
        self.total = total
        self.perPayer = perPayer
    }

    /// Counts one generation of `payer` in, or refuses it; every success is paired with `leave`.
    func enter(_ payer: String) throws {
        try state.withLock { state in
            if state.byPayer[payer, default: 0] >= perPayer { throw Refusal.payer(limit: perPayer) }
            if state.count >= total { throw Refusal.server(limit: total) }
            state.count += 1
            state.byPayer[payer, default: 0] += 1
        }
    }

    func leave(_ payer: String) {
        state.withLock { state in
            state.count -= 1
            let left = state.byPayer[payer, default: 1] - 1
            state.byPayer[payer] = left > 0 ? left : nil
        }
    }

    /// Generations waiting for a provider now.
    public var inFlight: Int { state.withLock { $0.count } }
}
