/// Why the ledger refused a change. Nothing was written when one of these is thrown.
public enum LedgerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A consume asked for more tokens than the balance holds.
    case insufficientTokens(userId: String, available: Int, requested: Int)
    /// A non-consume entry would take a projection field below zero.
    case wouldGoNegative(userId: String, field: String, current: Int, change: Int)
    /// The idempotency key was used before for a different change.
    case idempotencyKeyReused(key: String, existingEntryId: Int64)
    case unknownCustomer(userId: String)
    case invalidPosting(String)
    /// The user was deleted (Clerk `user.deleted`): their sessions spend nothing and no welcome
    /// grant reopens the account.
    case accountDeleted(userId: String)

    public var description: String {
        switch self {
        case .insufficientTokens(let userId, let available, let requested):
            return "insufficient tokens: \(userId) has \(available), needs \(requested)"
        case .wouldGoNegative(let userId, let field, let current, let change):
            return "refused: \(field) of \(userId) would go below zero (\(current) \(change >= 0 ? "+" : "−") \(abs(change)))"
        case .idempotencyKeyReused(let key, let existing):
            return "idempotency key \"\(key)\" was already used by entry #\(existing) with different parameters"
        case .unknownCustomer(let userId):
            return "no customer with id \(userId)"
        case .invalidPosting(let reason):
            return "invalid ledger entry: \(reason)"
        case .accountDeleted(let userId):
            return "the account \(userId) was deleted"
        }
    }

    /// A short machine-readable code, used in API errors and console JSON.
    public var code: String {
        switch self {
        case .insufficientTokens: return "insufficient_tokens"
        case .wouldGoNegative: return "would_go_negative"
        case .idempotencyKeyReused: return "idempotency_key_reused"
        case .unknownCustomer: return "unknown_customer"
        case .invalidPosting: return "invalid_entry"
        case .accountDeleted: return "account_deleted"
        }
    }
}
