import Foundation
import GRDB

/// Anonymous sessions (`anonymous_sessions`) and their own small ledger of charges
/// (`anonymous_charges`: +n per charge, −n per release, keys unique forever).
struct SessionStore {
    let sqlite: Database?
    /// On PostgreSQL, `PostgresSessionStatements` answer instead.
    let postgres: PostgresSession?

    /// SQLite's connection; on PostgreSQL, an error for what has no PostgreSQL statement yet.
    private var db: Database {
        get throws { try StorageTransaction.sqlite(sqlite, for: "this anonymous-session query") }
    }

    func session(id: String) throws -> AnonymousSession? {
        if let postgres { return try PostgresSessionStatements.session(id: id, in: postgres) }
        return try sessions(sql: "SELECT * FROM anonymous_sessions WHERE id = ?", [id]).first
    }

    func session(fingerprintHash: String) throws -> AnonymousSession? {
        if let postgres { return try PostgresSessionStatements.session(fingerprintHash: fingerprintHash, in: postgres) }
        return try sessions(sql: "SELECT * FROM anonymous_sessions WHERE fingerprint_hash = ?", [fingerprintHash]).first
    }

    /// Makes the starts of one browser and of one address take turns until commit. SQLite's
    /// single writer does that already; PostgreSQL takes advisory locks.
    func lockCreations(fingerprintHash: String, addressHash: String) throws {
        if let postgres { try PostgresSessionStatements.lockCreations(fingerprintHash: fingerprintHash, addressHash: addressHash, in: postgres) }
    }

    func touch(id: String, at now: Date) throws {
        if let postgres { return try PostgresSessionStatements.touch(id: id, at: now, in: postgres) }
        try db.execute(sql: "UPDATE anonymous_sessions SET last_seen_at = ? WHERE id = ?", arguments: [SQLTimestamp.string(now), id])
    }

    /// When the address's sessions created after `since` were created, oldest first, at most
    /// `limit`. The address index walks the window oldest first and stops at the limit: the
    /// check costs the same however many sessions one address made.
    func creationTimes(addressHash: String, since: String, limit: Int) throws -> [String] {
        if let postgres {
            return try PostgresSessionStatements.creationTimes(addressHash: addressHash, since: since, limit: limit, in: postgres)
        }
        return try String.fetchAll(
            db,
            sql: """
                SELECT created_at FROM anonymous_sessions WHERE client_address_hash = ? AND created_at > ? ORDER BY created_at LIMIT ?
                """,
            arguments: [addressHash, since, limit]
        )
    }

    func insert(_ session: AnonymousSession, fingerprintHash: String, addressHash: String) throws {
        if let postgres {
            return try PostgresSessionStatements.insert(session, fingerprintHash: fingerprintHash, addressHash: addressHash, in: postgres)
        }
        try db.execute(
            sql: """
                INSERT INTO anonymous_sessions (id, fingerprint_hash, client_address_hash, granted, used, created_at, last_seen_at)
                VALUES (?, ?, ?, ?, 0, ?, ?)
                """,
            arguments: [
                session.id, fingerprintHash, addressHash, session.granted, SQLTimestamp.string(session.createdAt),
                SQLTimestamp.string(session.lastSeenAt),
            ]
        )
    }

