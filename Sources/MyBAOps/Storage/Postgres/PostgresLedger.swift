import Foundation
import PostgresNIO

/// The ledger on PostgreSQL: the same rules as on SQLite (`Ledger`'s `post` and `openAccount`,
/// run against the same `StorageTransaction` stores), in PostgreSQL's transactions.
///
/// This is the first part of the PostgreSQL backend (issue 20): the ledger and its Stripe
/// outbox rows. The other concerns answer `StorageError.notOnPostgres` until their stores are
/// written, which is why the server and the console do not accept a PostgreSQL URL yet.
extension PostgresEngine {
    /// Appends `posting` and moves the balance in the same transaction (see `Ledger.post`).
    public func post(_ posting: LedgerPosting) async throws -> PostingResult {
        try Ledger.validate(posting)
        return try await transaction(writing: true) { tx in try Ledger.post(posting, now: Date(), in: tx) }
    }

    /// Spends `amount` tokens, never taking the balance below zero (see `Ledger.consume`).
    public func consume(
        userId: String,
        amount: Int = 1,
        idempotencyKey: String,
        reference: String? = nil,
        actor: String,
        requestId: String? = nil
    ) async throws -> PostingResult {
        try await post(
            Ledger.consumePosting(
                userId: userId,
                amount: amount,
                idempotencyKey: idempotencyKey,
                reference: reference,
                actor: actor,
                requestId: requestId
            )
        )
    }

    /// Creates the customer if unknown and grants the welcome tokens once (see `Ledger.openAccount`).
    public func openAccount(userId: String, email: String?, actor: String, requestId: String? = nil) async throws -> PostingResult {
        try Ledger.validateUserId(userId)
        return try await transaction(writing: true) { tx in
            try Ledger.openAccount(userId: userId, email: email, actor: actor, requestId: requestId, now: Date().truncatedToMilliseconds, in: tx)
        }
    }

    /// The balance of `userId`, or nil for an unknown customer.
    public func balance(userId: String) async throws -> Balance? {
        try await transaction(writing: false) { tx in try tx.ledger.balance(userId: userId) }
    }

    /// The newest entries of `userId`, newest first.
    public func entries(userId: String, limit: Int) async throws -> [LedgerEntry] {
        try await transaction(writing: false) { tx in try tx.ledger.entries(userId: userId, limit: limit) }
    }

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
