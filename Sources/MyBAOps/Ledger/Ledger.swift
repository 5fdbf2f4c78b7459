import Foundation

/// A request to append one entry to the ledger.
public struct LedgerPosting: Equatable, Sendable {
    public var userId: String
    public var kind: LedgerEntryKind
    /// Signed change of `tokens`; its sign must match `kind.allowedSign`.
    public var delta: Int
    /// Unique forever. Re-posting it with the same parameters returns the original entry.
    public var idempotencyKey: String
    /// What caused the entry: a checkout session, an event id, a request id.
    public var reference: String?
    /// Who made the change: `api`, `webhook:stripe`, `operator:alice`, …
    public var actor: String
    public var reason: String?
    public var requestId: String?
    /// Legacy counters and dates, for `import` entries only.
    public var opening: OpeningBalance?
    /// For `payment_refund`: tokens that should have been taken back but had been spent.
    public var shortfall: Int = 0

    public init(
        userId: String,
        kind: LedgerEntryKind,
        delta: Int,
        idempotencyKey: String,
        reference: String? = nil,
        actor: String,
        reason: String? = nil,
        requestId: String? = nil,
        opening: OpeningBalance? = nil,
        shortfall: Int = 0
    ) {
        self.shortfall = shortfall
        self.userId = userId
        self.kind = kind
        self.delta = delta
        self.idempotencyKey = idempotencyKey
        self.reference = reference
        self.actor = actor
        self.reason = reason
        self.requestId = requestId
        self.opening = opening
    }
}

/// What posting did.
public struct PostingResult: Equatable, Sendable {
    /// The entry: new, or the original one for a replayed idempotency key.
    public var entry: LedgerEntry
    /// The balance after the entry (for a replay: the current balance).
    public var balance: Balance
    /// True when the key existed and nothing was written.
    public var replayed: Bool
}

/// The number of tokens the welcome grant gives.
public let welcomeGrantTokens = 6

/// Limits that keep arithmetic far from overflow and keys within Stripe's 255 characters.
public enum LedgerLimits {
    public static let maxAbsoluteDelta = 1_000_000_000
    public static let maxIdempotencyKeyLength = 255
    public static let maxUserIdLength = 255
}

extension Ledger {
    /// Appends `posting` to the ledger and moves the balance in the same transaction.
    public func post(_ posting: LedgerPosting) async throws -> PostingResult {
        try Self.validate(posting)
        return try await database.write { tx in try Self.post(posting, now: Date(), in: tx) }
    }

    /// Synchronous `post`, for benchmarks and tools without an async context.
    public func postSync(_ posting: LedgerPosting) throws -> PostingResult {
        try Self.validate(posting)
        return try database.writeAlone { tx in try Self.post(posting, now: Date(), in: tx) }
    }

    /// Spends `amount` tokens, never taking the balance below zero: a consume that does not fit
    /// throws `LedgerError.insufficientTokens` and writes nothing.
    public func consume(
        userId: String,
        amount: Int = 1,
        idempotencyKey: String,
        reference: String? = nil,
        actor: String,
        requestId: String? = nil
    ) async throws -> PostingResult {
        try await post(
            Self.consumePosting(
                userId: userId,
                amount: amount,
                idempotencyKey: idempotencyKey,
                reference: reference,
                actor: actor,
                requestId: requestId
            )
        )
    }

    /// Synchronous `consume`.
    public func consumeSync(
        userId: String,
        amount: Int = 1,
        idempotencyKey: String,
        reference: String? = nil,
        actor: String,
        requestId: String? = nil
    ) throws -> PostingResult {
        try postSync(
            Self.consumePosting(
                userId: userId,
                amount: amount,
                idempotencyKey: idempotencyKey,
                reference: reference,
                actor: actor,
                requestId: requestId
            )
        )
    }

    static func consumePosting(
        userId: String,
        amount: Int,
        idempotencyKey: String,
        reference: String?,
        actor: String,
        requestId: String?
    ) throws -> LedgerPosting {
        guard amount > 0 else { throw LedgerError.invalidPosting("a consume takes a positive amount, got \(amount)") }
        return LedgerPosting(
            userId: userId,
            kind: .consume,
            delta: -amount,
            idempotencyKey: idempotencyKey,
            reference: reference,
            actor: actor,
            requestId: requestId
        )
    }

    /// Creates the customer if unknown and grants the welcome tokens once (key `welcome:<userId>`),
    /// in one transaction. Safe to call on every sign-in and from the Clerk webhook.
    public func openAccount(userId: String, email: String?, actor: String, requestId: String? = nil) async throws -> PostingResult {
        try Self.validateUserId(userId)
        return try await database.write { tx in
            try Self.openAccount(userId: userId, email: email, actor: actor, requestId: requestId, now: Date().truncatedToMilliseconds, in: tx)
        }
    }

