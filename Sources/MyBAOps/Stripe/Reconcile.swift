import Foundation
import Logging

/// One difference between the ledger's projection and a customer's Stripe metadata.
public struct MetadataDrift: Codable, Equatable, Sendable {
    public var userId: String
    public var stripeCustomerId: String?
    public var key: String
    public var local: String?
    public var stripe: String?
    /// True when an outbox row is pending for the customer: the drift will heal by itself.
    public var pendingInOutbox: Bool
}

/// The outcome of comparing every Stripe customer with the ledger.
public struct ReconcileReport: Codable, Equatable, Sendable {
    public var stripeCustomers: Int
    public var localCustomers: Int
    public var drifts: [MetadataDrift]
    /// Local customers with a balance but no Stripe customer carrying their user id.
    public var missingInStripe: [String]
    /// Stripe customers carrying a user id unknown locally.
    public var missingLocally: [String]
    public var pendingOutbox: Int
    /// The outbox rows of the customers above that differ: work the mirror will do by itself,
    /// with when it next tries and why the last try failed.
    public var waiting: [PendingPush] = []
    public var isClean: Bool { drifts.isEmpty && missingInStripe.isEmpty && missingLocally.isEmpty }
    /// Every difference is a customer whose changes wait in the outbox: it heals by itself
    /// (after `waiting`'s next attempts) unless those keep failing.
    public var onlyWaiting: Bool {
        let waitingUsers = Set(waiting.map(\.userId))
        return !isClean && missingLocally.isEmpty && drifts.allSatisfy { waitingUsers.contains($0.userId) }
            && missingInStripe.allSatisfy(waitingUsers.contains)
    }
}

/// A customer's row in the Stripe outbox, as reconcile reports it.
public struct PendingPush: Codable, Equatable, Sendable {
    public var userId: String
    public var pendingSince: Date
    public var attempts: Int
    public var nextAttemptAt: Date
    public var lastError: String?
}

/// A Stripe customer as reconcile and import read it.
public struct StripeCustomerRecord: Sendable {
    public var id: String
    public var email: String?
    public var metadata: [String: String]

    public init(id: String, email: String?, metadata: [String: String]) {
        self.id = id
        self.email = email
        self.metadata = metadata
    }

    public init(_ customer: StripeCustomer) {
        self.init(id: customer.id, email: customer.email, metadata: customer.metadata?.values ?? [:])
    }

    /// The MyBA user id: `user_id`, or the legacy `clerk_user_id`.
    public var userId: String? { metadata["user_id"] ?? metadata["clerk_user_id"] }
}

extension StripeClient {
    /// Every customer through the paginated list API (never search: it lags writes).
    public func allCustomers(progress: (Int) -> Void = { _ in }) async throws -> [StripeCustomerRecord] {
        var records: [StripeCustomerRecord] = []
        var cursor: String?
        repeat {
            let page = try await listCustomers(limit: 100, startingAfter: cursor)
            records += page.data.map(StripeCustomerRecord.init)
            progress(records.count)
            cursor = page.hasMore ? page.data.last?.id : nil
        } while cursor != nil
        return records
    }
}

extension StripeCustomers {
    /// Compares `customers` (from Stripe) with the local projection, key by key.
    public func reconcile(against customers: [StripeCustomerRecord], onlyUser: String? = nil) async throws -> ReconcileReport {
        try await database.read { tx in
            var balances: [String: Balance] = [:]
            for balance in try tx.ledger.allBalances() where onlyUser == nil || balance.userId == onlyUser { balances[balance.userId] = balance }
            let pending = Set(try tx.outbox.userIds())
            var drifts: [MetadataDrift] = []
            var seen = Set<String>()
            var missingLocally: [String] = []
            for customer in customers {
                guard let userId = customer.userId, onlyUser == nil || userId == onlyUser else { continue }
                guard let balance = balances[userId] else {
                    missingLocally.append(userId)
                    continue
                }
                seen.insert(userId)
                let expected = StripeMetadataKeys.metadata(for: balance)
                for key in StripeMetadataKeys.all {
                    let local = expected[key] ?? nil
                    let remote = customer.metadata[key]
                    if !Self.sameValue(key: key, local, remote) {
                        drifts.append(
                            MetadataDrift(
                                userId: userId,
                                stripeCustomerId: customer.id,
                                key: key,
                                local: local,
                                stripe: remote,
                                pendingInOutbox: pending.contains(userId)
                            )
                        )
                    }
                }
            }
            let missingInStripe = balances.keys.filter { !seen.contains($0) }.sorted()
            let differing = Set(drifts.map(\.userId)).union(missingInStripe)
            let waiting = try tx.outbox.rows().filter { differing.contains($0.userId) }
            return ReconcileReport(
                stripeCustomers: customers.count,
                localCustomers: balances.count,
                drifts: drifts,
                missingInStripe: missingInStripe,
                missingLocally: missingLocally.sorted(),
                pendingOutbox: pending.count,
                waiting: waiting
            )
        }
    }

