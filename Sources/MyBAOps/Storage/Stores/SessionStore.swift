import Foundation

/// Anonymous sessions (`anonymous_sessions`) and their own small ledger of charges
/// (`anonymous_charges`: +n per charge, −n per release, keys unique forever).
struct SessionStore {
    let sql: SQLConnection

    /// A session. In a PostgreSQL write the row stays locked until commit: a charge reads the
    /// tokens left and counts one more used, and another server's charge of the same session
    /// waits for it (what SQLite's single writer does for every write).
    func session(id: String) throws -> AnonymousSession? {
        try sessions("SELECT * FROM anonymous_sessions WHERE id = ?\(sql.forUpdate)", [id]).first
    }

    /// The browser's session; locked like `session(id:)` (a reap on another server skips it, or
    /// has removed it by the time this reads).
    func session(fingerprintHash: String) throws -> AnonymousSession? {
        try sessions("SELECT * FROM anonymous_sessions WHERE fingerprint_hash = ?\(sql.forUpdate)", [fingerprintHash]).first
    }

    /// Makes the starts of one browser and of one address take turns until commit, across
    /// servers: the count-then-insert of the hourly limit and the one-session-per-fingerprint
    /// rule are what SQLite's single writer gives for free. PostgreSQL takes transaction-scoped
    /// advisory locks, fingerprint first, then address: one order, no deadlock.
    func lockCreations(fingerprintHash: String, addressHash: String) throws {
        try sql.lockUntilCommit("fingerprint:" + fingerprintHash)
        try sql.lockUntilCommit("address:" + addressHash)
    }

    func touch(id: String, at now: Date) throws {
        try sql.execute("UPDATE anonymous_sessions SET last_seen_at = ? WHERE id = ?", [now, id])
    }

    /// When the address's sessions created after `since` were created, oldest first, at most
    /// `limit`. The address index walks the window oldest first and stops at the limit: the
    /// check costs the same however many sessions one address made.
    func creationTimes(addressHash: String, since: String, limit: Int) throws -> [String] {
        try sql.values(
            "SELECT created_at FROM anonymous_sessions WHERE client_address_hash = ? AND created_at > ? ORDER BY created_at LIMIT ?",
            [addressHash, StoredTimestamp(text: since), limit],
            as: StoredTimestamp.self
        ).map(\.text)
    }

    func insert(_ session: AnonymousSession, fingerprintHash: String, addressHash: String) throws {
        try sql.execute(
            """
            INSERT INTO anonymous_sessions (id, fingerprint_hash, client_address_hash, granted, used, created_at, last_seen_at)
            VALUES (?, ?, ?, ?, 0, ?, ?)
            """,
            [session.id, fingerprintHash, addressHash, session.granted, session.createdAt, session.lastSeenAt]
        )
    }

    /// How many sessions were moved to `userId`'s account.
    func transferCount(to userId: String) throws -> Int {
        try sql.value("SELECT COUNT(*) FROM anonymous_sessions WHERE transferred_to = ?", [userId]) ?? 0
    }

    func markTransferred(id: String, to userId: String, tokens: Int, at now: Date) throws {
        try sql.execute(
            "UPDATE anonymous_sessions SET transferred_to = ?, transferred_at = ?, transferred_tokens = ?, last_seen_at = ? WHERE id = ?",
            [userId, now, tokens, now, id]
        )
    }

    /// The session and amount of the charge with key `idempotencyKey`.
    func charge(idempotencyKey: String) throws -> (sessionId: String, amount: Int)? {
        try sql.fetchOne("SELECT session_id, amount FROM anonymous_charges WHERE idempotency_key = ?", [idempotencyKey]).map {
            (try $0.get("session_id"), try $0.get("amount"))
        }
    }

    /// The amount of `sessionId`'s charge with key `idempotencyKey`.
    func chargedAmount(idempotencyKey: String, sessionId: String) throws -> Int? {
        try sql.value("SELECT amount FROM anonymous_charges WHERE idempotency_key = ? AND session_id = ?", [idempotencyKey, sessionId])
    }

    func chargeExists(idempotencyKey: String) throws -> Bool {
        try sql.fetchOne("SELECT 1 FROM anonymous_charges WHERE idempotency_key = ?", [idempotencyKey]) != nil
    }

