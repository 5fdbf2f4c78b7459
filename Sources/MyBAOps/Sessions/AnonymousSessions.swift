import Crypto
import Foundation

/// An anonymous visitor's session and its free tokens.
public struct AnonymousSession: Equatable, Sendable {
    public var id: String
    public var granted: Int
    public var used: Int
    public var createdAt: Date
    public var lastSeenAt: Date
    public var transferredTo: String?
    public var transferredAt: Date?
    public var transferredTokens: Int?

    /// What the session can still spend (nothing once moved to an account).
    public var remaining: Int { transferredTo == nil ? max(granted - used, 0) : 0 }
}

/// An anonymous session id is a bearer credential: whoever holds it spends the session's tokens.
/// Logs carry this short digest instead (`session.digest`), enough to follow one session through
/// the log and useless to spend with.
public enum SessionDigest {
    public static func of(_ sessionId: String) -> String {
        "sd_" + String(SHA256.hash(data: Data(sessionId.utf8)).lowercaseHex.prefix(12))
    }
}

/// Why an anonymous-session operation was refused. Nothing was written.
public enum AnonymousSessionError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidFingerprint
    case sessionNotFound(String)
    /// The session's tokens were moved to an account: sign in to spend them.
    case alreadyTransferred(sessionId: String)
    /// The account has received as many anonymous sessions as one account may (`limit`).
    case transferLimitReached(limit: Int)
    case insufficientTokens(sessionId: String, remaining: Int)
    /// Too many new sessions from one address; retry after the given seconds.
    case rateLimited(retryAfterSeconds: Int)
    case idempotencyKeyReused(String)

    public var description: String {
        switch self {
        case .invalidFingerprint: return "fingerprint must be 1–512 characters"
        case .sessionNotFound(let id): return "no anonymous session \(id)"
        case .alreadyTransferred(let id): return "session \(id) was moved to an account; sign in to use its tokens"
        case .transferLimitReached(let limit):
            return "this account has already received \(limit) anonymous session\(limit == 1 ? "" : "s"), the most one account can; nothing was moved"
        case .insufficientTokens(_, let remaining): return "no free tokens left in this session (\(remaining) remaining); sign up to get more"
        case .rateLimited(let seconds): return "too many new sessions from this address; retry in \(seconds) s"
        case .idempotencyKeyReused(let key): return "idempotency key \(key) was used for a different charge"
        }
    }
}

/// The outcome of `POST /api/anonymous-session`.
public struct AnonymousSessionStart: Equatable, Sendable {
    public var session: AnonymousSession
    public var created: Bool
}

/// The outcome of moving a session's tokens to an account.
public struct TransferResult: Equatable, Sendable {
    public var transferred: Int
    public var balance: Balance
    /// How many more anonymous sessions the account may receive.
    public var transfersLeft: Int
}

