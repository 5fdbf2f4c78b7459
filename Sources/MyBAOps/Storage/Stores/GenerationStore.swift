import Foundation
import GRDB

/// Generation requests (`generations`): one row per request key, with what was charged and
/// what was answered, so a retried request is never charged twice and gets the same ticket.
struct GenerationStore {
    let sql: SQLConnection

    /// A stored request as a retry of its key sees it.
    struct Stored {
        var payerKind: String
        var payerId: String
        var inputHash: String
        var status: String
        var attempts: Int
        var response: String?
    }

    /// A reservation the sweep may release.
    struct Reserved {
        var key: String
        var payerKind: String
        var payerId: String
        var attempts: Int
        var requestId: String?
    }

    /// Which own-key generations an hourly limit counts.
    enum OwnKeyScope {
        /// Those of one client address (its salted hash).
        case client
        /// Those of one payer.
        case payer

        fileprivate var column: String {
            switch self {
            case .client: return "client_key"
            case .payer: return "payer_id"
            }
        }
    }

    /// On the generation hot path: a cached statement on SQLite. In a PostgreSQL write, requests
    /// with one key take turns until commit (an advisory lock: the row may not exist yet), so
    /// two servers never both take a first attempt, and the row read is locked.
    func lookup(key: String) throws -> Stored? {
        guard let db = sql.sqlite else {
            try sql.lockUntilCommit("generation:" + key)
            return try sql.fetchOne(
                "SELECT payer_kind, payer_id, input_hash, status, attempts, response FROM generations WHERE idempotency_key = ?\(sql.forUpdate)",
                [key]
            ).map { row in
                Stored(
                    payerKind: try row.get(at: 0),
                    payerId: try row.get(at: 1),
                    inputHash: try row.get(at: 2),
                    status: try row.get(at: 3),
                    attempts: try row.get(at: 4),
                    response: try row.get(at: 5)
                )
            }
        }
        let lookup = try db.cachedStatement(
            sql: "SELECT payer_kind, payer_id, input_hash, status, attempts, response FROM generations WHERE idempotency_key = ?"
        )
        return try Row.fetchOne(lookup, arguments: [key]).map { row in
            Stored(payerKind: row[0], payerId: row[1], inputHash: row[2], status: row[3], attempts: row[4], response: row[5])
        }
    }

    /// Makes the own-key generations of `scope` `value` take turns until commit across servers
    /// (PostgreSQL's advisory lock), so the hourly count and the insert that follows it hold
    /// as on SQLite's single writer.
    func lockOwnKeyWindow(_ scope: OwnKeyScope, _ value: String) throws {
        try sql.lockUntilCommit("own-key:\(scope.column):" + value)
    }

    /// When the own-key generations of `scope` `value` created after `since` were created,
    /// oldest first, at most `limit`.
    func ownKeyCreationTimes(_ scope: OwnKeyScope, _ value: String, since: String, limit: Int) throws -> [String] {
        try sql.values(
            "SELECT created_at FROM generations WHERE payer_kind = 'own_key' AND \(scope.column) = ? AND created_at > ? ORDER BY created_at LIMIT ?",
            [value, StoredTimestamp(text: since), limit],
            as: StoredTimestamp.self
        ).map(\.text)
    }