    /// Dates compare by instant (the legacy store wrote several formats); numbers as numbers; a
    /// counter Stripe lacks counts as zero.
    static func sameValue(key: String, _ local: String?, _ remote: String?) -> Bool {
        switch (local, remote) {
        case (nil, nil): return true
        case let (l?, r?):
            if key == "last_purchase" || key == "transfer_date" {
                guard let a = Timestamps.parse(l), let b = Timestamps.parse(r) else { return l == r }
                // A bare day (as some legacy writes were) matches any time of that day.
                if l.count == 10 || r.count == 10 { return Timestamps.day(a) == Timestamps.day(b) }
                return abs(a.timeIntervalSince(b)) < 1
            }
            return Int(l) != nil && Int(l) == Int(r) || l == r
        case (nil, let r?): return r.isEmpty
        // The legacy store left zero counters out.
        case (let l?, nil): return l == "0" && key != "tokens"
        default: return false
        }
    }
}

extension StripeOutbox {
    /// Marks customers for a fresh push of their metadata (`reconcile --fix push`).
    public func enqueue(userIds: [String]) async throws {
        try await database.write { tx in
            for userId in userIds { try tx.outbox.enqueue(userId: userId, now: Date()) }
        }
    }
}

/// What `import from-stripe` did for one Stripe customer.
public struct ImportOutcome: Codable, Equatable, Sendable {
    public var userId: String
    public var stripeCustomerId: String
    /// `imported`, `already imported`, `skipped: …`.
    public var result: String
    public var tokens: Int?
}

