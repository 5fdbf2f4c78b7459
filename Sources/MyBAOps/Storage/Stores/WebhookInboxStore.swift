import Foundation

/// The webhook inbox (`webhook_events`, with `webhook_event_entries`: the ledger entries each
/// event posted). An event is stored before anything else happens, then processed, retried
/// with backoff, replayed, and at last pruned down to its id and outcome.
struct WebhookInboxStore {
    let sql: SQLConnection

    /// Stores a delivery unless its event id is known; returns whether it was new.
    func insert(_ delivery: WebhookDelivery, headers: String, receivedAt: Date) throws -> Bool {
        try sql.execute(
            """
            INSERT INTO webhook_events (source, event_id, type, body, headers, received_at, request_id, status, attempts)
            VALUES (?, ?, ?, ?, ?, ?, ?, 'received', 0) ON CONFLICT (source, event_id) DO NOTHING
            """,
            [delivery.source.rawValue, delivery.eventId, delivery.type, delivery.body, headers, receivedAt, delivery.requestId]
        ) == 1
    }

    /// A stored event. In a PostgreSQL write its row stays locked until commit, so a live
    /// delivery, another server's retry and a console replay of one event take turns, and each
    /// later one finds it processed.
    func event(source: WebhookSource, eventId: String) throws -> WebhookEvent? {
        guard
            let row = try sql.fetchOne("SELECT * FROM webhook_events WHERE source = ? AND event_id = ?\(sql.forUpdate)", [source.rawValue, eventId])
        else {
            return nil
        }
        let headerText: String = try row.get("headers")
        let headers = (try? JSONSerialization.jsonObject(with: Data(headerText.utf8)) as? [String: String]) ?? [:]
        let entryIds: [Int64] = try sql.values(
            "SELECT entry_id FROM webhook_event_entries WHERE source = ? AND event_id = ? ORDER BY entry_id",
            [source.rawValue, eventId]
        )
        return WebhookEvent(
            source: source,
            eventId: eventId,
            type: try row.get("type"),
            body: try row.get("body"),
            headers: headers,
            receivedAt: try row.get("received_at"),
            requestId: try row.get("request_id"),
            status: WebhookEvent.Status(rawValue: try row.get("status")) ?? .failed,
            attempts: try row.get("attempts"),
            lastError: try row.get("last_error"),
            nextAttemptAt: try row.get("next_attempt_at"),
            processedAt: try row.get("processed_at"),
            outcome: try row.get("outcome"),
            entryIds: entryIds
        )
    }

    /// What makes an event due at `now`: stored but never processed and older than
    /// `receivedBefore`, or failed with its backoff elapsed.
    private static let dueCondition =
        "((status = 'received' AND received_at <= ?) OR (status = 'failed' AND attempts < ? AND next_attempt_at <= ?))"

    /// Events due for processing at `now`, oldest first.
    func due(receivedBefore: Date, now: Date, maxAttempts: Int, limit: Int) throws -> [(WebhookSource, String)] {
        try sql.fetchAll(
            "SELECT source, event_id FROM webhook_events WHERE \(Self.dueCondition) ORDER BY received_at LIMIT ?",
            [receivedBefore, maxAttempts, now, limit]
        ).compactMap(Self.key)
    }

    /// The due events this process may work on now. On PostgreSQL they are claimed: leased for
    /// `leaseSeconds` (by the database's clock) and skipped by other servers meanwhile (`FOR
    /// UPDATE SKIP LOCKED`), so two retry workers never process one event; a server that dies
    /// leaves its claims to the others once the lease runs out. SQLite has one writer: the due
    /// events themselves.
    func claimDue(receivedBefore: Date, now: Date, maxAttempts: Int, limit: Int, leaseSeconds: Int) throws -> [(WebhookSource, String)] {
        guard sql.isPostgres else { return try due(receivedBefore: receivedBefore, now: now, maxAttempts: maxAttempts, limit: limit) }
        return try sql.fetchAll(
            """
            UPDATE webhook_events SET lease_until = now() + make_interval(secs => ?) WHERE (source, event_id) IN (
                SELECT source, event_id FROM webhook_events
                WHERE \(Self.dueCondition) AND (lease_until IS NULL OR lease_until <= now())
                ORDER BY received_at LIMIT ? FOR UPDATE SKIP LOCKED)
            RETURNING source, event_id
            """,
            [leaseSeconds, receivedBefore, maxAttempts, now, limit]
        ).compactMap(Self.key)
    }

    private static func key(_ row: SQLRow) throws -> (WebhookSource, String)? {
        try WebhookSource(rawValue: try row.get("source")).map { ($0, try row.get("event_id")) }
    }

    /// Ends this process's claim on the event (PostgreSQL's lease column).
    private var releasingLease: String { sql.isPostgres ? ", lease_until = NULL" : "" }

    func attempts(source: WebhookSource, eventId: String) throws -> Int? {
        try sql.value("SELECT attempts FROM webhook_events WHERE source = ? AND event_id = ?", [source.rawValue, eventId])
    }

