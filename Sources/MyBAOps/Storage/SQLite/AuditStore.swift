import Foundation
import GRDB

/// The operator audit log (`audit_log`): every console mutation, written in the transaction of
/// its ledger entries.
struct AuditStore {
    let db: Database

    func insert(context: OperatorContext, userId: String?, entryIds: [Int64], idempotencyKey: String?, outcome: String) throws {
        try db.execute(
            sql: """
                INSERT INTO audit_log (at, operator, command, reason, user_id, entry_ids, idempotency_key, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                SQLTimestamp.string(Date()), context.operatorName, context.commandLine, context.reason, userId,
                entryIds.map(String.init).joined(separator: ","), idempotencyKey, outcome,
            ]
        )
    }

    /// The newest `limit` records, filtered by customer and operator.
    func records(limit: Int, userId: String?, operatorName: String?) throws -> [AuditRecord] {
        var sql = "SELECT * FROM audit_log WHERE 1 = 1"
        var arguments: StatementArguments = []
        if let userId {
            sql += " AND user_id = ?"
            arguments += [userId]
        }
        if let operatorName {
            sql += " AND operator = ?"
            arguments += [operatorName]
        }
        sql += " ORDER BY id DESC LIMIT ?"
        arguments += [limit]
        return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.record(row:))
    }

    /// Every record about `userId`.
    func records(userId: String) throws -> [AuditRecord] {
        try Row.fetchAll(db, sql: "SELECT * FROM audit_log WHERE user_id = ?", arguments: [userId]).map(Self.record(row:))
    }

    /// How many command lines contain `text`.
    func commandCount(containing text: String) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit_log WHERE instr(command, ?) > 0", arguments: [text]) ?? 0
    }

    /// Replaces `text` in every command line by `[forgotten]`.
    func scrubCommands(_ text: String) throws {
        try db.execute(
            sql: "UPDATE audit_log SET command = replace(command, ?, '[forgotten]') WHERE instr(command, ?) > 0",
            arguments: [text, text]
        )
    }

    private static func record(row: Row) -> AuditRecord {
        AuditRecord(
            id: row["id"],
            at: row.timestamp("at") ?? Date(timeIntervalSince1970: 0),
            operatorName: row["operator"],
            command: row["command"],
            reason: row["reason"],
            userId: row["user_id"],
            entryIds: ((row["entry_ids"] as String?) ?? "").split(separator: ",").compactMap { Int64($0) },
            idempotencyKey: row["idempotency_key"],
            outcome: row["outcome"]
        )
    }
}
