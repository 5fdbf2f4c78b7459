import Foundation

/// A line of `customer list` / `customer find`.
public struct CustomerListing: Codable, Equatable, Sendable {
    public var userId: String
    public var email: String?
    public var stripeCustomerId: String?
    public var tokens: Int
    public var createdAt: Date
    public var deleted: Bool
}

/// `stats`: the state of the whole system at a glance.
public struct SystemStats: Codable, Equatable, Sendable {
    public var customers: Int
    public var deletedCustomers: Int
    public var anonymousSessions: Int
    public var staleAnonymousSessions: Int
    public var tokensOutstanding: Int
    public var anonymousTokensOutstanding: Int
    public var webhookEvents: [String: Int]
    public var outboxDepth: Int
    public var ledgerEntries: Int
}

/// What `sessions reap` removed (or would remove).
public struct ReapResult: Codable, Equatable, Sendable {
    public var removed: Int
    public var batches: Int
    public var cutoff: Date
    public var dryRun: Bool
}

/// A reap stopped because the database stayed locked; `result` is what it removed before.
public struct ReapInterrupted: Error, CustomStringConvertible, Sendable {
    public var result: ReapResult
    public var reason: String
    public var description: String {
        "stopped after removing \(result.removed) session(s) in \(result.batches) batch(es): the database stayed locked (\(reason)); run the reap again to continue"
    }
}

/// An email address that several customers share: which one is meant must be said by user id.
public struct AmbiguousCustomer: Error, CustomStringConvertible, Sendable {
    public var reference: String
    public var candidates: [String]
    public var description: String {
        let shown = candidates.prefix(20).joined(separator: ", ") + (candidates.count > 20 ? ", …" : "")
        return
            "\(reference) matches \(candidates.count > 20 ? "more than 20" : String(candidates.count)) customers (\(shown)); name one by its user id"
    }
}

extension ConsoleQueries {
    /// Resolves `user_…`, an email address or a `cus_…` id to a user id. An email shared by
    /// several customers names none of them: `AmbiguousCustomer` lists the candidates, since an
    /// operator's change must reach the customer meant, not the first one found.
    public func resolveUserId(_ reference: String) async throws -> String? {
        try await database.read { tx in
            if let exact = try tx.queries.userId(idOrStripeCustomerId: reference) { return exact }
            let byEmail = try tx.queries.userIds(email: reference, limit: 21)
            guard byEmail.count <= 1 else { throw AmbiguousCustomer(reference: reference, candidates: byEmail) }
            return byEmail.first
        }
    }

    /// User ids starting with `prefix`, synchronously: readline's completion callback cannot await.
    public func userIdsSync(prefix: String, limit: Int = 50) throws -> [String] {
        try database.readSync { tx in try tx.queries.userIds(prefix: prefix, limit: limit) }
    }

    public func listCustomers(limit: Int, sortByTokens: Bool, matching text: String? = nil) async throws -> [CustomerListing] {
        try await database.read { tx in try tx.queries.customerListings(limit: limit, sortByTokens: sortByTokens, matching: text) }
    }
}

extension AnonymousSessions {
    /// Sessions transferred into `userId`'s account.
    public func transferred(to userId: String) async throws -> [AnonymousSession] {
        try await database.read { tx in try tx.sessions.transferred(to: userId) }
    }
}

extension WebhookInbox {
    /// Webhook events of `userId`, newest first: those that produced ledger entries for them, and
    /// every stored event that names them — their user id, Stripe customer id or email as a JSON
    /// string in the body (a failed or ignored event made no entry, and is what an operator
    /// looks for).
    public func events(forUser userId: String, limit: Int) async throws -> [WebhookEvent] {
        try await database.read { tx in
            try tx.queries.webhookKeys(namingUser: userId, limit: limit).compactMap { key in
                try tx.inbox.event(source: key.source, eventId: key.eventId)
            }
        }
    }
}

extension AnonymousSessions {
    /// Anonymous sessions, newest activity first; `staleAfter` keeps only untransferred sessions
    /// last seen longer ago than that.
    public func list(staleAfter: TimeInterval?, limit: Int) async throws -> [AnonymousSession] {
        try await database.read { tx in
            try tx.sessions.list(lastSeenBefore: staleAfter.map { Date().addingTimeInterval(-$0) }, limit: limit)
        }
    }

    /// Removes untransferred anonymous sessions last seen before `cutoff`, `batch` at a time,
    /// each batch its own short transaction. After each batch the reap pauses at least as long
    /// as the batch took, waiting for the lock included (and at least `pause`), so a running
    /// server gets the lock at least half the time: SQLite's busy handler sleeps instead of queueing, and a reap
    /// that takes the lock back at once starves the server's writes (and the other way round).
    /// A batch refused with "database is locked" is retried with back-off; when it keeps being
    /// refused, ``ReapInterrupted`` reports what was already removed. Two overlapping reaps never
    /// fail or count a session twice: each batch counts what it deleted. Sessions with a
    /// generation still reserved are spared: its token must be given back to the session first.
    public func reap(
        lastSeenBefore cutoff: Date,
        batch: Int,
        dryRun: Bool,
        pause: Duration = .zero,
        busyRetries: Int = 8
    ) async throws -> ReapResult {
        if dryRun {
            let count = try await database.read { tx in try tx.sessions.reapableCount(lastSeenBefore: cutoff) }
            return ReapResult(removed: count, batches: 0, cutoff: cutoff, dryRun: true)
        }
        var removed = 0
        var batches = 0
        var refusals = 0
        while true {
            let started = ContinuousClock.now
            let deleted: Int
            do {
                deleted = try await database.write { tx in try tx.sessions.reap(lastSeenBefore: cutoff, batch: batch) }
                refusals = 0
            } catch  where StorageError.classify(error) == .busy {
                refusals += 1
                guard refusals <= busyRetries else {
                    throw ReapInterrupted(result: ReapResult(removed: removed, batches: batches, cutoff: cutoff, dryRun: false), reason: "\(error)")
                }
                try await Task.sleep(for: .milliseconds(50 * (1 << min(refusals, 6))))
                continue
            }
            if deleted == 0 { break }
            removed += deleted
            batches += 1
            try await Task.sleep(for: max(pause, ContinuousClock.now - started))
        }
        return ReapResult(removed: removed, batches: batches, cutoff: cutoff, dryRun: false)
    }
}

extension ConsoleQueries {
    public func stats(staleAfter: TimeInterval) async throws -> SystemStats {
        try await database.read { tx in try tx.queries.stats(staleBefore: Date().addingTimeInterval(-staleAfter)) }
    }
}

/// Durations as operators type them: `90s`, `30m`, `24h`, `7d`.
public enum OperatorDuration {
    public static func parse(_ text: String) -> TimeInterval? {
        guard let unit = text.last, let value = Double(text.dropLast()), value >= 0 else { return nil }
        switch unit {
        case "s": return value
        case "m": return value * 60
        case "h": return value * 3600
        case "d": return value * 86400
        default: return nil
        }
    }
}
