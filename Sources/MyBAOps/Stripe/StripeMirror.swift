import Foundation
import Logging

/// The legacy Stripe-metadata view of a balance: the keys the old Node service read and wrote.
public enum StripeMetadataKeys {
    public static let all = ["tokens", "tokens_used", "tokens_purchased", "tokens_transferred", "last_purchase", "transfer_date"]

    /// The metadata for `balance`; `nil` values unset their keys.
    public static func metadata(for balance: Balance) -> [String: String?] {
        [
            "user_id": balance.userId,
            "tokens": String(balance.tokens),
            "tokens_used": String(balance.tokensUsed),
            "tokens_purchased": String(balance.tokensPurchased),
            "tokens_transferred": String(balance.tokensTransferred),
            "last_purchase": balance.lastPurchase.map(Timestamps.timestamp),
            "transfer_date": balance.transferDate.map(Timestamps.timestamp),
        ]
    }
}

/// The outbox's state, for `/api/health`.
public struct OutboxStatus: Equatable, Sendable {
    public var depth: Int
    public var oldestPendingSeconds: Int?
}

extension StripeOutbox {
    public func status(now: Date = Date()) async throws -> OutboxStatus {
        try await database.read { tx in
            let depth = try tx.outbox.count()
            let oldest = try tx.outbox.oldestPendingSinceText().flatMap(SQLTimestamp.date)
            return OutboxStatus(depth: depth, oldestPendingSeconds: oldest.map { max(0, Int(now.timeIntervalSince($0))) })
        }
    }
}

/// Pushes balances to Stripe customer metadata from the outbox. No API request waits on it: a
/// balance change only writes an outbox row, and this worker catches up — several changes of a
/// customer become one update, and a Stripe outage only makes the outbox grow until it drains.
public struct StripeMirror: Sendable {
    let database: AppDatabase
    let stripe: StripeClient

    public init(database: AppDatabase, stripe: StripeClient) {
        self.database = database
        self.stripe = stripe
    }

    /// Delay after failed attempt number `attempts`: 2 s, 4 s … capped at 5 minutes.
    static func backoff(attempts: Int) -> TimeInterval { min(2 * pow(2, Double(max(attempts - 1, 0))), 300) }

    /// Pushes every due customer once (at most `limit`); returns (pushed, failed). On
    /// PostgreSQL each row is claimed for `leaseSeconds` just before its push, one at a time, so
    /// several servers never push one customer at once and a slow Stripe cannot outlast the
    /// claims of a whole batch.
    @discardableResult
    public func pushDue(limit: Int = 100, leaseSeconds: Int = 120, logger: Logger) async throws -> (pushed: Int, failed: Int) {
        var pushed = 0
        var failed = 0
        let oneAtATime = database.postgres != nil
        var claimed = 0
        while claimed < limit {
            let now = Date()
            let due = try await database.write { [claimed] tx in
                try tx.outbox.claimDue(now: now, limit: oneAtATime ? 1 : limit - claimed, leaseSeconds: leaseSeconds)
            }
            guard !due.isEmpty else { break }
            claimed += due.count
            try await push(due, pushed: &pushed, failed: &failed, logger: logger)
            if !oneAtATime { break }
        }
        return (pushed, failed)
    }

    private func push(_ due: [String], pushed: inout Int, failed: inout Int, logger: Logger) async throws {
        for userId in due {
            do {
                try await push(userId: userId)
                pushed += 1
            } catch let held as LegacyBalanceHeld {
                // Not a failure: nothing is pushed until the import, checked again hourly.
                try await database.write { tx in
                    try tx.outbox.postpone(userId: userId, until: Date().addingTimeInterval(3600), note: held.description)
                }
                logger.notice(
                    "Stripe mirror holds off: legacy balance not imported",
                    metadata: ["user.id": .string(userId), "stripe.customer.id": .string(held.stripeCustomerId)]
                )
            } catch {
                failed += 1
                let message = "\(error)"
                try await database.write { tx in
                    let attempts = (try tx.outbox.attempts(userId: userId) ?? 0) + 1
                    try tx.outbox.recordFailure(
                        userId: userId,
                        attempts: attempts,
                        error: message,
                        nextAttemptAt: Date().addingTimeInterval(Self.backoff(attempts: attempts))
                    )
                }
                logger.warning("Stripe mirror push failed", metadata: ["user.id": .string(userId), "error.message": .string(message)])
            }
        }
    }

