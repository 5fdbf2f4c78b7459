import Foundation

/// The operator audit log (`audit_log`): every console mutation, written in the transaction of
/// its ledger entries.
struct AuditStore {
    let sql: SQLConnection

    func insert(context: OperatorContext, userId: String?, entryIds: [Int64], idempotencyKey: String?, outcome: String) throws {
        try sql.execute(
            "INSERT INTO audit_log (at, operator, command, reason, user_id, entry_ids, idempotency_key, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                Date(), context.operatorName, context.commandLine, context.reason, userId,
                entryIds.map(String.init).joined(separator: ","), idempotencyKey, outcome,
            ]
        )
    }

    /// The newest `limit` records, filtered by customer and operator.
    func records(limit: Int, userId: String?, operatorName: String?) throws -> [AuditRecord] {
        var text = "SELECT * FROM audit_log WHERE 1 = 1"
        var arguments: [any SQLBindable] = []
        if let userId {
            text += " AND user_id = ?"
            arguments.append(userId)
        }
        if let operatorName {
            text += " AND operator = ?"
            arguments.append(operatorName)
        }
        text += " ORDER BY id DESC LIMIT ?"
        arguments.append(limit)
        return try sql.fetchAll(text, arguments).map(Self.record(row:))
    }

    /// Every record about `userId`.
    func records(userId: String) throws -> [AuditRecord] {
        try sql.fetchAll("SELECT * FROM audit_log WHERE user_id = ?", [userId]).map(Self.record(row:))
    }

    /// How many command lines contain `text`.
    func commandCount(containing text: String) throws -> Int {
        try sql.value("SELECT COUNT(*) FROM audit_log WHERE instr(command, ?) > 0", [text]) ?? 0
    }

    /// Replaces `text` in every command line by `[forgotten]`.
    func scrubCommands(_ text: String) throws {
        try sql.execute("UPDATE audit_log SET command = replace(command, ?, '[forgotten]') WHERE instr(command, ?) > 0", [text, text])
    }

    private static func record(row: SQLRow) throws -> AuditRecord {
        AuditRecord(
            id: try row.get("id"),
            at: try row.get("at"),
            operatorName: try row.get("operator"),
            command: try row.get("command"),
            reason: try row.get("reason"),
            userId: try row.get("user_id"),
            entryIds: (try row.get("entry_ids", as: String?.self) ?? "").split(separator: ",").compactMap { Int64($0) },
            idempotencyKey: try row.get("idempotency_key"),
            outcome: try row.get("outcome")
        )
    }
}
