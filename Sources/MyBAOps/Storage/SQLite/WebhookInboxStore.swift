import Foundation
import GRDB

/// The webhook inbox (`webhook_events`, with `webhook_event_entries`: the ledger entries each
/// event posted). An event is stored before anything else happens, then processed, retried
/// with backoff, replayed, and at last pruned down to its id and outcome.
struct WebhookInboxStore {
    let db: Database

    /// Stores a delivery unless its event id is known; returns whether it was new.
    func insert(_ delivery: WebhookDelivery, headers: String, receivedAt: Date) throws -> Bool {
        try db.execute(
            sql: """
                INSERT INTO webhook_events (source, event_id, type, body, headers, received_at, request_id, status, attempts)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'received', 0) ON CONFLICT (source, event_id) DO NOTHING
                """,
            arguments: [
                delivery.source.rawValue, delivery.eventId, delivery.type, delivery.body, headers,
                SQLTimestamp.string(receivedAt), delivery.requestId,
            ]
        )
        return db.changesCount == 1
    }

    func event(source: WebhookSource, eventId: String) throws -> WebhookEvent? {
        guard
            let row = try Row.fetchOne(
                db,
                sql: "SELECT * FROM webhook_events WHERE source = ? AND event_id = ?",
                arguments: [source.rawValue, eventId]
            )
        else {
            return nil
        }
        let headerText: String = row["headers"]
        let headers = (try? JSONSerialization.jsonObject(with: Data(headerText.utf8)) as? [String: String]) ?? [:]
        let entryIds = try Int64.fetchAll(
            db,
            sql: "SELECT entry_id FROM webhook_event_entries WHERE source = ? AND event_id = ? ORDER BY entry_id",
            arguments: [source.rawValue, eventId]
        )
        return WebhookEvent(
            source: source,
            eventId: eventId,
            type: row["type"],
            body: row["body"],
            headers: headers,
            receivedAt: row.timestamp("received_at") ?? Date(timeIntervalSince1970: 0),
            requestId: row["request_id"],
            status: WebhookEvent.Status(rawValue: row["status"]) ?? .failed,
            attempts: row["attempts"],
            lastError: row["last_error"],
            nextAttemptAt: row.timestamp("next_attempt_at"),
            processedAt: row.timestamp("processed_at"),
            outcome: row["outcome"],
            entryIds: entryIds
        )
    }

