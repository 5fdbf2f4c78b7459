import Foundation
import GRDB
import PostgresNIO

/// One connection inside one transaction, on either backend: the stores write each statement
/// once, in the SQL both SQLite and PostgreSQL understand, with `?` for every bound value.
///
/// What differs is kept here: placeholders become `$1…` on PostgreSQL, dates are bound as
/// `SQLTimestamp` text on SQLite and as `timestamptz` on PostgreSQL, and the row count a
/// statement changed comes from SQLite's `changes()` or PostgreSQL's command tag. PostgreSQL
/// also gets SQLite's `instr(haystack, needle)` as a function (its migrations create it), so
/// the same text searches run on both. The few statements that cannot be shared (row locks,
/// leases) ask `isPostgres`.
struct SQLConnection {
    let sqlite: Database?
    let postgres: PostgresSession?

    var isPostgres: Bool { postgres != nil }

    /// In a PostgreSQL write transaction: ` FOR UPDATE`, to lock the rows a rule reads before
    /// changing them (what SQLite's single writer gives every transaction); empty otherwise.
    var forUpdate: String { postgres?.writing == true ? " FOR UPDATE" : "" }

    /// In a PostgreSQL write: waits for, then holds until commit, the transaction-scoped advisory
    /// lock named `key`, so the rules that take it run one at a time across servers even when the
    /// row they would lock does not exist yet. Nothing on SQLite, whose single writer already
    /// runs every write alone, nor in a read.
    func lockUntilCommit(_ key: String) throws {
        guard postgres?.writing == true else { return }
        try execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [key])
    }

    /// Runs `sql`; returns how many rows it inserted, updated or deleted.
    @discardableResult
    func execute(_ sql: String, _ arguments: [any SQLBindable] = []) throws -> Int {
        if let postgres {
            return try postgres.result(Self.postgresQuery(sql, arguments)).metadata.rows ?? 0
        }
        let db = try StorageTransaction.sqlite(sqlite, for: "SQL")
        try db.execute(sql: sql, arguments: Self.sqliteArguments(arguments))
        return db.changesCount
    }

    func fetchAll(_ sql: String, _ arguments: [any SQLBindable] = []) throws -> [SQLRow] {
        if let postgres {
            return try postgres.result(Self.postgresQuery(sql, arguments)).rows.map { SQLRow(postgres: $0.makeRandomAccess()) }
        }
        let db = try StorageTransaction.sqlite(sqlite, for: "SQL")
        return try Row.fetchAll(db, sql: sql, arguments: Self.sqliteArguments(arguments)).map { SQLRow(sqlite: $0) }
    }

    func fetchOne(_ sql: String, _ arguments: [any SQLBindable] = []) throws -> SQLRow? {
        try fetchAll(sql, arguments).first
    }

    /// The first column of the first row; nil when there is no row or it is NULL.
    func value<T: SQLColumn>(_ sql: String, _ arguments: [any SQLBindable] = [], as type: T.Type = T.self) throws -> T? {
        guard let row = try fetchOne(sql, arguments) else { return nil }
        return try row.get(at: 0, as: T?.self)
    }

    /// The first column of every row.
    func values<T: SQLColumn>(_ sql: String, _ arguments: [any SQLBindable] = [], as type: T.Type = T.self) throws -> [T] {
        try fetchAll(sql, arguments).map { try $0.get(at: 0, as: T.self) }
    }

    /// Runs `body` in a savepoint: when it throws, only its changes are undone.
    func savepoint(_ body: () throws -> Void) throws {
        if let postgres {
            try postgres.execute("SAVEPOINT myba_step")
            do {
                try body()
            } catch {
                try postgres.execute("ROLLBACK TO SAVEPOINT myba_step")
                try postgres.execute("RELEASE SAVEPOINT myba_step")
                throw error
            }
            try postgres.execute("RELEASE SAVEPOINT myba_step")
            return
        }
        try StorageTransaction.sqlite(sqlite, for: "savepoints").inSavepoint {
            try body()
            return .commit
        }
    }

    static func sqliteArguments(_ arguments: [any SQLBindable]) -> StatementArguments {
        StatementArguments(
            arguments.map { argument -> (any DatabaseValueConvertible)? in
                switch argument.sqlValue {
                case .null: return nil
                case .text(let text): return text
                case .integer(let number): return number
                case .bool(let flag): return flag
                case .date(let date): return SQLTimestamp.string(date)
                }
            }
        )
    }

    /// `sql` with `$1…` for its `?`s (none of MyBA's statements has a `?` inside a literal).
    static func postgresQuery(_ sql: String, _ arguments: [any SQLBindable]) throws -> PostgresQuery {
        var text = ""
        text.reserveCapacity(sql.utf8.count + 8)
        var index = 0
        for character in sql {
            if character == "?" {
                index += 1
                text += "$\(index)"
            } else {
                text.append(character)
            }
        }
        guard index == arguments.count else {
            throw LedgerError.invalidPosting("statement has \(index) placeholders for \(arguments.count) values")
        }
        var binds = PostgresBindings(capacity: arguments.count)
        for argument in arguments {
            switch argument.sqlValue {
            case .null: binds.appendNull()
            case .text(let value): binds.append(value, context: .default)
            case .integer(let value): binds.append(value, context: .default)
            case .bool(let value): binds.append(value, context: .default)
            case .date(let value): binds.append(value.truncatedToMilliseconds, context: .default)
            }
        }
        return PostgresQuery(unsafeSQL: text, binds: binds)
    }
}