extension StripeCustomers {
    /// Takes over a legacy balance kept in Stripe metadata: creates the customer (with its Stripe
    /// id and email) and an `import` entry (key `import:<userId>`) so the projection equals the
    /// metadata. Running the import twice changes nothing.
    ///
    /// A customer who used MyBA before the import (welcome grant, transfer, spending: nothing
    /// bought or adjusted) is merged: the legacy balance is added, and the welcome grant taken
    /// back (key `import_merge:<userId>`), since the old service gave it already. The legacy
    /// Stripe customer becomes the linked one. Any other history is skipped, to be merged by
    /// hand, as is the Stripe customer the mirror made itself (its metadata is this ledger's).
    public func importLegacy(_ customer: StripeCustomerRecord, dryRun: Bool, context: OperatorContext) async throws -> ImportOutcome {
        guard let userId = customer.userId else {
            return ImportOutcome(userId: "-", stripeCustomerId: customer.id, result: "skipped: no user_id in metadata", tokens: nil)
        }
        func number(_ key: String) -> Int { Int(customer.metadata[key] ?? "") ?? 0 }
        let tokens = number("tokens")
        guard tokens >= 0 else {
            return ImportOutcome(userId: userId, stripeCustomerId: customer.id, result: "skipped: negative tokens in metadata", tokens: tokens)
        }
        let opening = OpeningBalance(
            tokensUsed: max(number("tokens_used"), 0),
            tokensPurchased: max(number("tokens_purchased"), 0),
            tokensTransferred: max(number("tokens_transferred"), 0),
            lastPurchase: customer.metadata["last_purchase"].flatMap(Timestamps.parse),
            transferDate: customer.metadata["transfer_date"].flatMap(Timestamps.parse)
        )
        let posting = LedgerPosting(
            userId: userId,
            kind: .import,
            delta: tokens,
            idempotencyKey: "import:\(userId)",
            reference: customer.id,
            actor: "operator:\(context.operatorName)",
            reason: context.reason,
            opening: opening
        )
        return try await database.write { tx in
            func outcome(_ result: String) -> ImportOutcome {
                ImportOutcome(userId: userId, stripeCustomerId: customer.id, result: result, tokens: tokens)
            }
            // Several servers: a sign-in opening this account now would change what "empty" means.
            try tx.ledger.lockAccount(userId: userId)
            if try tx.ledger.entry(idempotencyKey: posting.idempotencyKey) != nil { return outcome("already imported") }
            let kinds = try tx.ledger.kinds(userId: userId)
            let now = Date()
            if kinds.isEmpty {
                if dryRun { return outcome("would import") }
                try tx.ledger.createCustomerIfMissing(userId: userId, email: customer.email, now: now)
                try tx.ledger.linkStripeCustomerIfFree(customer.id, userId: userId)
                try Ledger.validate(posting)
                let result = try Ledger.post(posting, now: now, in: tx)
                // The metadata already says this: no push needed.
                try tx.outbox.remove(userId: userId)
                try tx.stripeCustomers.removeLegacyHold(userId: userId)
                try AuditLog.insert(
                    context: context,
                    userId: userId,
                    entryIds: result.entry.id.map { [$0] } ?? [],
                    idempotencyKey: posting.idempotencyKey,
                    outcome: "imported \(tokens) tokens from \(customer.id)",
                    in: tx
                )
                return outcome("imported")
            }
            let linked = try tx.ledger.stripeCustomerId(userId: userId)
            let held = try tx.stripeCustomers.legacyHold(userId: userId)
            if linked == customer.id && held != customer.id {
                return outcome("skipped: the mirror's own Stripe customer for \(userId) (its metadata is this ledger's balance)")
            }
            let mergeable: Set<String> = ["welcome", "transfer", "consume", "release"]
            let others = Set(kinds).subtracting(mergeable)
            guard others.isEmpty else {
                return outcome(
                    "skipped: already has \(kinds.count) ledger entries, some not mergeable (\(others.sorted().joined(separator: ", "))); merge by hand"
                )
            }
            let welcome = try tx.ledger.delta(idempotencyKey: "welcome:\(userId)") ?? 0
            let before = try tx.ledger.balance(userId: userId)?.tokens ?? 0
            let takeBack = min(welcome, before + tokens)
            if dryRun { return outcome("would merge: +\(tokens) legacy, −\(takeBack) welcome grant given twice") }
            try Ledger.validate(posting)
            var entryIds = try Ledger.post(posting, now: now, in: tx).entry.id.map { [$0] } ?? []
            if takeBack > 0 {
                let merge = LedgerPosting(
                    userId: userId,
                    kind: .adjust,
                    delta: -takeBack,
                    idempotencyKey: "import_merge:\(userId)",
                    reference: customer.id,
                    actor: "operator:\(context.operatorName)",
                    reason: "welcome grant superseded by the legacy balance of \(customer.id) (the old service gave it already)"
                )
                try Ledger.validate(merge)
                entryIds += try Ledger.post(merge, now: now, in: tx).entry.id.map { [$0] } ?? []
            }
            // The old service's customer, where the history is, becomes the linked one; one the
            // mirror made meanwhile is left behind as unlinked.
            if let linked, linked != customer.id, try tx.ledger.userId(stripeCustomerId: customer.id) == nil {
                try StripeCustomers.unlink(linked, in: tx)
            }
            try tx.ledger.linkStripeCustomerIfFree(customer.id, userId: userId)
            try tx.stripeCustomers.removeLegacyHold(userId: userId)
            // The merged balance differs from both stores: the mirror writes it.
            try tx.outbox.enqueue(userId: userId, now: now)
            // At once: the outbox row may be waiting out the hold.
            try tx.outbox.makeDue(userId: userId, now: now)
            try AuditLog.insert(
                context: context,
                userId: userId,
                entryIds: entryIds,
                idempotencyKey: posting.idempotencyKey,
                outcome: "merged \(tokens) legacy tokens from \(customer.id); took back the welcome grant (\(takeBack))",
                in: tx
            )
            return outcome("merged")
        }
    }
}

extension StripeMirror {
    /// Pushes one customer's metadata now (`reconcile --fix push`), whether or not it is pending.
    /// An operator's push: a fresh idempotency key, and done only when Stripe's answer shows
    /// the ledger's values.
    public func pushNow(userId: String) async throws {
        try await database.outbox.enqueue(userIds: [userId])
        try await push(userId: userId, forced: true)
    }

    /// One customer `reconcile --fix push` writes to Stripe.
    public struct PushStep: Codable, Equatable, Sendable {
        public var userId: String
        /// Missing in Stripe (an account opened while Stripe was out): the push creates it.
        public var creating: Bool
    }

    /// The customers `reconcile --fix push` writes: those whose metadata drifts, and those
    /// missing in Stripe, which the push creates through the outbox's own code.
    public static func pushPlan(_ report: ReconcileReport) -> [PushStep] {
        let drifting = Set(report.drifts.map(\.userId))
        return drifting.union(report.missingInStripe).sorted().map { PushStep(userId: $0, creating: !drifting.contains($0)) }
    }

    /// Pushes each step now (a customer linked to one deleted at Stripe is unlinked by the first
    /// try and created anew by the second), then writes one audit row.
    public func applyPush(_ steps: [PushStep], by context: OperatorContext, onlyUser: String?) async throws {
        for step in steps {
            do {
                try await pushNow(userId: step.userId)
            } catch let error as StripeError where error.code == "resource_missing" {
                try await pushNow(userId: step.userId)
            }
        }
        try await database.audit.record(context, userId: onlyUser, outcome: "reconcile --fix push: \(steps.count) customer(s)")
    }
}