    func insertCharge(sessionId: String, amount: Int, idempotencyKey: String, requestId: String?, at now: Date) throws {
        try sql.execute(
            "INSERT INTO anonymous_charges (session_id, amount, idempotency_key, request_id, created_at) VALUES (?, ?, ?, ?, ?)",
            [sessionId, amount, idempotencyKey, requestId, now]
        )
    }

    /// Counts `amount` more tokens used, and the session seen at `now`.
    func addUsed(_ amount: Int, sessionId: String, at now: Date) throws {
        try sql.execute("UPDATE anonymous_sessions SET used = used + ?, last_seen_at = ? WHERE id = ?", [amount, now, sessionId])
    }

    func subtractUsed(_ amount: Int, sessionId: String) throws {
        try sql.execute("UPDATE anonymous_sessions SET used = used - ? WHERE id = ?", [amount, sessionId])
    }

    func addTransferredTokens(_ amount: Int, sessionId: String) throws {
        try sql.execute(
            "UPDATE anonymous_sessions SET transferred_tokens = COALESCE(transferred_tokens, 0) + ? WHERE id = ?",
            [amount, sessionId]
        )
    }

    func count() throws -> Int {
        try sql.value("SELECT COUNT(*) FROM anonymous_sessions") ?? 0
    }

    /// Sessions moved to `userId`'s account, newest move first.
    func transferred(to userId: String) throws -> [AnonymousSession] {
        try sessions("SELECT * FROM anonymous_sessions WHERE transferred_to = ? ORDER BY transferred_at DESC", [userId])
    }

    /// Sessions, newest activity first; with `staleBefore`, only untransferred ones last seen
    /// before it.
    func list(lastSeenBefore staleBefore: Date?, limit: Int) throws -> [AnonymousSession] {
        var text = "SELECT * FROM anonymous_sessions"
        var arguments: [any SQLBindable] = []
        if let staleBefore {
            text += " WHERE transferred_to IS NULL AND last_seen_at < ?"
            arguments.append(staleBefore)
        }
        text += " ORDER BY last_seen_at DESC LIMIT ?"
        arguments.append(limit)
        return try sessions(text, arguments)
    }

    // MARK: Reaping

    /// The sessions a reap removes (`s`, last seen before `?`): never transferred, and with no
    /// generation still reserved, whose token must be given back to the session first.
    private static let reapable = """
        s.transferred_to IS NULL AND s.last_seen_at < ?
          AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.status = 'reserved' AND g.payer_id = s.id AND g.payer_kind = 'session')
        """

    func reapableCount(lastSeenBefore cutoff: Date) throws -> Int {
        try sql.value("SELECT COUNT(*) FROM anonymous_sessions s WHERE \(Self.reapable)", [cutoff]) ?? 0
    }

    /// Removes up to `batch` reapable sessions, oldest first (along the last_seen_at index:
    /// fewer pages touched per batch); returns how many. On PostgreSQL the batch skips sessions
    /// another server is charging or reaping at this moment (`SKIP LOCKED`): they are not idle.
    func reap(lastSeenBefore cutoff: Date, batch: Int) throws -> Int {
        let skipLocked = sql.isPostgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try sql.execute(
            """
            DELETE FROM anonymous_sessions WHERE id IN (
                SELECT id FROM anonymous_sessions s WHERE \(Self.reapable) ORDER BY last_seen_at LIMIT ?\(skipLocked))
            """,
            [cutoff, batch]
        )
    }

    /// The sessions a `SELECT * FROM anonymous_sessions …` query returns.
    private func sessions(_ text: String, _ arguments: [any SQLBindable]) throws -> [AnonymousSession] {
        try sql.fetchAll(text, arguments).map { row in
            AnonymousSession(
                id: try row.get("id"),
                granted: try row.get("granted"),
                used: try row.get("used"),
                createdAt: try row.get("created_at"),
                lastSeenAt: try row.get("last_seen_at"),
                transferredTo: try row.get("transferred_to"),
                transferredAt: try row.get("transferred_at"),
                transferredTokens: try row.get("transferred_tokens")
            )
        }
    }
}