    /// Creates the customer's Stripe customer if needed, then writes its metadata. The outbox
    /// row goes only if no change arrived while pushing.
    ///
    /// Done only when Stripe's answer shows the values sent: an idempotency key that Stripe had
    /// seen before replays its first answer and changes nothing, so a replayed answer with other
    /// values is a failure (the next attempt's key differs, as it carries the attempt count).
    /// `forced` (an operator's push) always uses a fresh key.
    func push(userId: String, forced: Bool = false) async throws {
        let snapshot = try await database.read { tx -> (Int, Int, Customer, Balance)? in
            guard let row = try tx.outbox.changesAndAttempts(userId: userId),
                let customer = try tx.ledger.customer(userId: userId),
                let balance = try tx.ledger.balance(userId: userId)
            else { return nil }
            return (row.changes, row.attempts, customer, balance)
        }
        guard let (changes, attempts, _, balance) = snapshot else { return }
        let metadata = StripeMetadataKeys.metadata(for: balance)
        let stripeId = try await database.stripeCustomers.ensure(userId: userId, stripe: stripe, pushBalance: false)
        if let held = try await database.stripeCustomers.legacyBalanceHold(userId: userId) {
            throw LegacyBalanceHeld(userId: userId, stripeCustomerId: held)
        }
        let version = SQLTimestamp.milliseconds(balance.updatedAt)
        let key = forced ? "myba-mirror-forced:\(stripeId):\(UUID().uuidString)" : "myba-mirror:\(stripeId):\(version):\(changes):\(attempts)"
        let answer: StripeCustomer
        do {
            answer = try await stripe.updateCustomerMetadata(stripeId, metadata: metadata, idempotencyKey: key)
        } catch let error as StripeError where error.code == "resource_missing" {
            // Deleted at Stripe: forget it; the next attempt creates a new customer.
            try await database.stripeCustomers.unlink(stripeId)
            throw error
        }
        let shown = answer.metadata?.values ?? [:]
        let differing = metadata.filter { shown[$0.key] != $0.value }.map(\.key).sorted()
        guard differing.isEmpty else {
            throw StripeError(
                status: nil,
                type: "api_error",
                code: "stale_answer",
                message: "Stripe's answer does not show the values sent for \(differing.joined(separator: ", ")) (a replayed idempotency key?)",
                param: nil
            )
        }
        try await database.write { tx in
            if try !tx.outbox.remove(userId: userId, ifChanges: changes) {
                // Changed meanwhile: push again soon, without counting it as a failure.
                try tx.outbox.resetAttempts(userId: userId)
            }
        }
    }
}

/// The user's Stripe customer still holds a legacy balance that `import from-stripe` has not
/// taken over: writing the ledger's balance there would erase it.
public struct LegacyBalanceHeld: CodedError {
    public var userId: String
    public var stripeCustomerId: String
    public var code: String { "legacy_balance_not_imported" }
    public var description: String {
        "Stripe customer \(stripeCustomerId) holds \(userId)'s legacy balance, not imported yet: run `myba-admin import from-stripe` before pushing"
    }
}

