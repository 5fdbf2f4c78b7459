import Foundation
import GRDB

/// Generation requests (`generations`): one row per request key, with what was charged and
/// what was answered, so a retried request is never charged twice and gets the same ticket.
struct GenerationStore {
    let db: Database

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

    /// On the generation hot path: a cached statement.
    func lookup(key: String) throws -> Stored? {
        let lookup = try db.cachedStatement(
            sql: "SELECT payer_kind, payer_id, input_hash, status, attempts, response FROM generations WHERE idempotency_key = ?"
        )
        return try Row.fetchOne(lookup, arguments: [key]).map { row in
            Stored(payerKind: row[0], payerId: row[1], inputHash: row[2], status: row[3], attempts: row[4], response: row[5])
        }
    }

    /// When the own-key generations of `scope` `value` created after `since` were created,
    /// oldest first, at most `limit`.
    func ownKeyCreationTimes(_ scope: OwnKeyScope, _ value: String, since: String, limit: Int) throws -> [String] {
        try String.fetchAll(
            db,
            sql:
                "SELECT created_at FROM generations WHERE payer_kind = 'own_key' AND \(scope.column) = ? AND created_at > ? ORDER BY created_at LIMIT ?",
            arguments: [value, since, limit]
        )
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
        try db.execute(
            sql: """
                UPDATE generations SET status = ?, attempts = ?, error = NULL, request_id = ?, provider = ?, model = ?, response = ?, updated_at = ?
                WHERE idempotency_key = ?
                """,
            arguments: [status, attempt, requestId, provider, model, response, SQLTimestamp.string(now), key]
        )
    }

    /// Whether attempt `attempt` of `key` still holds its reservation.
    func isReserved(key: String, attempt: Int) throws -> Bool {
        try Bool.fetchOne(
            db,
            sql: "SELECT 1 FROM generations WHERE idempotency_key = ? AND status = 'reserved' AND attempts = ?",
            arguments: [key, attempt]
        ) ?? false
    }

    func complete(key: String, provider: String, model: String, response: String, at now: Date) throws {
        try db.execute(
            sql: "UPDATE generations SET status = 'completed', provider = ?, model = ?, response = ?, updated_at = ? WHERE idempotency_key = ?",
            arguments: [provider, model, response, SQLTimestamp.string(now), key]
        )
    }

    func fail(key: String, error: String, at now: Date) throws {
        try db.execute(
            sql: "UPDATE generations SET status = 'failed', error = ?, updated_at = ? WHERE idempotency_key = ?",
            arguments: [error, SQLTimestamp.string(now), key]
        )
    }

    /// Reservations last touched before `cutoff`, oldest first, at most `limit`.
    func reserved(before cutoff: Date, limit: Int) throws -> [Reserved] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT idempotency_key, payer_kind, payer_id, attempts, request_id FROM generations
                WHERE status = 'reserved' AND updated_at < ? ORDER BY updated_at LIMIT ?
                """,
            arguments: [SQLTimestamp.string(cutoff), limit]
        ).map { row in
            Reserved(
                key: row["idempotency_key"],
                payerKind: row["payer_kind"],
                payerId: row["payer_id"],
                attempts: row["attempts"],
                requestId: row["request_id"]
            )
        }
    }

    /// Fails a reservation the sweep closed, if it is still reserved.
    func closeAbandoned(key: String, note: String, at now: Date) throws {
        try db.execute(
            sql: "UPDATE generations SET status = 'failed', error = ?, updated_at = ? WHERE idempotency_key = ? AND status = 'reserved'",
            arguments: [note, SQLTimestamp.string(now), key]
        )
    }

    /// The status, last update and error of the newest generation of request `requestId`.
    func latest(requestId: String) throws -> (status: String, updatedAt: Date, error: String?)? {
        try Row.fetchOne(
            db,
            sql: "SELECT status, updated_at, error FROM generations WHERE request_id = ? ORDER BY updated_at DESC LIMIT 1",
            arguments: [requestId]
        )
        .map { ($0["status"] as String, $0.timestamp("updated_at") ?? Date(), $0["error"] as String?) }
    }

    /// Removes up to `limit` finished own-key generations created before `cutoff`; returns how many.
    func pruneOwnKey(createdBefore cutoff: Date, limit: Int) throws -> Int {
        try db.execute(
            sql: """
                DELETE FROM generations WHERE idempotency_key IN (
                    SELECT idempotency_key FROM generations
                    WHERE payer_kind = 'own_key' AND status != 'reserved' AND created_at < ? LIMIT ?)
                """,
            arguments: [SQLTimestamp.string(cutoff), limit]
        )
        return db.changesCount
    }

    /// Keys and stored `updated_at` of reservations older than `cutoff` (what `db check` flags).
    func staleReservations(before cutoff: Date) throws -> [(key: String, updatedAt: String?)] {
        try Row.fetchAll(
            db,
            sql: "SELECT idempotency_key, updated_at FROM generations WHERE status = 'reserved' AND updated_at < ?",
            arguments: [SQLTimestamp.string(cutoff)]
        ).map { ($0[0], $0[1]) }
    }

    /// The stored `updated_at` of the oldest reservation.
    func oldestReservationText() throws -> String? {
        try String.fetchOne(db, sql: "SELECT MIN(updated_at) FROM generations WHERE status = 'reserved'")
    }
}
