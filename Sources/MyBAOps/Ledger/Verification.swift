import Foundation

/// One way the stored data breaks a ledger rule.
public struct LedgerViolation: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// A projection field differs from the sum of the entries.
        case projectionMismatch = "projection_mismatch"
        /// A projection field or a running total is below zero.
        case negativeBalance = "negative_balance"
        /// Entries exist for a user without a projection row, or a customer has no projection.
        case missingProjection = "missing_projection"
        /// An entry's recorded effect is not what its kind's rule gives.
        case entryBreaksRule = "entry_breaks_rule"
        /// An anonymous session's count differs from its charges, or its transfer from the ledger.
        case sessionMismatch = "session_mismatch"
    }

    public var kind: Kind
    public var userId: String
    public var field: String?
    /// What the entries say.
    public var expected: String?
    /// What is stored.
    public var actual: String?
    public var entryId: Int64?
    public var message: String
}

/// The outcome of `Ledger.verify()`.
public struct LedgerVerification: Codable, Equatable, Sendable {
    public var checkedCustomers: Int
    public var checkedEntries: Int
    public var violations: [LedgerViolation]
    public var isClean: Bool { violations.isEmpty }
}

extension Ledger {
    /// Recomputes every projection from the entries, in one snapshot, and reports each field
    /// that differs, every negative balance (stored or at any point of the history), every entry
    /// whose recorded effect breaks its kind's rule, and every missing projection row.
    public func verify() async throws -> LedgerVerification {
        try await database.read { tx in try Self.verify(in: tx) }
    }

    static func verify(in tx: StorageTransaction) throws -> LedgerVerification {
        var violations: [LedgerViolation] = []
        var stored: [String: Balance] = [:]
        for balance in try tx.ledger.allBalances() { stored[balance.userId] = balance }
        let customerIds = try tx.ledger.customerIds()

        var replayed: [String: Balance] = [:]
        var entryCount = 0
        try tx.ledger.forEachEntryByUser { entry in
            entryCount += 1
            let id = entry.id ?? 0
            let opening =
                entry.kind == .import
                ? OpeningBalance(
                    tokensUsed: entry.usedDelta,
                    tokensPurchased: entry.purchasedDelta,
                    tokensTransferred: entry.transferredDelta,
                    lastPurchase: entry.setsLastPurchase,
                    transferDate: entry.setsTransferDate
                ) : nil
            let rule = entry.kind.effect(delta: entry.delta, at: entry.createdAt, opening: opening)
            if !entry.kind.allowedSign.admits(entry.delta) || !rule.sameEffect(as: entry.effect)
                || (entry.kind == .import && [entry.usedDelta, entry.purchasedDelta, entry.transferredDelta].contains { $0 < 0 })
            {
                violations.append(
                    LedgerViolation(
                        kind: .entryBreaksRule,
                        userId: entry.userId,
                        field: nil,
                        expected: rule.summary,
                        actual: entry.effect.summary,
                        entryId: id,
                        message: "entry #\(id) (\(entry.kind.rawValue)) records \(entry.effect.summary), its rule gives \(rule.summary)"
                    )
                )
            }
            let before = replayed[entry.userId] ?? .empty(userId: entry.userId, at: entry.createdAt)
            let after = before.applying(entry.effect, at: entry.createdAt)
            if after.tokens < 0 && before.tokens >= 0 {
                violations.append(
                    LedgerViolation(
                        kind: .negativeBalance,
                        userId: entry.userId,
                        field: "tokens",
                        expected: nil,
                        actual: String(after.tokens),
                        entryId: id,
                        message: "entry #\(id) took the balance of \(entry.userId) to \(after.tokens)"
                    )
                )
            }
            replayed[entry.userId] = after
        }

        for userId in Set(customerIds).union(replayed.keys).sorted() {
            let expected = replayed[userId] ?? .empty(userId: userId, at: Date())
            guard let actual = stored[userId] else {
                violations.append(
                    LedgerViolation(
                        kind: .missingProjection,
                        userId: userId,
                        field: nil,
                        expected: nil,
                        actual: nil,
                        entryId: nil,
                        message: "\(userId) has no balance row"
                    )
                )
                continue
            }
            for field in Balance.projectionFields {
                let want = field.value(expected)
                let have = field.value(actual)
                if want != have {
                    violations.append(
                        LedgerViolation(
                            kind: .projectionMismatch,
                            userId: userId,
                            field: field.name,
                            expected: want,
                            actual: have,
                            entryId: nil,
                            message: "\(userId): \(field.name) is \(have), the entries give \(want)"
                        )
                    )
                }
            }
            for (name, value) in [
                ("tokens", actual.tokens), ("tokens_used", actual.tokensUsed), ("tokens_purchased", actual.tokensPurchased),
                ("tokens_transferred", actual.tokensTransferred),
            ] where value < 0 {
                violations.append(
                    LedgerViolation(
                        kind: .negativeBalance,
                        userId: userId,
                        field: name,
                        expected: nil,
                        actual: String(value),
                        entryId: nil,
                        message: "\(userId): stored \(name) is negative (\(value))"
                    )
                )
            }
        }
        for userId in Set(stored.keys).subtracting(customerIds).sorted() {
            violations.append(
                LedgerViolation(
                    kind: .missingProjection,
                    userId: userId,
                    field: nil,
                    expected: nil,
                    actual: nil,
                    entryId: nil,
                    message: "balance row for \(userId) has no customer"
                )
            )
        }
        violations += try verifyAnonymousSessions(in: tx)
        return LedgerVerification(checkedCustomers: customerIds.count, checkedEntries: entryCount, violations: violations)
    }