    @discardableResult
    static func openAccount(
        userId: String,
        email: String?,
        actor: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> PostingResult {
        let posting = LedgerPosting(
            userId: userId,
            kind: .welcome,
            delta: welcomeGrantTokens,
            idempotencyKey: "welcome:\(userId)",
            actor: actor,
            reason: "welcome grant",
            requestId: requestId
        )
        let customer = try tx.ledger.createCustomerIfMissing(userId: userId, email: email, now: now)
        // A deleted user stays deleted: no request, transfer or late user.created reopens it.
        if customer.deletedAt != nil { throw LedgerError.accountDeleted(userId: userId) }
        return try post(posting, now: now, in: tx)
    }

    /// Creates the customer and its zero balance when missing; returns the stored customer.
    @discardableResult
    public func createCustomer(userId: String, email: String? = nil) async throws -> Customer {
        try Self.validateUserId(userId)
        return try await database.write { tx in
            try tx.ledger.createCustomerIfMissing(userId: userId, email: email, now: Date().truncatedToMilliseconds)
        }
    }

    /// The balance of `userId`, or `nil` for an unknown customer.
    public func balance(userId: String) async throws -> Balance? {
        try await database.read { tx in try tx.ledger.balance(userId: userId) }
    }

    /// The customer `userId`, or `nil`.
    public func customer(userId: String) async throws -> Customer? {
        try await database.read { tx in try tx.ledger.customer(userId: userId) }
    }

    /// The newest `limit` entries of `userId`, newest first.
    public func entries(userId: String, limit: Int) async throws -> [LedgerEntry] {
        try await database.read { tx in try tx.ledger.entries(userId: userId, limit: limit) }
    }
}

// MARK: - Rules

extension Ledger {
    static func validateUserId(_ userId: String) throws {
        guard !userId.isEmpty, userId.count <= LedgerLimits.maxUserIdLength,
            !userId.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw LedgerError.invalidPosting("user id must be 1–\(LedgerLimits.maxUserIdLength) printable characters") }
    }

    static func validate(_ posting: LedgerPosting) throws {
        try validateUserId(posting.userId)
        let key = posting.idempotencyKey
        guard !key.isEmpty, key.utf8.count <= LedgerLimits.maxIdempotencyKeyLength else {
            throw LedgerError.invalidPosting("idempotency key must be 1–\(LedgerLimits.maxIdempotencyKeyLength) bytes")
        }
        guard abs(posting.delta) <= LedgerLimits.maxAbsoluteDelta else {
            throw LedgerError.invalidPosting("delta \(posting.delta) is beyond ±\(LedgerLimits.maxAbsoluteDelta)")
        }
        guard posting.kind.allowedSign.admits(posting.delta) else {
            throw LedgerError.invalidPosting(
                "a \(posting.kind.rawValue) entry takes a \(posting.kind.allowedSign.phrase) delta, got \(posting.delta)"
            )
        }
        guard !posting.actor.isEmpty else { throw LedgerError.invalidPosting("actor is required") }
        guard posting.shortfall >= 0, posting.shortfall == 0 || posting.kind == .paymentRefund else {
            throw LedgerError.invalidPosting("only payment_refund entries record a shortfall, and it cannot be negative")
        }
        if posting.kind == .paymentRefund && posting.delta == 0 && posting.shortfall == 0 {
            throw LedgerError.invalidPosting("a payment_refund takes tokens back or records a shortfall")
        }
        if posting.kind == .paymentRefund && posting.delta > 0 && posting.shortfall != 0 {
            throw LedgerError.invalidPosting("a payment_refund that gives tokens back records no shortfall")
        }
        if let opening = posting.opening {
            guard posting.kind == .import else {
                throw LedgerError.invalidPosting("only import entries carry opening counters")
            }
            for (name, value) in [
                ("tokens_used", opening.tokensUsed), ("tokens_purchased", opening.tokensPurchased), ("tokens_transferred", opening.tokensTransferred),
            ] {
                guard (0...LedgerLimits.maxAbsoluteDelta).contains(value) else {
                    throw LedgerError.invalidPosting("opening \(name) must be between 0 and \(LedgerLimits.maxAbsoluteDelta), got \(value)")
                }
            }
        }
    }

