import Foundation
import GRDB

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

extension AppDatabase {
    /// Resolves `user_…`, an email address or a `cus_…` id to a user id. An email shared by
    /// several customers names none of them: `AmbiguousCustomer` lists the candidates, since an
    /// operator's change must reach the customer meant, not the first one found.
    public func resolveUserId(_ reference: String) async throws -> String? {
        try await writer.read { db in
            if let exact = try String.fetchOne(
                db,
                sql: "SELECT user_id FROM customers WHERE user_id = ? OR stripe_customer_id = ? ORDER BY user_id = ? DESC LIMIT 1",
                arguments: [reference, reference, reference]
            ) {
                return exact
            }
            let byEmail = try String.fetchAll(
                db,
                sql: "SELECT user_id FROM customers WHERE lower(email) = lower(?) ORDER BY user_id LIMIT 21",
                arguments: [reference]
            )
            guard byEmail.count <= 1 else { throw AmbiguousCustomer(reference: reference, candidates: byEmail) }
            return byEmail.first
        }
    }

    /// User ids starting with `prefix`, synchronously: readline's completion callback cannot await.
    public func userIdsSync(prefix: String, limit: Int = 50) throws -> [String] {
        try writer.read { db in
            try String.fetchAll(
                db,
                sql: "SELECT user_id FROM customers WHERE user_id >= ? AND user_id < ? ORDER BY user_id LIMIT ?",
                arguments: [prefix, prefix + "\u{10FFFF}", limit]
            )
        }
    }

