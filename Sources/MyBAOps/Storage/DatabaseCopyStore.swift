import Foundation
import GRDB

/// Whole tables moved between backends (`db copy`): read from SQLite as stored, written to
/// PostgreSQL converted to each column's type there. The only SQL that names every table.
struct DatabaseCopyStore {
    let sql: SQLConnection

    /// MyBA's tables, parents before the tables whose foreign keys name them.
    static let tables = [
        "customers", "balances", "ledger_entries", "anonymous_sessions", "anonymous_charges", "generations", "webhook_events",
        "webhook_event_entries", "payments", "failed_refunds", "disputes", "checkout_sessions", "stripe_outbox", "stripe_customer_unlinks",
        "legacy_balance_holds", "plan_catalogs", "audit_log",
    ]

    /// The serial columns whose sequences must continue after the copied ids.
    static let serials = [
        ("ledger_entries", "id"), ("anonymous_charges", "id"), ("checkout_sessions", "seq"), ("stripe_customer_unlinks", "id"),
        ("plan_catalogs", "version"), ("audit_log", "id"),
    ]

    /// One table as stored: its column names and rows.
    struct Table: Sendable {
        var name: String
        var columns: [String]
        var rows: [[CopiedValue]]
    }

    /// A stored value, before it is given the target column's type.
    enum CopiedValue: Sendable {
        case null
        case integer(Int64)
        case real(Double)
        case text(String)
    }

    /// Every row of `table` (SQLite), in primary-key order.
    func export(_ table: String) throws -> Table {
        let db = try StorageTransaction.sqlite(sql.sqlite, for: "db copy's source")
        let columns = try db.columns(in: table).map(\.name)
        let rows = try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\" ORDER BY rowid").map { row in
            try columns.map { column -> CopiedValue in
                let value: DatabaseValue = row[column]
                switch value.storage {
                case .null: return .null
                case .int64(let number): return .integer(number)
                case .double(let number): return .real(number)
                case .string(let text): return .text(text)
                case .blob: throw DatabaseCopyError.unexpectedValue(table: table, column: column, value: "a blob")
                }
            }
        }
        return Table(name: table, columns: columns, rows: rows)
    }

    /// The PostgreSQL type of each column of `table` (`information_schema`'s `data_type`).
    func columnTypes(_ table: String) throws -> [String: String] {
        var types: [String: String] = [:]
        for row in try sql.fetchAll(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?",
            [table]
        ) {
            types[try row.get("column_name")] = try row.get("data_type")
        }
        return types
    }

    /// Inserts `table`'s rows (PostgreSQL), 200 to a statement, each value given its column's type.
    func insert(_ table: Table) throws {
        let types = try columnTypes(table.name)
        for column in table.columns where types[column] == nil {
            throw DatabaseCopyError.unexpectedValue(table: table.name, column: column, value: "a column the PostgreSQL schema lacks")
        }
        let names = table.columns.map { "\"\($0)\"" }.joined(separator: ", ")
        let placeholders = "(" + Array(repeating: "?", count: table.columns.count).joined(separator: ", ") + ")"
        var start = 0
        while start < table.rows.count {
            let batch = table.rows[start..<min(start + 200, table.rows.count)]
            var arguments: [any SQLBindable] = []
            arguments.reserveCapacity(batch.count * table.columns.count)
            for row in batch {
                for (column, value) in zip(table.columns, row) {
                    arguments.append(try Self.converted(value, to: types[column]!, table: table.name, column: column))
                }
            }
            try sql.execute(
                "INSERT INTO \(table.name) (\(names)) VALUES " + Array(repeating: placeholders, count: batch.count).joined(separator: ", "),
                arguments
            )
            start += batch.count
        }
    }

    /// The last id SQLite handed out per table (`sqlite_sequence`, kept by AUTOINCREMENT): ids of
    /// rows since deleted (reaped charges) are never handed out again, on either side.
    func sqliteSequences() throws -> [String: Int64] {
        let db = try StorageTransaction.sqlite(sql.sqlite, for: "db copy's source")
        guard try db.tableExists("sqlite_sequence") else { return [:] }
        var sequences: [String: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT name, seq FROM sqlite_sequence") { sequences[row["name"]] = row["seq"] }
        return sequences
    }

    /// Moves each serial column's sequence past the copied ids and past SQLite's own sequence,
    /// so new rows neither collide nor reuse an id.
    func continueSequences(after sqliteSequences: [String: Int64]) throws {
        for (table, column) in Self.serials {
            let copied: Int64 = try sql.value("SELECT MAX(\(column)) FROM \(table)") ?? 0
            let last = max(copied, sqliteSequences[table] ?? 0)
            if last > 0 {
                try sql.execute("SELECT setval(pg_get_serial_sequence('\(table)', '\(column)'), ?)", [last])
            }
        }
    }

    private static func converted(_ value: CopiedValue, to type: String, table: String, column: String) throws -> SQLValue {
        func unexpected() -> DatabaseCopyError {
            DatabaseCopyError.unexpectedValue(table: table, column: column, value: "\(value) for a \(type) column")
        }
        switch (value, type) {
        case (.null, _): return .null
        case (.integer(let number), "bigint"), (.integer(let number), "integer"): return .integer(number)
        case (.text(let text), "bigint"):
            guard let number = Int64(text) else { throw unexpected() }
            return .integer(number)
        case (.integer(let number), "boolean"): return .bool(number != 0)
        case (.text(let text), "timestamp with time zone"):
            guard let date = SQLTimestamp.date(text) else { throw unexpected() }
            return .date(date)
        case (.text(let text), "text"): return .text(text)
        case (.integer(let number), "text"): return .text(String(number))
        default: throw unexpected()
        }
    }

    /// Holds off another copy into the same database until this one commits.
    func lockTarget() throws {
        try sql.execute("LOCK TABLE customers IN EXCLUSIVE MODE")
    }

    /// Entries, the last entry id, and every balance: what the copy must reproduce exactly.
    func ledgerFigures() throws -> LedgerFigures {
        let ledger = try MaintenanceStore(sql: sql).ledgerEntryCountAndLastId()
        return LedgerFigures(
            entries: ledger.count,
            lastEntryId: ledger.lastId,
            tokensOutstanding: try sql.value("SELECT COALESCE(SUM(tokens), 0) FROM balances") ?? 0,
            balances: Dictionary(
                uniqueKeysWithValues: try sql.fetchAll("SELECT * FROM balances").map { row in
                    let balance = try row.balance()
                    return (balance.userId, [balance.tokens, balance.tokensUsed, balance.tokensPurchased, balance.tokensTransferred])
                }
            )
        )
    }
}

extension SQLValue: SQLBindable {
    var sqlValue: SQLValue { self }
}