/// One customer's step of `reconcile --fix pull`: Stripe's `tokens` into the ledger.
public struct PullStep: Codable, Equatable, Sendable {
    public var userId: String
    public var stripeCustomerId: String?
    /// The ledger's tokens when the plan was made, and Stripe's.
    public var before: Int
    public var after: Int
    /// The customer's newest ledger entry when the plan was made: the step applies only to that
    /// state, and its key is made of it, so a retry of the same step changes nothing.
    public var lastEntryId: Int64
    public var key: String { "reconcile-pull:\(userId):\(lastEntryId):\(after)" }
}

/// What `reconcile --fix pull` would do.
public struct PullPlan: Codable, Equatable, Sendable {
    public var steps: [PullStep]
    /// Customers left alone, with why (an outbox not drained, a value that is not a count).
    public var skipped: [String]
}

/// How one pull step ended.
public enum PullStepOutcome: Equatable, Sendable {
    case applied(entryId: Int64?, tokens: Int)
    /// The same step had been applied before (a retry): nothing changed.
    case alreadyApplied
    /// The customer's ledger moved since the plan (or its outbox filled): not applied.
    case changedSincePlan(String)
}

extension StripeCustomers {
    /// Plans pulling Stripe's `tokens` for every token drift of `report`. A customer whose Stripe
    /// outbox is not drained is skipped: its Stripe value is stale (after an outage it lacks
    /// everything since), and pulling it would undo real purchases and spends.
    public func planPull(_ report: ReconcileReport) async throws -> PullPlan {
        try await database.read { tx in
            var plan = PullPlan(steps: [], skipped: [])
            for drift in report.drifts where drift.key == "tokens" {
                guard let remote = drift.stripe.flatMap(Int.init), remote >= 0 else {
                    plan.skipped.append("\(drift.userId): Stripe tokens \(drift.stripe ?? "missing") is not a count")
                    continue
                }
                let pending = try tx.outbox.contains(userId: drift.userId)
                if drift.pendingInOutbox || pending {
                    plan.skipped.append(
                        "\(drift.userId): balance changes still wait in the Stripe outbox; Stripe's value is stale (let the mirror drain, or --fix push)"
                    )
                    continue
                }
                guard let balance = try tx.ledger.balance(userId: drift.userId) else {
                    plan.skipped.append("\(drift.userId): no local customer")
                    continue
                }
                let last = try tx.ledger.lastEntryId(userId: drift.userId)
                plan.steps.append(
                    PullStep(userId: drift.userId, stripeCustomerId: drift.stripeCustomerId, before: balance.tokens, after: remote, lastEntryId: last)
                )
            }
            for drift in report.drifts where drift.key != "tokens" {
                plan.skipped.append("\(drift.userId) \(drift.key): counters and dates follow the ledger; use --fix push")
            }
            return plan
        }
    }

    /// Applies one planned step, with its audit row, in one transaction: the difference is taken
    /// there, against the ledger as it is, and only if it is still in the state the plan saw.
    public func applyPull(_ step: PullStep, by context: OperatorContext) async throws -> PullStepOutcome {
        try await database.write { tx in
            if try tx.ledger.entry(idempotencyKey: step.key) != nil { return .alreadyApplied }
            // The balance row first: no spend on another server can land between the checks and the post.
            try tx.ledger.lockAccount(userId: step.userId)
            let last = try tx.ledger.lastEntryId(userId: step.userId)
            guard last == step.lastEntryId else { return .changedSincePlan("new ledger entries since the plan") }
            if try tx.outbox.contains(userId: step.userId) {
                return .changedSincePlan("the Stripe outbox is not drained")
            }
            guard let current = try tx.ledger.balance(userId: step.userId) else { return .changedSincePlan("no local customer") }
            let delta = step.after - current.tokens
            guard delta != 0 else { return .applied(entryId: nil, tokens: current.tokens) }
            let posting = LedgerPosting(
                userId: step.userId,
                kind: .adjust,
                delta: delta,
                idempotencyKey: step.key,
                reference: step.stripeCustomerId,
                actor: "operator:\(context.operatorName)",
                reason: "reconcile --fix pull: \(context.reason)"
            )
            try Ledger.validate(posting)
            let result = try Ledger.post(posting, now: Date(), in: tx)
            try AuditLog.insert(
                context: context,
                userId: step.userId,
                entryIds: result.entry.id.map { [$0] } ?? [],
                idempotencyKey: step.key,
                outcome: "pulled tokens \(current.tokens) → \(step.after)",
                in: tx
            )
            return .applied(entryId: result.entry.id, tokens: result.balance.tokens)
        }
    }
}