    public func listCustomers(limit: Int, sortByTokens: Bool, matching text: String? = nil) async throws -> [CustomerListing] {
        try await writer.read { db in
            var sql = """
                SELECT c.user_id, c.email, c.stripe_customer_id, c.created_at, c.deleted_at, COALESCE(b.tokens, 0) AS tokens
                FROM customers c LEFT JOIN balances b ON b.user_id = c.user_id
                """
            var arguments: StatementArguments = []
            if let text {
                sql += " WHERE instr(lower(c.user_id), lower(?)) > 0 OR instr(lower(COALESCE(c.email, '')), lower(?)) > 0 OR c.stripe_customer_id = ?"
                arguments += [text, text, text]
            }
            sql += sortByTokens ? " ORDER BY tokens DESC, c.user_id" : " ORDER BY c.created_at DESC, c.user_id"
            sql += " LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                CustomerListing(
                    userId: row["user_id"],
                    email: row["email"],
                    stripeCustomerId: row["stripe_customer_id"],
                    tokens: row["tokens"],
                    createdAt: row.timestamp("created_at") ?? Date(timeIntervalSince1970: 0),
                    deleted: row["deleted_at"] != nil
                )
            }
        }
    }

    /// Sessions transferred into `userId`'s account.
    public func sessionsTransferred(to userId: String) async throws -> [AnonymousSession] {
        try await writer.read { db in
            try Self.fetchSessions(db, sql: "SELECT * FROM anonymous_sessions WHERE transferred_to = ? ORDER BY transferred_at DESC", [userId])
        }
    }

    /// Webhook events of `userId`, newest first: those that produced ledger entries for them, and
    /// every stored event that names them — their user id, Stripe customer id or email as a JSON
    /// string in the body (a failed or ignored event made no entry, and is what an operator
    /// looks for).
    public func webhookEvents(forUser userId: String, limit: Int) async throws -> [WebhookEvent] {
        try await writer.read { db in
            try Self.webhookKeys(namingUser: userId, limit: limit, in: db).compactMap { key in
                try Self.fetchWebhook(source: key.source, eventId: key.eventId, in: db)
            }
        }
    }

    static func webhookKeys(namingUser userId: String, limit: Int, in db: Database) throws -> [(source: WebhookSource, eventId: String)] {
        var needles = [userId]
        if let customer = try Customer.fetchOne(db, key: userId) {
            if let stripeId = customer.stripeCustomerId { needles.append(stripeId) }
            if let email = customer.email, !email.isEmpty { needles.append(email) }
        }
        let quoted = needles.map { "\"" + $0 + "\"" }
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT source, event_id, received_at FROM webhook_events w
                WHERE EXISTS (
                    SELECT 1 FROM webhook_event_entries we JOIN ledger_entries e ON e.id = we.entry_id
                    WHERE we.source = w.source AND we.event_id = w.event_id AND e.user_id = ?)
                  OR \(quoted.map { _ in "instr(w.body, ?) > 0" }.joined(separator: " OR "))
                ORDER BY received_at DESC LIMIT ?
                """,
            arguments: StatementArguments([userId] + quoted) + [limit]
        )
        return rows.compactMap { row in WebhookSource(rawValue: row["source"]).map { ($0, row["event_id"]) } }
    }

    /// Anonymous sessions, newest activity first; `staleAfter` keeps only untransferred sessions
    /// last seen longer ago than that.
    public func listAnonymousSessions(staleAfter: TimeInterval?, limit: Int) async throws -> [AnonymousSession] {
        try await writer.read { db in
            var sql = "SELECT * FROM anonymous_sessions"
            var arguments: StatementArguments = []
            if let staleAfter {
                sql += " WHERE transferred_to IS NULL AND last_seen_at < ?"
                arguments += [SQLTimestamp.string(Date().addingTimeInterval(-staleAfter))]
            }
            sql += " ORDER BY last_seen_at DESC LIMIT ?"
            arguments += [limit]
            return try Self.fetchSessions(db, sql: sql, arguments)
        }
    }

    /// Removes untransferred anonymous sessions last seen before `cutoff`, `batch` at a time,
    /// each batch its own short transaction. After each batch the reap pauses at least as long
    /// as the batch took, waiting for the lock included (and at least `pause`), so a running
    /// server gets the lock at least half the time: SQLite's busy handler sleeps instead of queueing, and a reap
    /// that takes the lock back at once starves the server's writes (and the other way round).
    /// A batch refused with "database is locked" is retried with back-off; when it keeps being
    /// refused, ``ReapInterrupted`` reports what was already removed. Two overlapping reaps never
    /// fail or count a session twice: each batch counts what it deleted.
    /// The sessions a reap removes (`s`, last seen before `?`): never transferred, and with no
    /// generation still reserved, whose token must be given back to the session first.
    static let reapable = """
        s.transferred_to IS NULL AND s.last_seen_at < ?
          AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.status = 'reserved' AND g.payer_id = s.id AND g.payer_kind = 'session')
        """

    public func reapAnonymousSessions(
        lastSeenBefore cutoff: Date,
        batch: Int,
        dryRun: Bool,
        pause: Duration = .zero,
        busyRetries: Int = 8
    ) async throws -> ReapResult {
        let cutoffText = SQLTimestamp.string(cutoff)
        if dryRun {
            let count = try await writer.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions s WHERE \(Self.reapable)", arguments: [cutoffText]) ?? 0
            }
            return ReapResult(removed: count, batches: 0, cutoff: cutoff, dryRun: true)
        }
        var removed = 0
        var batches = 0
        var refusals = 0
        while true {
            let started = ContinuousClock.now
            let deleted: Int
            do {
                deleted = try await writeInGroupCommit { db -> Int in
                    // Oldest first, along the last_seen_at index: fewer pages touched per batch.
                    try db.execute(
                        sql: """
                            DELETE FROM anonymous_sessions WHERE id IN (
                                SELECT id FROM anonymous_sessions s WHERE \(Self.reapable) ORDER BY last_seen_at LIMIT ?)
                            """,
                        arguments: [cutoffText, batch]
                    )
                    return db.changesCount
                }
                refusals = 0
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
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

    public func stats(staleAfter: TimeInterval) async throws -> SystemStats {
        try await writer.read { db in
            let staleCutoff = SQLTimestamp.string(Date().addingTimeInterval(-staleAfter))
            var webhooks: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM webhook_events GROUP BY status") {
                webhooks[row["status"]] = row["n"]
            }
            return SystemStats(
                customers: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM customers WHERE deleted_at IS NULL") ?? 0,
                deletedCustomers: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM customers WHERE deleted_at IS NOT NULL") ?? 0,
                anonymousSessions: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions") ?? 0,
                staleAnonymousSessions: try Int.fetchOne(
                    db,
                    sql: "SELECT COUNT(*) FROM anonymous_sessions WHERE transferred_to IS NULL AND last_seen_at < ?",
                    arguments: [staleCutoff]
                ) ?? 0,
                tokensOutstanding: try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(tokens), 0) FROM balances") ?? 0,
                anonymousTokensOutstanding: try Int.fetchOne(
                    db,
                    sql: "SELECT COALESCE(SUM(granted - used), 0) FROM anonymous_sessions WHERE transferred_to IS NULL"
                ) ?? 0,
                webhookEvents: webhooks,
                outboxDepth: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM stripe_outbox") ?? 0,
                ledgerEntries: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries") ?? 0
            )
        }
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