    /// Marks a received or failed event failed after `attempts` attempts, due again at `nextAttemptAt`.
    func recordFailure(source: WebhookSource, eventId: String, attempts: Int, error: String, nextAttemptAt: Date) throws {
        try sql.execute(
            """
            UPDATE webhook_events SET status = 'failed', attempts = ?, last_error = ?, next_attempt_at = ?\(releasingLease)
            WHERE source = ? AND event_id = ? AND status IN ('received', 'failed')
            """,
            [attempts, error, nextAttemptAt, source.rawValue, eventId]
        )
    }

    /// Records the outcome of processing the event, and the entries it posted.
    func markDone(source: WebhookSource, eventId: String, status: WebhookEvent.Status, outcome: String, entryIds: [Int64], at now: Date) throws {
        try sql.execute(
            """
            UPDATE webhook_events SET status = ?, attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL, processed_at = ?,
                outcome = ?\(releasingLease)
            WHERE source = ? AND event_id = ?
            """,
            [status.rawValue, now, outcome, source.rawValue, eventId]
        )
        for entryId in entryIds {
            try sql.execute(
                "INSERT INTO webhook_event_entries (source, event_id, entry_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [source.rawValue, eventId, entryId]
            )
        }
    }

    /// Makes due again, with fresh attempts, the Stripe refund and dispute events of
    /// `paymentIntent` that failed (or a refund that was ignored) for want of its purchase.
    func requeueWaitingForPurchase(paymentIntent: String, now: Date) throws {
        try sql.execute(
            """
            UPDATE webhook_events SET status = 'failed', attempts = 0, next_attempt_at = ?
            WHERE source = 'stripe'
              AND (status = 'failed' AND type IN ('charge.refunded', 'charge.dispute.created', 'charge.dispute.closed')
                   OR status = 'ignored' AND type = 'charge.refunded')
              AND instr(body, ?) > 0
            """,
            [now, "\"\(paymentIntent)\""]
        )
    }

    /// Stored events, newest first, filtered by status, type and receipt time.
    func list(status: WebhookEvent.Status?, type: String?, since: Date?, limit: Int) throws -> [WebhookEvent] {
        var text = "SELECT source, event_id FROM webhook_events WHERE 1 = 1"
        var arguments: [any SQLBindable] = []
        if let status {
            text += " AND status = ?"
            arguments.append(status.rawValue)
        }
        if let type {
            text += " AND type = ?"
            arguments.append(type)
        }
        if let since {
            text += " AND received_at >= ?"
            arguments.append(since)
        }
        text += " ORDER BY received_at DESC LIMIT ?"
        arguments.append(limit)
        return try sql.fetchAll(text, arguments).compactMap(Self.key).compactMap { try event(source: $0.0, eventId: $0.1) }
    }

    /// The (source, event id) of events delivered in request `requestId`.
    func keys(requestId: String) throws -> [(String, String)] {
        try sql.fetchAll("SELECT source, event_id FROM webhook_events WHERE request_id = ?", [requestId]).map {
            (try $0.get("source"), try $0.get("event_id"))
        }
    }

    /// Purchase events marked processed that neither posted nor found their grant.
    func processedPurchasesWithoutEntry() throws -> [String] {
        try sql.values(
            """
            SELECT event_id FROM webhook_events e WHERE source = 'stripe' AND status = 'processed'
              AND type IN ('checkout.session.completed', 'checkout.session.async_payment_succeeded')
              AND NOT EXISTS (SELECT 1 FROM webhook_event_entries x WHERE x.source = e.source AND x.event_id = e.event_id)
              AND outcome NOT LIKE '%already granted%'
            """
        )
    }

    /// The stored `received_at` of the oldest event not processed yet.
    func oldestPendingText() throws -> String? {
        try sql.value("SELECT MIN(received_at) FROM webhook_events WHERE status IN ('received', 'failed')", as: StoredTimestamp.self)?.text
    }

    /// How many processed or ignored events received before `cutoff` still keep their body.
    func prunableCount(before cutoff: Date) throws -> Int {
        try sql.value(
            "SELECT COUNT(*) FROM webhook_events WHERE status IN ('processed', 'ignored') AND received_at < ? AND body != ''",
            [cutoff]
        ) ?? 0
    }

    /// Drops the bodies and headers of processed and ignored events received before `cutoff`;
    /// returns how many.
    func prune(before cutoff: Date) throws -> Int {
        try sql.execute(
            "UPDATE webhook_events SET body = '', headers = '{}' WHERE status IN ('processed', 'ignored') AND received_at < ? AND body != ''",
            [cutoff]
        )
    }

    /// How many events still holding a body name any of `needles` in their body or headers.
    func countNaming(_ needles: [String]) throws -> Int {
        let (matching, arguments) = Self.naming(needles)
        return try sql.value("SELECT COUNT(*) FROM webhook_events WHERE body != '' AND (\(matching))", arguments) ?? 0
    }

    /// Drops the body and headers of every event naming any of `needles`.
    func scrubNaming(_ needles: [String]) throws {
        let (matching, arguments) = Self.naming(needles)
        try sql.execute("UPDATE webhook_events SET body = '', headers = '{}' WHERE body != '' AND (\(matching))", arguments)
    }

    private static func naming(_ needles: [String]) -> (String, [any SQLBindable]) {
        let matching = needles.map { _ in "instr(body, ?) > 0 OR instr(headers, ?) > 0" }.joined(separator: " OR ")
        return (matching, needles.flatMap { [$0, $0] })
    }
}