    /// Each session's `used` equals the sum of its charges; what a moved session's account
    /// received (`transfer` entries referencing the session: the move, and tokens of generations
    /// that failed after it) equals its recorded `transferred_tokens`; and a moved session keeps
    /// nothing back (`granted − used = transferred_tokens`): a token left there is lost.
    static func verifyAnonymousSessions(in tx: StorageTransaction) throws -> [LedgerViolation] {
        var violations: [LedgerViolation] = []
        for row in try tx.queries.sessionsDisagreeingWithLedger() {
            let id = row.id
            let used = row.used
            let charged = row.charged
            let owner = row.transferredTo ?? (row.movedTo ?? "-")
            if used != charged {
                violations.append(
                    LedgerViolation(
                        kind: .sessionMismatch,
                        userId: owner,
                        field: "used",
                        expected: String(charged),
                        actual: String(used),
                        entryId: nil,
                        message: "anonymous session \(id): used is \(used), its charges sum to \(charged)"
                    )
                )
            } else if row.transferredTo != nil, row.granted - used != (row.transferredTokens ?? 0),
                (row.transferredTokens ?? 0) == (row.moved ?? 0)
            {
                let left = row.granted - used - (row.transferredTokens ?? 0)
                violations.append(
                    LedgerViolation(
                        kind: .sessionMismatch,
                        userId: owner,
                        field: "remainder",
                        expected: "0",
                        actual: String(left),
                        entryId: nil,
                        message: "anonymous session \(SessionDigest.of(id)) was moved to \(owner) but keeps \(left) token(s) nobody can spend"
                    )
                )
            } else {
                let moved = row.moved
                let recorded = row.transferredTokens
                violations.append(
                    LedgerViolation(
                        kind: .sessionMismatch,
                        userId: owner,
                        field: "transferred_tokens",
                        expected: moved.map(String.init) ?? "0",
                        actual: recorded.map(String.init) ?? "null",
                        entryId: nil,
                        message:
                            "anonymous session \(id): transfer recorded as \(recorded.map(String.init) ?? "none"), the ledger moved \(moved.map(String.init) ?? "nothing")"
                    )
                )
            }
        }
        return violations
    }
}

extension LedgerEffect {
    func sameEffect(as other: LedgerEffect) -> Bool {
        tokens == other.tokens && used == other.used && purchased == other.purchased && transferred == other.transferred
            && sameMillisecond(setsLastPurchase, other.setsLastPurchase) && sameMillisecond(setsTransferDate, other.setsTransferDate)
    }

    var summary: String {
        var parts = ["tokens \(signed(tokens))"]
        if used != 0 { parts.append("used \(signed(used))") }
        if purchased != 0 { parts.append("purchased \(signed(purchased))") }
        if transferred != 0 { parts.append("transferred \(signed(transferred))") }
        if let date = setsLastPurchase { parts.append("last_purchase \(Timestamps.timestamp(date))") }
        if let date = setsTransferDate { parts.append("transfer_date \(Timestamps.timestamp(date))") }
        return parts.joined(separator: ", ")
    }

    private func signed(_ value: Int) -> String { value >= 0 ? "+\(value)" : "\(value)" }
}

extension Balance {
    /// The projection fields compared by `verify`, with their stored names, rendered as text.
    struct ProjectionField: Sendable {
        let name: String
        let value: @Sendable (Balance) -> String
    }

    static let projectionFields: [ProjectionField] = [
        ProjectionField(name: "tokens") { String($0.tokens) },
        ProjectionField(name: "tokens_used") { String($0.tokensUsed) },
        ProjectionField(name: "tokens_purchased") { String($0.tokensPurchased) },
        ProjectionField(name: "tokens_transferred") { String($0.tokensTransferred) },
        ProjectionField(name: "last_purchase") { $0.lastPurchase.map(Timestamps.timestamp) ?? "null" },
        ProjectionField(name: "transfer_date") { $0.transferDate.map(Timestamps.timestamp) ?? "null" },
    ]
}