extension StripeCustomers {
    /// The Stripe customer id of `userId`, creating the Stripe customer on first need. The
    /// create call carries only what never changes (`metadata[user_id]`) under a key fixed per
    /// user and Stripe customer generation, so two processes racing here get one Stripe customer
    /// and a retry can never meet Stripe's `idempotency_error`; the email and the balance keys
    /// follow in updates of their own right after (`pushBalance`), and through the mirror.
    public func ensure(userId: String, stripe: StripeClient, pushBalance: Bool = true) async throws -> String {
        guard let customer = try await database.ledger.customer(userId: userId) else { throw LedgerError.unknownCustomer(userId: userId) }
        if let id = customer.stripeCustomerId { return id }
        let generation = try await database.read { tx in try tx.stripeCustomers.unlinkCount(userId: userId) }
        // A customer the old service made for this user is theirs: use it rather than make a
        // second one. If it still holds the legacy balance (not imported yet), it is held: the
        // mirror leaves its metadata alone until `import from-stripe` takes that balance over.
        if generation == 0, let legacy = try await legacyCustomer(userId: userId, stripe: stripe) {
            let linked = try await database.write { tx -> String in
                let linked = try tx.ledger.linkStripeCustomerIfFree(legacy.id, userId: userId)
                if linked == legacy.id, legacy.metadata["tokens"] != nil,
                    try tx.ledger.entry(idempotencyKey: "import:\(userId)") == nil
                {
                    try tx.stripeCustomers.insertLegacyHoldIfNew(userId: userId, stripeCustomerId: legacy.id, at: Date())
                }
                return linked ?? legacy.id
            }
            if linked == legacy.id {
                // The mirror (`pushBalance` false) is draining this user's row and pushes next:
                // marking the row changed again would only make it push twice.
                if pushBalance { try await database.outbox.enqueue(userIds: [userId]) }
                if pushBalance, try await legacyBalanceHold(userId: userId) == nil {
                    try await StripeMirror(database: database, stripe: stripe).push(userId: userId)
                }
                return linked
            }
        }
        let created = try await stripe.createCustomer(
            email: nil,
            metadata: ["user_id": userId],
            idempotencyKey: generation == 0 ? "myba-customer:\(userId)" : "myba-customer:\(userId):\(generation)"
        )
        let linked = try await link(userId: userId, stripeCustomerId: created.id)
        if let email = customer.email {
            // A key per customer and address: the same parameters whenever it is sent again.
            _ = try await stripe.request(
                StripeCustomer.self,
                "POST",
                "/v1/customers/\(linked)",
                form: [("email", email)],
                idempotencyKey: "myba-customer-email:\(linked):\(email)"
            )
        }
        // The balance keys at once (the mirror's push, which does not come back here); when the
        // mirror itself asked, it pushes next.
        if pushBalance {
            try await database.outbox.enqueue(userIds: [userId])
            try await StripeMirror(database: database, stripe: stripe).push(userId: userId)
        }
        return linked
    }

    /// The oldest Stripe customer naming `userId` that MyBA did not make (made by the old
    /// service), or nil. Stripe accounts without the search API answer 4xx: then there is none
    /// to find, and a new customer is made as before.
    func legacyCustomer(userId: String, stripe: StripeClient) async throws -> StripeCustomerRecord? {
        let found: [StripeCustomer]
        do {
            found = try await stripe.customersNaming(userId: userId)
        } catch let error as StripeError where (error.status ?? 0) >= 400 && (error.status ?? 0) < 500 && error.status != 429 {
            return nil
        }
        let records = found.map { customer in
            (StripeCustomerRecord(customer), customer.created ?? 0)
        }
        let unlinked = try await database.read { tx in try tx.stripeCustomers.unlinkedIds(userId: userId) }
        return records.filter { !unlinked.contains($0.0.id) }.min { $0.1 < $1.1 }?.0
    }

    /// The Stripe customer whose legacy balance awaits `import from-stripe`, if any.
    public func legacyBalanceHold(userId: String) async throws -> String? {
        try await database.read { tx in try tx.stripeCustomers.legacyHold(userId: userId) }
    }

    /// Forgets a Stripe customer that no longer exists at Stripe (deleted in the dashboard or
    /// through the API): the next need creates a new one. Returns whether it was linked.
    @discardableResult
    public func unlink(_ stripeCustomerId: String) async throws -> Bool {
        try await database.write { tx in try StripeCustomers.unlink(stripeCustomerId, in: tx) }
    }

    @discardableResult
    static func unlink(_ stripeCustomerId: String, in tx: StorageTransaction) throws -> Bool {
        guard let userId = try tx.ledger.userId(stripeCustomerId: stripeCustomerId) else { return false }
        // Only that link: another server may have unlinked it and linked a new one meanwhile.
        guard try tx.ledger.clearStripeCustomer(userId: userId, ifLinkedTo: stripeCustomerId) else { return false }
        try tx.stripeCustomers.recordUnlink(userId: userId, stripeCustomerId: stripeCustomerId, at: Date())
        // The balance keys go to the new customer once it exists.
        try tx.outbox.enqueue(userId: userId, now: Date())
        return true
    }
}