    /// How many sessions were moved to `userId`'s account.
    func transferCount(to userId: String) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions WHERE transferred_to = ?", arguments: [userId]) ?? 0
    }

    func markTransferred(id: String, to userId: String, tokens: Int, at now: Date) throws {
        try db.execute(
            sql: """
                UPDATE anonymous_sessions SET transferred_to = ?, transferred_at = ?, transferred_tokens = ?, last_seen_at = ? WHERE id = ?
                """,
            arguments: [userId, SQLTimestamp.string(now), tokens, SQLTimestamp.string(now), id]
        )
    }

    /// The session and amount of the charge with key `idempotencyKey`.
    func charge(idempotencyKey: String) throws -> (sessionId: String, amount: Int)? {
        try Row.fetchOne(
            db,
            sql: "SELECT session_id, amount FROM anonymous_charges WHERE idempotency_key = ?",
            arguments: [idempotencyKey]
        ).map { ($0["session_id"], $0["amount"]) }
    }

    /// The amount of `sessionId`'s charge with key `idempotencyKey`.
    func chargedAmount(idempotencyKey: String, sessionId: String) throws -> Int? {
        try Int.fetchOne(
            db,
            sql: "SELECT amount FROM anonymous_charges WHERE idempotency_key = ? AND session_id = ?",
            arguments: [idempotencyKey, sessionId]
        )
    }

    func chargeExists(idempotencyKey: String) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM anonymous_charges WHERE idempotency_key = ?", arguments: [idempotencyKey]) == true
    }

    func insertCharge(sessionId: String, amount: Int, idempotencyKey: String, requestId: String?, at now: Date) throws {
        try db.execute(
            sql: "INSERT INTO anonymous_charges (session_id, amount, idempotency_key, request_id, created_at) VALUES (?, ?, ?, ?, ?)",
            arguments: [sessionId, amount, idempotencyKey, requestId, SQLTimestamp.string(now)]
        )
    }

    /// Counts `amount` more tokens used, and the session seen at `now`.
    func addUsed(_ amount: Int, sessionId: String, at now: Date) throws {
        try db.execute(
            sql: "UPDATE anonymous_sessions SET used = used + ?, last_seen_at = ? WHERE id = ?",
            arguments: [amount, SQLTimestamp.string(now), sessionId]
        )
    }

    func subtractUsed(_ amount: Int, sessionId: String) throws {
        try db.execute(sql: "UPDATE anonymous_sessions SET used = used - ? WHERE id = ?", arguments: [amount, sessionId])
    }

    func addTransferredTokens(_ amount: Int, sessionId: String) throws {
        try db.execute(
            sql: "UPDATE anonymous_sessions SET transferred_tokens = COALESCE(transferred_tokens, 0) + ? WHERE id = ?",
            arguments: [amount, sessionId]
        )
    }

    func count() throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions") ?? 0
    }

    /// Sessions moved to `userId`'s account, newest move first.
    func transferred(to userId: String) throws -> [AnonymousSession] {
        try sessions(sql: "SELECT * FROM anonymous_sessions WHERE transferred_to = ? ORDER BY transferred_at DESC", [userId])
    }

    /// Sessions, newest activity first; with `staleBefore`, only untransferred ones last seen
    /// before it.
    func list(lastSeenBefore staleBefore: Date?, limit: Int) throws -> [AnonymousSession] {
        var sql = "SELECT * FROM anonymous_sessions"
        var arguments: StatementArguments = []
        if let staleBefore {
            sql += " WHERE transferred_to IS NULL AND last_seen_at < ?"
            arguments += [SQLTimestamp.string(staleBefore)]
        }
        sql += " ORDER BY last_seen_at DESC LIMIT ?"
        arguments += [limit]
        return try sessions(sql: sql, arguments)
    }

    // MARK: Reaping

    /// The sessions a reap removes (`s`, last seen before `?`): never transferred, and with no
    /// generation still reserved, whose token must be given back to the session first.
    private static let reapable = """
        s.transferred_to IS NULL AND s.last_seen_at < ?
          AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.status = 'reserved' AND g.payer_id = s.id AND g.payer_kind = 'session')
        """

    func reapableCount(lastSeenBefore cutoff: Date) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions s WHERE \(Self.reapable)", arguments: [SQLTimestamp.string(cutoff)]) ?? 0
    }

    /// Removes up to `batch` reapable sessions, oldest first (along the last_seen_at index:
    /// fewer pages touched per batch); returns how many.
    func reap(lastSeenBefore cutoff: Date, batch: Int) throws -> Int {
        try db.execute(
            sql: """
                DELETE FROM anonymous_sessions WHERE id IN (
                    SELECT id FROM anonymous_sessions s WHERE \(Self.reapable) ORDER BY last_seen_at LIMIT ?)
                """,
            arguments: [SQLTimestamp.string(cutoff), batch]
        )
        return try db.changesCount
    }

    /// The sessions a `SELECT * FROM anonymous_sessions …` query returns.
    private func sessions(sql: String, _ arguments: StatementArguments) throws -> [AnonymousSession] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
            AnonymousSession(
                id: row["id"],
                granted: row["granted"],
                used: row["used"],
                createdAt: row.timestamp("created_at") ?? Date(timeIntervalSince1970: 0),
                lastSeenAt: row.timestamp("last_seen_at") ?? Date(timeIntervalSince1970: 0),
                transferredTo: row["transferred_to"],
                transferredAt: row.timestamp("transferred_at"),
                transferredTokens: row["transferred_tokens"]
            )
        }
    }
}
