import Foundation

/// The ledger's figures a copy must reproduce.
public struct LedgerFigures: Codable, Equatable, Sendable {
    public var entries: Int
    public var lastEntryId: Int64
    public var tokensOutstanding: Int
    /// Per user: tokens, used, purchased, transferred.
    public var balances: [String: [Int]]
}

/// What `db copy` did.
public struct DatabaseCopyReport: Codable, Equatable, Sendable {
    public var source: String
    public var target: String
    /// Rows copied, per table.
    public var rows: [String: Int]
    public var sourceFigures: LedgerFigures
    public var targetFigures: LedgerFigures
    /// `ledger verify` on each side after the copy (violations; empty when clean). The source
    /// may have moved on if servers still wrote to it.
    public var sourceViolations: [String]
    public var targetViolations: [String]
}

/// Why a copy was refused or undone.
public enum DatabaseCopyError: CodedError, Equatable {
    case notSQLiteToPostgres
    case targetNotEmpty([String])
    case unexpectedValue(table: String, column: String, value: String)
    case figuresDiffer(String)

    public var code: String {
        switch self {
        case .notSQLiteToPostgres: return "wrong_direction"
        case .targetNotEmpty: return "target_not_empty"
        case .unexpectedValue: return "unexpected_value"
        case .figuresDiffer: return "copy_differs"
        }
    }

    public var description: String {
        switch self {
        case .notSQLiteToPostgres:
            return "db copy moves an SQLite file (--from PATH) to PostgreSQL (--to postgres://…)"
        case .targetNotEmpty(let tables):
            return "the target is not empty (\(tables.joined(separator: ", "))): copy into a new, empty database; nothing was changed"
        case .unexpectedValue(let table, let column, let value):
            return "\(table).\(column) holds \(value); nothing was copied"
        case .figuresDiffer(let detail):
            return "the copy differs from the source (\(detail)); it was rolled back, nothing was kept"
        }
    }
}

extension AppDatabase {
    /// Copies this SQLite database into the empty PostgreSQL database `target`: one read
    /// snapshot of the source, every table written in one PostgreSQL transaction, which commits
    /// only if the copy's entry count, last entry id and every balance equal the snapshot's.
    /// Then `ledger verify` runs on both. Refuses a target holding any row. The copy's audit log
    /// gains one record saying where it came from.
    public func copy(to target: AppDatabase, by context: OperatorContext) async throws -> DatabaseCopyReport {
        guard postgres == nil, target.postgres != nil else { throw DatabaseCopyError.notSQLiteToPostgres }
        // Refused before the source is read, and again under the table lock below.
        let occupied = try await target.read { tx in try Self.occupiedTables(in: tx) }
        guard occupied.isEmpty else { throw DatabaseCopyError.targetNotEmpty(occupied) }
        let (tables, sourceFigures, sequences) = try await read { tx in
            let store = DatabaseCopyStore(sql: tx.sql)
            return (try DatabaseCopyStore.tables.map(store.export), try store.ledgerFigures(), try store.sqliteSequences())
        }
        let targetFigures = try await target.write { tx in
            let store = DatabaseCopyStore(sql: tx.sql)
            // Another `db copy` racing this one: the second waits, then finds rows and stops.
            try store.lockTarget()
            let occupied = try Self.occupiedTables(in: tx)
            guard occupied.isEmpty else { throw DatabaseCopyError.targetNotEmpty(occupied) }
            for table in tables { try store.insert(table) }
            try store.continueSequences(after: sequences)
            let figures = try store.ledgerFigures()
            if figures != sourceFigures {
                let differing = Set(figures.balances.keys).union(sourceFigures.balances.keys).filter {
                    figures.balances[$0] != sourceFigures.balances[$0]
                }
                throw DatabaseCopyError.figuresDiffer(
                    "entries \(sourceFigures.entries) → \(figures.entries), last id \(sourceFigures.lastEntryId) → \(figures.lastEntryId), "
                        + "\(differing.count) balance(s) differ"
                )
            }
            try AuditLog.insert(
                context: context,
                userId: nil,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "copied \(sourceFigures.entries) ledger entries (last #\(sourceFigures.lastEntryId)) from \(path)",
                in: tx
            )
            return figures
        }
        let sourceReport = try await ledger.verify()
        let targetReport = try await target.ledger.verify()
        return DatabaseCopyReport(
            source: path,
            target: target.path,
            rows: Dictionary(uniqueKeysWithValues: tables.map { ($0.name, $0.rows.count) }),
            sourceFigures: sourceFigures,
            targetFigures: targetFigures,
            sourceViolations: sourceReport.violations.map { "\($0.kind.rawValue) \($0.userId): \($0.message)" },
            targetViolations: targetReport.violations.map { "\($0.kind.rawValue) \($0.userId): \($0.message)" }
        )
    }

    /// The tables of `tx`'s database holding rows, as `table: N rows` (the migrations' own table
    /// aside).
    private static func occupiedTables(in tx: StorageTransaction) throws -> [String] {
        try tx.maintenance.rowCounts().filter { $0.key != "myba_migrations" && $0.value > 0 }.map { "\($0.key): \($0.value) rows" }.sorted()
    }
}