    /// The first attempt of a request: reserved, or completed at once with `response`.
    func insertFirstAttempt(
        key: String,
        payerKind: String,
        payerId: String,
        inputHash: String,
        status: String,
        requestId: String?,
        provider: String?,
        model: String?,
        response: String?,
        at now: Date,
        clientKey: String?
    ) throws {
        guard let db = sql.sqlite else {
            try sql.execute(
                """
                INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, request_id, provider, model, response, created_at, updated_at, client_key)
                VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
                """,
                [key, payerKind, payerId, inputHash, status, requestId, provider, model, response, now, now, clientKey]
            )
            return
        }
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, request_id, provider, model, response, created_at, updated_at, client_key)
                VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        let stamp = SQLTimestamp.string(now)
        try insert.execute(arguments: [
            key, payerKind, payerId, inputHash, status, requestId, provider, model, response, stamp, stamp, clientKey,
        ])
    }

    /// A later attempt of a failed request.
    func updateForAttempt(
        key: String,
        attempt: Int,
        status: String,
        requestId: String?,
        provider: String?,
        model: String?,
        response: String?,
        at now: Date
    ) throws {
        try sql.execute(
            """
            UPDATE generations SET status = ?, attempts = ?, error = NULL, request_id = ?, provider = ?, model = ?, response = ?, updated_at = ?
            WHERE idempotency_key = ?
            """,
            [status, attempt, requestId, provider, model, response, now, key]
        )
    }

    /// Whether attempt `attempt` of `key` still holds its reservation. In a PostgreSQL write the
    /// row stays locked until commit: the answer that completes it and another server's sweep
    /// that would release it cannot both go through.
    func isReserved(key: String, attempt: Int) throws -> Bool {
        try sql.fetchOne(
            "SELECT 1 FROM generations WHERE idempotency_key = ? AND status = 'reserved' AND attempts = ?\(sql.forUpdate)",
            [key, attempt]
        ) != nil
    }

    func complete(key: String, provider: String, model: String, response: String, at now: Date) throws {
        try sql.execute(
            "UPDATE generations SET status = 'completed', provider = ?, model = ?, response = ?, updated_at = ? WHERE idempotency_key = ?",
            [provider, model, response, now, key]
        )
    }

    func fail(key: String, error: String, at now: Date) throws {
        try sql.execute("UPDATE generations SET status = 'failed', error = ?, updated_at = ? WHERE idempotency_key = ?", [error, now, key])
    }

    /// Reservations last touched before `cutoff`, oldest first, at most `limit`. On PostgreSQL
    /// they stay locked until the sweep commits and another server's sweep skips them
    /// (`FOR UPDATE SKIP LOCKED`): each abandoned reservation is released by one sweep, and one
    /// that dies mid-sweep leaves them, unlocked, to the next.
    func reserved(before cutoff: Date, limit: Int) throws -> [Reserved] {
        let claim = sql.isPostgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try sql.fetchAll(
            """
            SELECT idempotency_key, payer_kind, payer_id, attempts, request_id FROM generations
            WHERE status = 'reserved' AND updated_at < ? ORDER BY updated_at LIMIT ?\(claim)
            """,
            [cutoff, limit]
        ).map { row in
            Reserved(
                key: try row.get("idempotency_key"),
                payerKind: try row.get("payer_kind"),
                payerId: try row.get("payer_id"),
                attempts: try row.get("attempts"),
                requestId: try row.get("request_id")
            )
        }
    }

    /// Fails a reservation the sweep closed, if it is still reserved.
    func closeAbandoned(key: String, note: String, at now: Date) throws {
        try sql.execute(
            "UPDATE generations SET status = 'failed', error = ?, updated_at = ? WHERE idempotency_key = ? AND status = 'reserved'",
            [note, now, key]
        )
    }

    /// The status, last update and error of the newest generation of request `requestId`.
    func latest(requestId: String) throws -> (status: String, updatedAt: Date, error: String?)? {
        try sql.fetchOne(
            "SELECT status, updated_at, error FROM generations WHERE request_id = ? ORDER BY updated_at DESC LIMIT 1",
            [requestId]
        ).map { (try $0.get("status"), try $0.get("updated_at"), try $0.get("error")) }
    }

    /// Removes up to `limit` finished own-key generations created before `cutoff`; returns how many.
    func pruneOwnKey(createdBefore cutoff: Date, limit: Int) throws -> Int {
        try sql.execute(
            """
            DELETE FROM generations WHERE idempotency_key IN (
                SELECT idempotency_key FROM generations
                WHERE payer_kind = 'own_key' AND status != 'reserved' AND created_at < ? LIMIT ?)
            """,
            [cutoff, limit]
        )
    }

    /// Keys and stored `updated_at` of reservations older than `cutoff` (what `db check` flags).
    func staleReservations(before cutoff: Date) throws -> [(key: String, updatedAt: String?)] {
        try sql.fetchAll("SELECT idempotency_key, updated_at FROM generations WHERE status = 'reserved' AND updated_at < ?", [cutoff]).map {
            (try $0.get(at: 0), try $0.get(at: 1, as: StoredTimestamp?.self)?.text)
        }
    }

    /// The stored `updated_at` of the oldest reservation.
    func oldestReservationText() throws -> String? {
        try sql.value("SELECT MIN(updated_at) FROM generations WHERE status = 'reserved'", as: StoredTimestamp.self)?.text
    }
}