    /// The heart of the ledger. Runs inside an IMMEDIATE transaction: the balance check, the
    /// entry and the projection update commit together or not at all. A key that already exists
    /// makes the insert a no-op, and the original entry is compared and returned instead.
    static func post(_ posting: LedgerPosting, now: Date, in tx: StorageTransaction) throws -> PostingResult {
        let now = now.truncatedToMilliseconds
        guard let current = try tx.ledger.balance(userId: posting.userId) else {
            if let existing = try tx.ledger.entry(idempotencyKey: posting.idempotencyKey) {
                throw LedgerError.idempotencyKeyReused(key: posting.idempotencyKey, existingEntryId: existing.id ?? 0)
            }
            throw LedgerError.unknownCustomer(userId: posting.userId)
        }
        let opening = posting.opening.map(OpeningBalance.truncatingDates)
        let effect = posting.kind.effect(delta: posting.delta, at: now, opening: opening)
        let next = current.applying(effect, at: now)
        var entry = LedgerEntry(
            id: nil,
            userId: posting.userId,
            kind: posting.kind,
            delta: effect.tokens,
            usedDelta: effect.used,
            purchasedDelta: effect.purchased,
            transferredDelta: effect.transferred,
            setsLastPurchase: effect.setsLastPurchase,
            setsTransferDate: effect.setsTransferDate,
            idempotencyKey: posting.idempotencyKey,
            reference: posting.reference,
            actor: posting.actor,
            reason: posting.reason,
            requestId: posting.requestId,
            createdAt: now,
            shortfall: posting.shortfall
        )
        // A replay must be answered even when the balance no longer covers it, so a refusal is
        // decided only after the key is known to be new.
        let refusal = Self.refusal(current: current, next: next, posting: posting)
        if refusal == nil, try tx.ledger.insertIfNewKey(&entry) {
            try tx.ledger.update(next)
            try tx.outbox.enqueue(userId: posting.userId, now: now)
            return PostingResult(entry: entry, balance: next, replayed: false)
        }
        if let existing = try tx.ledger.entry(idempotencyKey: posting.idempotencyKey) {
            guard existing.matches(posting) else {
                throw LedgerError.idempotencyKeyReused(key: posting.idempotencyKey, existingEntryId: existing.id ?? 0)
            }
            return PostingResult(entry: existing, balance: current, replayed: true)
        }
        throw refusal ?? LedgerError.invalidPosting("idempotency key \(posting.idempotencyKey) conflicted but no entry holds it")
    }

    /// Why the move from `current` to `next` must be refused: a field would go below zero.
    private static func refusal(current: Balance, next: Balance, posting: LedgerPosting) -> LedgerError? {
        if next.tokens < 0 {
            if posting.kind == .consume {
                return .insufficientTokens(userId: posting.userId, available: current.tokens, requested: -posting.delta)
            }
            return .wouldGoNegative(userId: posting.userId, field: "tokens", current: current.tokens, change: next.tokens - current.tokens)
        }
        for (field, before, after) in [
            ("tokens_used", current.tokensUsed, next.tokensUsed),
            ("tokens_purchased", current.tokensPurchased, next.tokensPurchased),
            ("tokens_transferred", current.tokensTransferred, next.tokensTransferred),
        ] where after < 0 {
            return .wouldGoNegative(userId: posting.userId, field: field, current: before, change: after - before)
        }
        return nil
    }
}

extension LedgerEntry {
    /// Whether `posting` asks for the change this entry made. Actor, reason and request id are
    /// descriptive and may differ between a request and its retry; everything that moves tokens
    /// or identifies their cause must be equal.
    func matches(_ posting: LedgerPosting) -> Bool {
        guard userId == posting.userId, kind == posting.kind, delta == posting.delta, reference == posting.reference else {
            return false
        }
        guard kind == .import else { return posting.opening == nil }
        let opening = posting.opening ?? OpeningBalance()
        return usedDelta == opening.tokensUsed
            && purchasedDelta == opening.tokensPurchased
            && transferredDelta == opening.tokensTransferred
            && sameMillisecond(setsLastPurchase, opening.lastPurchase)
            && sameMillisecond(setsTransferDate, opening.transferDate)
    }
}

func sameMillisecond(_ a: Date?, _ b: Date?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (a?, b?): return (a.timeIntervalSince1970 * 1000).rounded() == (b.timeIntervalSince1970 * 1000).rounded()
    default: return false
    }
}

extension OpeningBalance {
    static func truncatingDates(_ opening: OpeningBalance) -> OpeningBalance {
        var copy = opening
        copy.lastPurchase = copy.lastPurchase?.truncatedToMilliseconds
        copy.transferDate = copy.transferDate?.truncatedToMilliseconds
        return copy
    }
}
