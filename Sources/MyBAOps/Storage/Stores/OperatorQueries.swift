import Foundation

/// Read-only questions that span tables: what the console lists and counts, timelines,
/// verification's cross-checks, health and metrics counts. Nothing here writes; each table's
/// writes belong to its own store.
struct OperatorQueries {
    let sql: SQLConnection

    // MARK: Verification

    /// An anonymous session whose counts disagree with its charges or with the ledger.
    struct SessionLedgerFacts {
        var id: String
        var used: Int
        var granted: Int
        var transferredTo: String?
        var transferredTokens: Int?
        /// The sum of its charges.
        var charged: Int
        /// What `transfer` entries referencing it moved.
        var moved: Int?
        /// Who received its `transfer:<id>` entry.
        var movedTo: String?
    }

    /// Sessions whose `used` differs from their charges, whose recorded transfer differs from
    /// the ledger's `transfer` entries, that keep tokens after a move, or that the ledger shows
    /// moved while they say they were not.
    func sessionsDisagreeingWithLedger() throws -> [SessionLedgerFacts] {
        let moved = "(SELECT SUM(delta) FROM ledger_entries e WHERE e.kind = 'transfer' AND e.reference = s.id)"
        return try sql.fetchAll(
            """
            SELECT s.id, s.used, s.granted, s.transferred_to, s.transferred_tokens,
                   (SELECT COALESCE(SUM(amount), 0) FROM anonymous_charges c WHERE c.session_id = s.id) AS charged,
                   \(moved) AS moved,
                   (SELECT user_id FROM ledger_entries e WHERE e.idempotency_key = 'transfer:' || s.id) AS moved_to
            FROM anonymous_sessions s
            WHERE s.used != (SELECT COALESCE(SUM(amount), 0) FROM anonymous_charges c WHERE c.session_id = s.id)
               OR (s.transferred_to IS NOT NULL AND COALESCE(s.transferred_tokens, 0) != COALESCE(\(moved), 0))
               OR (s.transferred_to IS NOT NULL AND s.granted - s.used != COALESCE(s.transferred_tokens, 0))
               OR (s.transferred_to IS NULL AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.idempotency_key = 'transfer:' || s.id))
            """
        ).map { row in
            SessionLedgerFacts(
                id: try row.get("id"),
                used: try row.get("used"),
                granted: try row.get("granted"),
                transferredTo: try row.get("transferred_to"),
                transferredTokens: try row.get("transferred_tokens"),
                charged: try row.get("charged"),
                moved: try row.get("moved"),
                movedTo: try row.get("moved_to")
            )
        }
    }

    // MARK: Customers

    /// The user whose id or Stripe customer id is `reference` (the user id first).
    func userId(idOrStripeCustomerId reference: String) throws -> String? {
        try sql.value(
            "SELECT user_id FROM customers WHERE user_id = ? OR stripe_customer_id = ? ORDER BY user_id = ? DESC LIMIT 1",
            [reference, reference, reference]
        )
    }

    /// Users whose email is `email` (case aside), at most `limit`.
    func userIds(email: String, limit: Int) throws -> [String] {
        try sql.values("SELECT user_id FROM customers WHERE lower(email) = lower(?) ORDER BY user_id LIMIT ?", [email, limit])
    }

    /// User ids starting with `prefix`, in order.
    func userIds(prefix: String, limit: Int) throws -> [String] {
        // A range on SQLite (the primary key's order is bytewise); PostgreSQL's collation may
        // not be, and `starts_with` says what is meant.
        if sql.isPostgres {
            return try sql.values("SELECT user_id FROM customers WHERE starts_with(user_id, ?) ORDER BY user_id LIMIT ?", [prefix, limit])
        }
        return try sql.values(
            "SELECT user_id FROM customers WHERE user_id >= ? AND user_id < ? ORDER BY user_id LIMIT ?",
            [prefix, prefix + "\u{10FFFF}", limit]
        )
    }

    func customerListings(limit: Int, sortByTokens: Bool, matching: String?) throws -> [CustomerListing] {
        var text = """
            SELECT c.user_id, c.email, c.stripe_customer_id, c.created_at, c.deleted_at, COALESCE(b.tokens, 0) AS tokens
            FROM customers c LEFT JOIN balances b ON b.user_id = c.user_id
            """
        var arguments: [any SQLBindable] = []
        if let search = matching {
            text += " WHERE instr(lower(c.user_id), lower(?)) > 0 OR instr(lower(COALESCE(c.email, '')), lower(?)) > 0 OR c.stripe_customer_id = ?"
            arguments += [search, search, search]
        }
        text += sortByTokens ? " ORDER BY tokens DESC, c.user_id" : " ORDER BY c.created_at DESC, c.user_id"
        text += " LIMIT ?"
        arguments.append(limit)
        return try sql.fetchAll(text, arguments).map { row in
            CustomerListing(
                userId: try row.get("user_id"),
                email: try row.get("email"),
                stripeCustomerId: try row.get("stripe_customer_id"),
                tokens: try row.get("tokens"),
                createdAt: try row.get("created_at"),
                deleted: try row.get("deleted_at", as: Date?.self) != nil
            )
        }
    }

