import Foundation
import GRDB

extension AppDatabase {
    /// Gives back the token of every generation still `reserved` since before `cutoff`: its
    /// process died between charging and answering (a crash or a kill during the provider call).
    /// The row becomes `failed`, so a retry with the same key charges a new attempt. Returns how
    /// many were released.
    @discardableResult
    public func releaseAbandonedGenerations(reservedBefore cutoff: Date) async throws -> Int {
        try await immediateWrite { db in
            let now = Date().truncatedToMilliseconds
            let rows = try Row.fetchAll(db, sql: """
                SELECT idempotency_key, payer_kind, payer_id, attempts, request_id FROM generations
                WHERE status = 'reserved' AND updated_at < ?
                """, arguments: [SQLTimestamp.string(cutoff)])
            for row in rows {
                let key: String = row["idempotency_key"]
                let chargeKey = TicketGenerator.chargeKey(key, attempt: row["attempts"])
                let payerId: String = row["payer_id"]
                switch row["payer_kind"] as String {
                case "account":
                    if try LedgerStatements.entry(idempotencyKey: chargeKey, in: db) != nil {
                        _ = try Self.post(
                            LedgerPosting(userId: payerId, kind: .release, delta: 1, idempotencyKey: "release:\(chargeKey)", reference: key,
                                          actor: "system", reason: "generation abandoned", requestId: row["request_id"]),
                            now: now, in: db)
                    }
                case "session":
                    _ = try Self.releaseSessionCharge(sessionId: payerId, chargeKey: chargeKey, requestId: row["request_id"], now: now, in: db)
                default:
                    break
                }
                try db.execute(sql: "UPDATE generations SET status = 'failed', error = 'abandoned: the server stopped before answering', updated_at = ? WHERE idempotency_key = ?",
                               arguments: [SQLTimestamp.string(now), key])
            }
            return rows.count
        }
    }
}
