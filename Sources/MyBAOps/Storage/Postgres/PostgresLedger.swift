import Foundation
import PostgresNIO

/// PostgreSQL's own check of the ledger, until `Ledger.verify` has PostgreSQL statements: the
/// ledger itself runs through `AppDatabase.open(postgres:)` and `database.ledger`, the same rules
/// as on SQLite.
extension PostgresEngine {
    /// Customers whose cached balance differs from the sum of their entries, or who are below
    /// zero anywhere, as `user: field expected … found …` lines; empty when the ledger is exact.
    public func balanceMismatches() async throws -> [String] {
        try await transaction(writing: false) { tx in
            let rows = try tx.postgresSession.rows(
                """
                SELECT b.user_id, b.tokens, b.tokens_used, b.tokens_purchased, b.tokens_transferred,
                    COALESCE(SUM(e.delta), 0)::bigint, COALESCE(SUM(e.used_delta), 0)::bigint,
                    COALESCE(SUM(e.purchased_delta), 0)::bigint, COALESCE(SUM(e.transferred_delta), 0)::bigint
                FROM balances b LEFT JOIN ledger_entries e ON e.user_id = b.user_id
                GROUP BY b.user_id, b.tokens, b.tokens_used, b.tokens_purchased, b.tokens_transferred
                """
            )
            var problems: [String] = []
            for row in rows {
                let (userId, tokens, used, purchased, transferred, sumTokens, sumUsed, sumPurchased, sumTransferred) =
                    try row.decode((String, Int, Int, Int, Int, Int, Int, Int, Int).self)
                for (field, cached, summed) in [
                    ("tokens", tokens, sumTokens), ("tokens_used", used, sumUsed), ("tokens_purchased", purchased, sumPurchased),
                    ("tokens_transferred", transferred, sumTransferred),
                ] where cached != summed || cached < 0 {
                    problems.append("\(userId): \(field) expected \(summed) found \(cached)")
                }
            }
            return problems
        }
    }
}