    func customerCount() throws -> Int {
        try sql.value("SELECT COUNT(*) FROM customers") ?? 0
    }

    /// Reads one row of each table the API cannot work without: throws when either is unreadable.
    func probeCoreTables() throws {
        _ = (try sql.fetchOne("SELECT 1 FROM customers LIMIT 1"), try sql.fetchOne("SELECT 1 FROM balances LIMIT 1"))
    }

    // MARK: Timelines

    /// Every ledger entry made in request `requestId`.
    func entries(requestId: String) throws -> [LedgerEntry] {
        try sql.fetchAll("SELECT * FROM ledger_entries WHERE request_id = ?", [requestId]).map { try $0.ledgerEntry() }
    }

    /// Every ledger entry of `userId`.
    func entries(userId: String) throws -> [LedgerEntry] {
        try sql.fetchAll("SELECT * FROM ledger_entries WHERE user_id = ?", [userId]).map { try $0.ledgerEntry() }
    }

    /// Webhook events of `userId`, newest first: those that produced ledger entries for them, and
    /// every stored event that names them — their user id, Stripe customer id or email as a JSON
    /// string in the body.
    func webhookKeys(namingUser userId: String, limit: Int) throws -> [(source: WebhookSource, eventId: String)] {
        var needles = [userId]
        if let customer = try sql.fetchOne("SELECT * FROM customers WHERE user_id = ?", [userId])?.customer() {
            if let stripeId = customer.stripeCustomerId { needles.append(stripeId) }
            if let email = customer.email, !email.isEmpty { needles.append(email) }
        }
        let quoted = needles.map { "\"" + $0 + "\"" }
        let rows = try sql.fetchAll(
            """
            SELECT source, event_id, received_at FROM webhook_events w
            WHERE EXISTS (
                SELECT 1 FROM webhook_event_entries we JOIN ledger_entries e ON e.id = we.entry_id
                WHERE we.source = w.source AND we.event_id = w.event_id AND e.user_id = ?)
              OR \(quoted.map { _ in "instr(w.body, ?) > 0" }.joined(separator: " OR "))
            ORDER BY received_at DESC LIMIT ?
            """,
            [userId] + quoted + [limit]
        )
        return try rows.compactMap { row in try WebhookSource(rawValue: try row.get("source")).map { ($0, try row.get("event_id")) } }
    }

    // MARK: Counts

    /// `stats`: untransferred sessions last seen before `staleBefore` count as stale.
    func stats(staleBefore: Date) throws -> SystemStats {
        var webhooks: [String: Int] = [:]
        for row in try sql.fetchAll("SELECT status, COUNT(*) AS n FROM webhook_events GROUP BY status") {
            webhooks[try row.get("status")] = try row.get("n")
        }
        return SystemStats(
            customers: try sql.value("SELECT COUNT(*) FROM customers WHERE deleted_at IS NULL") ?? 0,
            deletedCustomers: try sql.value("SELECT COUNT(*) FROM customers WHERE deleted_at IS NOT NULL") ?? 0,
            anonymousSessions: try sql.value("SELECT COUNT(*) FROM anonymous_sessions") ?? 0,
            staleAnonymousSessions: try sql.value(
                "SELECT COUNT(*) FROM anonymous_sessions WHERE transferred_to IS NULL AND last_seen_at < ?",
                [staleBefore]
            ) ?? 0,
            tokensOutstanding: try sql.value("SELECT COALESCE(SUM(tokens), 0) FROM balances") ?? 0,
            anonymousTokensOutstanding: try sql.value(
                "SELECT COALESCE(SUM(granted - used), 0) FROM anonymous_sessions WHERE transferred_to IS NULL"
            ) ?? 0,
            webhookEvents: webhooks,
            outboxDepth: try sql.value("SELECT COUNT(*) FROM stripe_outbox") ?? 0,
            ledgerEntries: try sql.value("SELECT COUNT(*) FROM ledger_entries") ?? 0
        )
    }

    /// The counts the metrics gauges report besides the outbox.
    func metricsSnapshot() throws -> MetricsSnapshot {
        let sessions = try sql.fetchOne(
            """
            SELECT COUNT(*) FILTER (WHERE transferred_to IS NULL) AS open,
                   COUNT(*) FILTER (WHERE transferred_to IS NOT NULL) AS transferred
            FROM anonymous_sessions
            """
        )
        return MetricsSnapshot(
            openAnonymousSessions: try sessions?.get("open") ?? 0,
            transferredAnonymousSessions: try sessions?.get("transferred") ?? 0,
            customers: try sql.value("SELECT COUNT(*) FROM customers") ?? 0,
            webhooksPending: try sql.value("SELECT COUNT(*) FROM webhook_events WHERE status IN ('received', 'failed')") ?? 0
        )
    }
}