/// A value bound to a statement on either backend.
enum SQLValue: Sendable {
    case null
    case text(String)
    case integer(Int64)
    case bool(Bool)
    /// SQLite stores `SQLTimestamp` text, PostgreSQL a `timestamptz`.
    case date(Date)
}

/// What can be bound to a `?`.
protocol SQLBindable {
    var sqlValue: SQLValue { get }
}

extension String: SQLBindable { var sqlValue: SQLValue { .text(self) } }
extension Int: SQLBindable { var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Int64: SQLBindable { var sqlValue: SQLValue { .integer(self) } }
extension Bool: SQLBindable { var sqlValue: SQLValue { .bool(self) } }
extension Date: SQLBindable { var sqlValue: SQLValue { .date(self) } }
extension Optional: SQLBindable where Wrapped: SQLBindable {
    var sqlValue: SQLValue { map(\.sqlValue) ?? .null }
}

/// A timestamp as SQLite stores it (`SQLTimestamp` text), bound as that text on SQLite and as
/// the date it names on PostgreSQL; read back, the same text on both. For rules that compare
/// stored timestamps as text (the rate-limit windows).
struct StoredTimestamp: SQLBindable, SQLColumn {
    var text: String

    var sqlValue: SQLValue {
        guard let date = SQLTimestamp.date(text) else { return .text(text) }
        return .date(date)
    }

    static func fromSQLite(_ value: DatabaseValue) throws -> StoredTimestamp {
        StoredTimestamp(text: try String.fromSQLite(value))
    }

    static func fromPostgres(_ cell: PostgresCell) throws -> StoredTimestamp {
        StoredTimestamp(text: SQLTimestamp.string(try Date.fromPostgres(cell)))
    }
}

/// A column value readable from either backend.
protocol SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> Self
    static func fromPostgres(_ cell: PostgresCell) throws -> Self
}

/// A column that held something else than its reader expected.
struct SQLColumnMismatch: Error, CustomStringConvertible {
    var expected: String
    var found: String
    var description: String { "expected \(expected) in a column, found \(found)" }
}

extension String: SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> String {
        guard let text = String.fromDatabaseValue(value) else { throw SQLColumnMismatch(expected: "text", found: "\(value)") }
        return text
    }

    static func fromPostgres(_ cell: PostgresCell) throws -> String { try cell.decode(String.self) }
}

extension Int64: SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> Int64 {
        guard let number = Int64.fromDatabaseValue(value) else { throw SQLColumnMismatch(expected: "an integer", found: "\(value)") }
        return number
    }

    /// PostgreSQL's `SUM` of `bigint`s is `numeric`.
    static func fromPostgres(_ cell: PostgresCell) throws -> Int64 {
        if cell.dataType == .numeric { return Int64(truncating: try cell.decode(Decimal.self) as NSDecimalNumber) }
        return try cell.decode(Int64.self)
    }
}

extension Int: SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> Int { Int(try Int64.fromSQLite(value)) }
    static func fromPostgres(_ cell: PostgresCell) throws -> Int { Int(try Int64.fromPostgres(cell)) }
}