extension AnonymousSessions {
    /// Returns the session of `fingerprint`, creating it with `settings.freeTokens` tokens when
    /// new. The same fingerprint always gets the same session and never a fresh count. Creation
    /// (only creation) is limited per client address to `sessionsPerHour`.
    public func start(fingerprint: String, clientAddress: String, settings: AnonymousSettings) async throws -> AnonymousSessionStart {
        // Code points, as JSON Schema's maxLength counts them in the contract.
        guard (1...512).contains(fingerprint.unicodeScalars.count) else { throw AnonymousSessionError.invalidFingerprint }
        let fingerprintHash = Self.saltedHash("fingerprint", fingerprint, secret: settings.fingerprintSecret)
        // IPv6 clients count by their /64: one subscriber holds a whole /64.
        let addressHash = Self.saltedHash("address", ClientAddress.limitKey(clientAddress), secret: settings.fingerprintSecret)
        return try await database.write { tx in
            let now = Date().truncatedToMilliseconds
            try tx.sessions.lockCreations(fingerprintHash: fingerprintHash, addressHash: addressHash)
            if var existing = try tx.sessions.session(fingerprintHash: fingerprintHash) {
                try tx.sessions.touch(id: existing.id, at: now)
                existing.lastSeenAt = now
                return AnonymousSessionStart(session: existing, created: false)
            }
            // The address index walks the hour oldest first and stops at the limit: the check
            // costs the same however many sessions one address made (a raised limit, a farm).
            let recent = try tx.sessions.creationTimes(addressHash: addressHash, since: HourlyWindow.start(now), limit: settings.sessionsPerHour)
            if let retryAfter = HourlyWindow.retryAfter(oldestFirst: recent, limit: settings.sessionsPerHour, now: now) {
                throw AnonymousSessionError.rateLimited(retryAfterSeconds: retryAfter)
            }
            let session = AnonymousSession(id: Self.newSessionId(), granted: settings.freeTokens, used: 0, createdAt: now, lastSeenAt: now)
            try tx.sessions.insert(session, fingerprintHash: fingerprintHash, addressHash: addressHash)
            let granted = session.granted
            tx.afterCommit { MyBAMetrics.recordCommittedSession(granted: granted) }
            return AnonymousSessionStart(session: session, created: true)
        }
    }

    public func session(id: String) async throws -> AnonymousSession? {
        try await database.read { tx in try tx.sessions.session(id: id) }
    }

    /// Moves what the session has left to `userId`'s account, once: the session is marked
    /// transferred and a `transfer` entry (key `transfer:<sessionId>`) is posted in the same
    /// transaction. Later calls move nothing. The customer is opened (welcome grant) if new.
    ///
    /// One account receives at most `limit` sessions, ever (`MYBA_MAX_SESSION_TRANSFERS`): free
    /// sessions farmed in many browsers cannot be pooled into one account. Past the limit the
    /// transfer is refused and the session keeps its tokens.
    public func transfer(
        sessionId: String,
        to userId: String,
        limit: Int = AnonymousSettings().maxTransfersPerAccount,
        actor: String,
        requestId: String?
    ) async throws -> TransferResult {
        try Ledger.validateUserId(userId)
        return try await database.write { tx in
            let now = Date().truncatedToMilliseconds
            guard let session = try tx.sessions.session(id: sessionId) else {
                throw AnonymousSessionError.sessionNotFound(sessionId)
            }
            try Ledger.openAccount(userId: userId, email: nil, actor: actor, requestId: requestId, now: now, in: tx)
            let received = try tx.sessions.transferCount(to: userId)
            guard session.transferredTo == nil else {
                let balance = try tx.ledger.balance(userId: userId) ?? .empty(userId: userId, at: now)
                return TransferResult(transferred: 0, balance: balance, transfersLeft: max(limit - received, 0))
            }
            guard received < limit else { throw AnonymousSessionError.transferLimitReached(limit: limit) }
            let transfersLeft = limit - received - 1
            let remaining = session.remaining
            try tx.sessions.markTransferred(id: sessionId, to: userId, tokens: remaining, at: now)
            if remaining > 0 {
                let posting = LedgerPosting(
                    userId: userId,
                    kind: .transfer,
                    delta: remaining,
                    idempotencyKey: "transfer:\(sessionId)",
                    reference: sessionId,
                    actor: actor,
                    reason: "anonymous session tokens",
                    requestId: requestId
                )
                let result = try Ledger.post(posting, now: now, in: tx)
                return TransferResult(transferred: remaining, balance: result.balance, transfersLeft: transfersLeft)
            }
            let balance = try tx.ledger.balance(userId: userId) ?? .empty(userId: userId, at: now)
            return TransferResult(transferred: 0, balance: balance, transfersLeft: transfersLeft)
        }
    }

