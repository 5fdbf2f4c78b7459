import Foundation

/// Who runs a console mutation and how it was typed (secrets already masked).
public struct OperatorContext: Sendable {
    public var operatorName: String
    public var commandLine: String
    public var reason: String

    public init(operatorName: String, commandLine: String, reason: String) {
        self.operatorName = operatorName
        self.commandLine = commandLine
        self.reason = reason
    }
}

/// Ledger keys an operator chooses (`tokens adjust --key K`) live in a namespace of their own,
/// `operator:K`: a key typed by hand can never take one that a purchase, a refund, a welcome
/// grant or a generation needs (`purchase:cs_…` typed as `--key` would otherwise make that
/// purchase's webhook fail forever).
public enum OperatorKey {
    public static let prefix = "operator:"

    /// The ledger key of an operator's key `key` (1–200 characters, no control characters).
    public static func ledgerKey(_ key: String) throws -> String {
        guard (1...200).contains(key.unicodeScalars.count), !key.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw LedgerError.invalidPosting("an operator key is 1–200 characters without control characters")
        }
        return prefix + key
    }
}

/// What a mutation will do, computed before doing it: shown to the operator for confirmation.
public struct MutationPlan: Equatable, Sendable {
    public var userId: String
    public var before: Balance
    public var after: Balance
    /// The entries it will write, as `kind delta key`.
    public var entries: [String]
    /// Stripe calls it will make.
    public var stripeCalls: [String]
}

/// One row of the operator audit log.
public struct AuditRecord: Codable, Equatable, Sendable {
    public var id: Int64
    public var at: Date
    public var operatorName: String
    public var command: String
    public var reason: String?
    public var userId: String?
    public var entryIds: [Int64]
    public var idempotencyKey: String?
    public var outcome: String
}

extension Ledger {
    /// The plan of posting `posting`: the balance before and after, without writing anything.
    public func plan(_ posting: LedgerPosting, stripeCalls: [String] = []) async throws -> MutationPlan {
        try Self.validate(posting)
        return try await database.read { tx in
            guard let current = try tx.ledger.balance(userId: posting.userId) else {
                throw LedgerError.unknownCustomer(userId: posting.userId)
            }
            let effect = posting.kind.effect(delta: posting.delta, at: Date(), opening: posting.opening)
            let after = current.applying(effect, at: Date())
            if after.tokens < 0 {
                throw LedgerError.wouldGoNegative(userId: posting.userId, field: "tokens", current: current.tokens, change: posting.delta)
            }
            let sign = posting.delta > 0 ? "+" : ""
            return MutationPlan(
                userId: posting.userId,
                before: current,
                after: after,
                entries: ["\(posting.kind.rawValue) \(sign)\(posting.delta) key \(posting.idempotencyKey)"],
                stripeCalls: stripeCalls
            )
        }
    }

    /// Posts an operator's entry and its audit row in one transaction.
    public func postAsOperator(_ posting: LedgerPosting, by context: OperatorContext) async throws -> PostingResult {
        try Self.validate(posting)
        return try await database.write { tx in
            let result = try Self.post(posting, now: Date(), in: tx)
            try AuditLog.insert(
                context: context,
                userId: posting.userId,
                entryIds: result.entry.id.map { [$0] } ?? [],
                idempotencyKey: posting.idempotencyKey,
                outcome: result.replayed ? "replayed: entry existed, nothing changed" : "posted \(posting.kind.rawValue) \(posting.delta)",
                in: tx
            )
            return result
        }
    }
}

extension Payments {
    /// Applies a refund made through Stripe from the console, with the processing the
    /// `charge.refunded` webhook uses (same key), and its audit row, in one transaction.
    public func applyOperatorRefund(paymentId: String, snapshot: RefundSnapshot, by context: OperatorContext) async throws -> RefundOutcome {
        let amountRefunded = snapshot.amountRefunded
        return try await database.write { tx in
            let outcome = try Self.applyRefund(
                paymentId: paymentId,
                snapshot: snapshot,
                actor: "operator:\(context.operatorName)",
                requestId: nil,
                now: Date(),
                in: tx
            )
            let payment = try tx.payments.payment(id: paymentId)
            try AuditLog.insert(
                context: context,
                userId: payment?.userId,
                entryIds: outcome.entry?.id.map { [$0] } ?? [],
                idempotencyKey: outcome.entry?.idempotencyKey,
                outcome: "refunded to \(amountRefunded) cumulative; took \(outcome.taken) tokens, shortfall \(outcome.shortfall)",
                in: tx
            )
            return outcome
        }
    }
}

extension AuditLog {
    /// Records a console action that changed no ledger entry (or failed).
    public func record(_ context: OperatorContext, userId: String?, outcome: String) async throws {
        try await database.write { tx in
            try AuditLog.insert(context: context, userId: userId, entryIds: [], idempotencyKey: nil, outcome: outcome, in: tx)
        }
    }

    static func insert(
        context: OperatorContext,
        userId: String?,
        entryIds: [Int64],
        idempotencyKey: String?,
        outcome: String,
        in tx: StorageTransaction
    ) throws {
        try tx.audit.insert(context: context, userId: userId, entryIds: entryIds, idempotencyKey: idempotencyKey, outcome: outcome)
    }

    public func records(limit: Int, userId: String? = nil, operatorName: String? = nil) async throws -> [AuditRecord] {
        try await database.read { tx in try tx.audit.records(limit: limit, userId: userId, operatorName: operatorName) }
    }
}