extension Bool: SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> Bool {
        guard let flag = Bool.fromDatabaseValue(value) else { throw SQLColumnMismatch(expected: "a boolean", found: "\(value)") }
        return flag
    }

    static func fromPostgres(_ cell: PostgresCell) throws -> Bool {
        if cell.dataType == .bool { return try cell.decode(Bool.self) }
        return try Int64.fromPostgres(cell) != 0
    }
}

extension Date: SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> Date {
        guard let date = SQLTimestamp.date(value) else { throw SQLColumnMismatch(expected: "a timestamp", found: "\(value)") }
        return date
    }

    static func fromPostgres(_ cell: PostgresCell) throws -> Date { SQLTimestamp.fromPostgres(try cell.decode(Date.self)) }
}

extension Optional: SQLColumn where Wrapped: SQLColumn {
    static func fromSQLite(_ value: DatabaseValue) throws -> Wrapped? {
        value.isNull ? nil : try Wrapped.fromSQLite(value)
    }

    static func fromPostgres(_ cell: PostgresCell) throws -> Wrapped? {
        cell.bytes == nil ? nil : try Wrapped.fromPostgres(cell)
    }
}

/// One row of a result, from either backend.
struct SQLRow {
    private let sqlite: Row?
    private let postgres: PostgresRandomAccessRow?

    init(sqlite: Row) {
        self.sqlite = sqlite
        postgres = nil
    }

    init(postgres: PostgresRandomAccessRow) {
        sqlite = nil
        self.postgres = postgres
    }

    func get<T: SQLColumn>(_ column: String, as type: T.Type = T.self) throws -> T {
        if let postgres { return try T.fromPostgres(postgres[column]) }
        return try T.fromSQLite(sqlite![column] as DatabaseValue? ?? .null)
    }

    func get<T: SQLColumn>(at index: Int, as type: T.Type = T.self) throws -> T {
        if let postgres { return try T.fromPostgres(postgres[index]) }
        return try T.fromSQLite(sqlite![index] as DatabaseValue)
    }

    /// A date column, nil when NULL or unreadable (as GRDB's `Row.timestamp`).
    func timestamp(_ column: String) -> Date? {
        (try? get(column, as: Date?.self)) ?? nil
    }

    /// The row as a ledger entry (`SELECT * FROM ledger_entries`). Here and in `customer()` and
    /// `balance()`, a required date that cannot be read reads as 1970, as SQLite's records always
    /// have: `verify` and the console still show the row.
    func ledgerEntry() throws -> LedgerEntry {
        let kindName: String = try get("kind")
        guard let kind = LedgerEntryKind(rawValue: kindName) else {
            throw LedgerError.invalidPosting("stored entry has unknown kind \(kindName)")
        }
        return LedgerEntry(
            id: try get("id"),
            userId: try get("user_id"),
            kind: kind,
            delta: try get("delta"),
            usedDelta: try get("used_delta"),
            purchasedDelta: try get("purchased_delta"),
            transferredDelta: try get("transferred_delta"),
            setsLastPurchase: try get("sets_last_purchase"),
            setsTransferDate: try get("sets_transfer_date"),
            idempotencyKey: try get("idempotency_key"),
            reference: try get("reference"),
            actor: try get("actor"),
            reason: try get("reason"),
            requestId: try get("request_id"),
            createdAt: timestamp("created_at") ?? Date(timeIntervalSince1970: 0),
            shortfall: try get("shortfall", as: Int?.self) ?? 0
        )
    }

    func customer() throws -> Customer {
        Customer(
            userId: try get("user_id"),
            email: try get("email"),
            stripeCustomerId: try get("stripe_customer_id"),
            createdAt: timestamp("created_at") ?? Date(timeIntervalSince1970: 0),
            deletedAt: try get("deleted_at")
        )
    }

    func balance() throws -> Balance {
        Balance(
            userId: try get("user_id"),
            tokens: try get("tokens"),
            tokensUsed: try get("tokens_used"),
            tokensPurchased: try get("tokens_purchased"),
            tokensTransferred: try get("tokens_transferred"),
            lastPurchase: try get("last_purchase"),
            transferDate: try get("transfer_date"),
            updatedAt: timestamp("updated_at") ?? Date(timeIntervalSince1970: 0)
        )
    }
}