    /// Spends `amount` of the session's free tokens under `idempotencyKey`; a replay of the key
    /// returns the session as it is and spends nothing.
    public func charge(
        sessionId: String,
        amount: Int = 1,
        idempotencyKey: String,
        requestId: String?
    ) async throws -> AnonymousSession {
        try await database.write { tx in
            try Self.chargeSession(
                sessionId: sessionId,
                amount: amount,
                idempotencyKey: idempotencyKey,
                requestId: requestId,
                now: Date().truncatedToMilliseconds,
                in: tx
            )
        }
    }

    static func chargeSession(
        sessionId: String,
        amount: Int,
        idempotencyKey: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> AnonymousSession {
        guard var session = try tx.sessions.session(id: sessionId) else {
            throw AnonymousSessionError.sessionNotFound(sessionId)
        }
        if let existing = try tx.sessions.charge(idempotencyKey: idempotencyKey) {
            guard existing.sessionId == sessionId, existing.amount == amount else {
                throw AnonymousSessionError.idempotencyKeyReused(idempotencyKey)
            }
            return session
        }
        guard session.transferredTo == nil else { throw AnonymousSessionError.alreadyTransferred(sessionId: sessionId) }
        guard session.remaining >= amount else {
            throw AnonymousSessionError.insufficientTokens(sessionId: sessionId, remaining: session.remaining)
        }
        try tx.sessions.insertCharge(sessionId: sessionId, amount: amount, idempotencyKey: idempotencyKey, requestId: requestId, at: now)
        tx.afterCommit { MyBAMetrics.recordCommittedSessionCharge(amount: amount) }
        try tx.sessions.addUsed(amount, sessionId: sessionId, at: now)
        session.used += amount
        session.lastSeenAt = now
        return session
    }

    static func releaseSessionCharge(
        sessionId: String,
        chargeKey: String,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> AnonymousSession {
        guard var session = try tx.sessions.session(id: sessionId) else {
            throw AnonymousSessionError.sessionNotFound(sessionId)
        }
        guard let charged = try tx.sessions.chargedAmount(idempotencyKey: chargeKey, sessionId: sessionId) else {
            return session
        }
        let releaseKey = "release:\(chargeKey)"
        if try tx.sessions.chargeExists(idempotencyKey: releaseKey) {
            return session
        }
        try tx.sessions.insertCharge(sessionId: sessionId, amount: -charged, idempotencyKey: releaseKey, requestId: requestId, at: now)
        tx.afterCommit { MyBAMetrics.recordCommittedSessionCharge(amount: -charged) }
        try tx.sessions.subtractUsed(charged, sessionId: sessionId)
        session.used -= charged
        if let owner = session.transferredTo {
            // The session was moved to an account while this generation was in flight: its
            // remainder lives in that account now, so the token given back follows it there (a
            // `transfer` entry referencing the session) instead of vanishing in a session nobody
            // can spend from.
            _ = try Ledger.post(
                LedgerPosting(
                    userId: owner,
                    kind: .transfer,
                    delta: charged,
                    idempotencyKey: "release:\(chargeKey)",
                    reference: sessionId,
                    actor: "system",
                    reason: "a generation of the moved anonymous session failed; its token follows the session",
                    requestId: requestId
                ),
                now: now,
                in: tx
            )
            try tx.sessions.addTransferredTokens(charged, sessionId: sessionId)
            session.transferredTokens = (session.transferredTokens ?? 0) + charged
        }
        return session
    }

    /// The number of anonymous sessions.
    public func count() async throws -> Int {
        try await database.read { tx in try tx.sessions.count() }
    }

    static func saltedHash(_ purpose: String, _ value: String, secret: String) -> String {
        let key = SymmetricKey(data: Data("\(secret):\(purpose)".utf8))
        return HMAC<SHA256>.authenticationCode(for: Data(value.utf8), using: key).lowercaseHex
    }

    static func newSessionId() -> String {
        var generator = SystemRandomNumberGenerator()
        return "anon_"
            + (0..<3).map { _ in
                let hex = String(generator.next() as UInt64, radix: 16)
                return String(repeating: "0", count: 16 - hex.count) + hex
            }.joined()
    }
}