    /// Events due for processing at `now`: stored but never processed and older than
    /// `receivedBefore`, and failed ones whose backoff has elapsed, oldest first.
    func due(receivedBefore: Date, now: Date, maxAttempts: Int, limit: Int) throws -> [(WebhookSource, String)] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT source, event_id FROM webhook_events
                WHERE (status = 'received' AND received_at <= ?) OR (status = 'failed' AND attempts < ? AND next_attempt_at <= ?)
                ORDER BY received_at LIMIT ?
                """,
            arguments: [SQLTimestamp.string(receivedBefore), maxAttempts, SQLTimestamp.string(now), limit]
        )
        .compactMap { row in WebhookSource(rawValue: row["source"]).map { ($0, row["event_id"] as String) } }
    }

    func attempts(source: WebhookSource, eventId: String) throws -> Int? {
        try Int.fetchOne(
            db,
            sql: "SELECT attempts FROM webhook_events WHERE source = ? AND event_id = ?",
            arguments: [source.rawValue, eventId]
        )
    }

    /// Marks a received or failed event failed after `attempts` attempts, due again at `nextAttemptAt`.
    func recordFailure(source: WebhookSource, eventId: String, attempts: Int, error: String, nextAttemptAt: Date) throws {
        try db.execute(
            sql: """
                UPDATE webhook_events SET status = 'failed', attempts = ?, last_error = ?, next_attempt_at = ?
                WHERE source = ? AND event_id = ? AND status IN ('received', 'failed')
                """,
            arguments: [attempts, error, SQLTimestamp.string(nextAttemptAt), source.rawValue, eventId]
        )
    }

    /// Records the outcome of processing the event, and the entries it posted.
    func markDone(source: WebhookSource, eventId: String, status: WebhookEvent.Status, outcome: String, entryIds: [Int64], at now: Date) throws {
        try db.execute(
            sql: """
                UPDATE webhook_events SET status = ?, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL, processed_at = ?, outcome = ?
                WHERE source = ? AND event_id = ?
                """,
            arguments: [status.rawValue, SQLTimestamp.string(now), outcome, source.rawValue, eventId]
        )
        for entryId in entryIds {
            try db.execute(
                sql: "INSERT OR IGNORE INTO webhook_event_entries (source, event_id, entry_id) VALUES (?, ?, ?)",
                arguments: [source.rawValue, eventId, entryId]
            )
        }
    }

    /// Makes due again, with fresh attempts, the Stripe refund and dispute events of
    /// `paymentIntent` that failed (or a refund that was ignored) for want of its purchase.
    func requeueWaitingForPurchase(paymentIntent: String, now: Date) throws {
        try db.execute(
            sql: """
                UPDATE webhook_events SET status = 'failed', attempts = 0, next_attempt_at = ?
                WHERE source = 'stripe'
                  AND (status = 'failed' AND type IN ('charge.refunded', 'charge.dispute.created', 'charge.dispute.closed')
                       OR status = 'ignored' AND type = 'charge.refunded')
                  AND instr(body, ?) > 0
                """,
            arguments: [SQLTimestamp.string(now), "\"\(paymentIntent)\""]
        )
    }

    /// Stored events, newest first, filtered by status, type and receipt time.
    func list(status: WebhookEvent.Status?, type: String?, since: Date?, limit: Int) throws -> [WebhookEvent] {
        var sql = "SELECT source, event_id FROM webhook_events WHERE 1 = 1"
        var arguments: StatementArguments = []
        if let status {
            sql += " AND status = ?"
            arguments += [status.rawValue]
        }
        if let type {
            sql += " AND type = ?"
            arguments += [type]
        }
        if let since {
            sql += " AND received_at >= ?"
            arguments += [SQLTimestamp.string(since)]
        }
        sql += " ORDER BY received_at DESC LIMIT ?"
        arguments += [limit]
        return try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap { row in
            try WebhookSource(rawValue: row["source"]).flatMap { try event(source: $0, eventId: row["event_id"]) }
        }
    }

    /// The (source, event id) of events delivered in request `requestId`.
    func keys(requestId: String) throws -> [(String, String)] {
        try Row.fetchAll(db, sql: "SELECT source, event_id FROM webhook_events WHERE request_id = ?", arguments: [requestId])
            .map { ($0["source"], $0["event_id"]) }
    }

    /// Purchase events marked processed that neither posted nor found their grant.
    func processedPurchasesWithoutEntry() throws -> [String] {
        try String.fetchAll(
            db,
            sql: """
                SELECT event_id FROM webhook_events e WHERE source = 'stripe' AND status = 'processed'
                  AND type IN ('checkout.session.completed', 'checkout.session.async_payment_succeeded')
                  AND NOT EXISTS (SELECT 1 FROM webhook_event_entries x WHERE x.source = e.source AND x.event_id = e.event_id)
                  AND outcome NOT LIKE '%already granted%'
                """
        )
    }

    /// The stored `received_at` of the oldest event not processed yet.
    func oldestPendingText() throws -> String? {
        try String.fetchOne(db, sql: "SELECT MIN(received_at) FROM webhook_events WHERE status IN ('received', 'failed')")
    }

    /// How many processed or ignored events received before `cutoff` still keep their body.
    func prunableCount(before cutoff: Date) throws -> Int {
        try Int.fetchOne(
            db,
            sql: "SELECT COUNT(*) FROM webhook_events WHERE status IN ('processed', 'ignored') AND received_at < ? AND body != ''",
            arguments: [SQLTimestamp.string(cutoff)]
        ) ?? 0
    }

    /// Drops the bodies and headers of processed and ignored events received before `cutoff`;
    /// returns how many.
    func prune(before cutoff: Date) throws -> Int {
        try db.execute(
            sql:
                "UPDATE webhook_events SET body = '', headers = '{}' WHERE status IN ('processed', 'ignored') AND received_at < ? AND body != ''",
            arguments: [SQLTimestamp.string(cutoff)]
        )
        return db.changesCount
    }

    /// How many events still holding a body name any of `needles` in their body or headers.
    func countNaming(_ needles: [String]) throws -> Int {
        let (matching, arguments) = Self.naming(needles)
        return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_events WHERE body != '' AND (\(matching))", arguments: arguments) ?? 0
    }

    /// Drops the body and headers of every event naming any of `needles`.
    func scrubNaming(_ needles: [String]) throws {
        let (matching, arguments) = Self.naming(needles)
        try db.execute(sql: "UPDATE webhook_events SET body = '', headers = '{}' WHERE body != '' AND (\(matching))", arguments: arguments)
    }

    private static func naming(_ needles: [String]) -> (String, StatementArguments) {
        let matching = needles.map { _ in "instr(body, ?) > 0 OR instr(headers, ?) > 0" }.joined(separator: " OR ")
        return (matching, StatementArguments(needles.flatMap { [$0, $0] }))
    }
}
