import Foundation
import GRDB

/// The ledger's tables: `customers`, `balances` and the append-only `ledger_entries`.
///
/// The hot path (`entry`, `balance`, `insertIfNewKey`, `update`) runs cached prepared statements
/// with hand-written row mapping: a consume runs four statements and no Codable round trip, which
/// keeps the ledger close to the speed of a bare UPDATE transaction (see BENCHMARKS.md).
struct LedgerStore {
    let sqlite: Database?
    /// On PostgreSQL the same statements run through `sql`; a few add what only PostgreSQL
    /// needs (the balance row's lock, the entry's notification).
    let postgres: PostgresSession?

    /// SQLite's connection, for the hot path's cached statements and GRDB's records.
    private var db: Database {
        get throws { try StorageTransaction.sqlite(sqlite, for: "this ledger query") }
    }

    private static let insertEntry = """
        INSERT INTO ledger_entries (user_id, kind, delta, used_delta, purchased_delta, transferred_delta,
            sets_last_purchase, sets_transfer_date, idempotency_key, reference, actor, reason, request_id, created_at, shortfall)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (idempotency_key) DO NOTHING
        """

    private static let updateBalance = """
        UPDATE balances SET tokens = ?, tokens_used = ?, tokens_purchased = ?, tokens_transferred = ?,
            last_purchase = ?, transfer_date = ?, updated_at = ?
        WHERE user_id = ?
        """

    /// The connection for the statements both backends share.
    private var sql: SQLConnection { SQLConnection(sqlite: sqlite, postgres: postgres) }

    func entry(idempotencyKey: String) throws -> LedgerEntry? {
        guard sqlite != nil else {
            return try sql.fetchOne("SELECT * FROM ledger_entries WHERE idempotency_key = ?", [idempotencyKey])?.ledgerEntry()
        }
        let statement = try db.cachedStatement(sql: "SELECT * FROM ledger_entries WHERE idempotency_key = ?")
        return try LedgerEntry.fetchOne(statement, arguments: [idempotencyKey])
    }

    /// The balance of `userId`. In a PostgreSQL write the row is locked until commit: writers of
    /// one account (on any server) take their turns on it, and each sees the balance the
    /// previous one left, which is what the ledger's check relies on.
    func balance(userId: String) throws -> Balance? {
        guard sqlite != nil else { return try sql.fetchOne("SELECT * FROM balances WHERE user_id = ?\(sql.forUpdate)", [userId])?.balance() }
        let statement = try db.cachedStatement(
            sql: """
                SELECT tokens, tokens_used, tokens_purchased, tokens_transferred, last_purchase, transfer_date, updated_at
                FROM balances WHERE user_id = ?
                """
        )
        guard let row = try Row.fetchOne(statement, arguments: [userId]) else { return nil }
        return Balance(
            userId: userId,
            tokens: row[0],
            tokensUsed: row[1],
            tokensPurchased: row[2],
            tokensTransferred: row[3],
            lastPurchase: row.timestamp(at: 4),
            transferDate: row.timestamp(at: 5),
            updatedAt: row.timestamp(at: 6) ?? Date(timeIntervalSince1970: 0)
        )
    }

    /// Inserts `entry` unless its idempotency key exists; returns whether it was inserted. The
    /// unique index answers the existence question during the insert itself, so the common case
    /// (a new key) costs no separate lookup.
    func insertIfNewKey(_ entry: inout LedgerEntry) throws -> Bool {
        let arguments: [any SQLBindable] = [
            entry.userId, entry.kind.rawValue, entry.delta, entry.usedDelta, entry.purchasedDelta, entry.transferredDelta,
            entry.setsLastPurchase, entry.setsTransferDate, entry.idempotencyKey, entry.reference, entry.actor, entry.reason,
            entry.requestId, entry.createdAt, entry.shortfall,
        ]
        guard let db = sqlite else {
            // A concurrent transaction inserting the same key makes this one wait for its
            // outcome. The notification tells every server listening on this database
            // (`PostgresEngine.relayBalanceChanges`); PostgreSQL delivers it on commit only.
            guard
                let row = try sql.fetchOne(
                    Self.insertEntry + " RETURNING id, pg_notify(?, user_id)",
                    arguments + [PostgresEngine.balanceChannel]
                )
            else { return false }
            entry.id = try row.get("id")
            sql.postgres?.afterCommit(Self.announce(entry))
            return true
        }
        let statement = try db.cachedStatement(sql: Self.insertEntry)
        try statement.execute(arguments: SQLConnection.sqliteArguments(arguments))
        guard db.changesCount == 1 else { return false }
        entry.id = db.lastInsertedRowID
        db.afterCommit(Self.announce(entry))
        return true
    }

    /// What a new entry tells once it committed: the metrics, and this process's listeners to
    /// the account's balance (the web page's stream).
    private static func announce(_ entry: LedgerEntry) -> @Sendable () -> Void {
        let kind = entry.kind
        let delta = entry.delta
        let userId = entry.userId
        return {
            MyBAMetrics.recordCommittedEntry(kind: kind, delta: delta)
            BalanceChanges.shared.notify(userId: userId)
        }
    }

    func update(_ balance: Balance) throws {
        let arguments: [any SQLBindable] = [
            balance.tokens, balance.tokensUsed, balance.tokensPurchased, balance.tokensTransferred, balance.lastPurchase,
            balance.transferDate, balance.updatedAt, balance.userId,
        ]
        guard let db = sqlite else {
            try sql.execute(Self.updateBalance, arguments)
            return
        }
        try db.cachedStatement(sql: Self.updateBalance).execute(arguments: SQLConnection.sqliteArguments(arguments))
    }

    // MARK: Customers

    func customer(userId: String) throws -> Customer? {
        guard sqlite != nil else { return try sql.fetchOne("SELECT * FROM customers WHERE user_id = ?", [userId])?.customer() }
        return try Customer.fetchOne(db, key: userId)
    }

    /// Creates the customer and its zero balance when missing (filling in an email the stored
    /// customer lacks); returns the stored customer.
    @discardableResult
    func createCustomerIfMissing(userId: String, email: String?, now: Date) throws -> Customer {
        guard sqlite != nil else {
            // Two servers opening one account at once: one inserts, the other finds it.
            try sql.lockUntilCommit(Self.accountLock(userId))
            let inserted = try sql.fetchOne(
                "INSERT INTO customers (user_id, email, created_at) VALUES (?, ?, ?) ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
                [userId, email, now]
            )
            if inserted != nil {
                try sql.execute("INSERT INTO balances (user_id, updated_at) VALUES (?, ?)", [userId, now])
            } else if let email {
                try sql.execute("UPDATE customers SET email = ? WHERE user_id = ? AND email IS NULL", [email, userId])
            }
            guard let customer = try customer(userId: userId) else { throw LedgerError.unknownCustomer(userId: userId) }
            return customer
        }
        if let existing = try Customer.fetchOne(db, key: userId) {
            if existing.email == nil, let email {
                var updated = existing
                updated.email = email
                try updated.update(db)
                return updated
            }
            return existing
        }
        let customer = Customer(userId: userId, email: email, createdAt: now)
        try customer.insert(db)
        try Balance.empty(userId: userId, at: now).insert(db)
        return customer
    }

    /// Makes the rules that open `userId`'s account, or decide from its being empty, take turns
    /// until commit (PostgreSQL's advisory lock; SQLite's single writer already does), and locks
    /// its balance row when there is one.
    func lockAccount(userId: String) throws {
        guard sql.postgres?.writing == true else { return }
        try sql.lockUntilCommit(Self.accountLock(userId))
        _ = try balance(userId: userId)
    }

    /// The advisory lock of opening `userId`'s account.
    private static func accountLock(_ userId: String) -> String { "account:" + userId }

    /// Whether `userId` is a customer marked deleted.
    func isDeleted(userId: String) throws -> Bool {
        guard let sqlite else {
            return try sql.fetchOne("SELECT 1 FROM customers WHERE user_id = ? AND deleted_at IS NOT NULL", [userId]) != nil
        }
        let deleted = try sqlite.cachedStatement(sql: "SELECT 1 FROM customers WHERE user_id = ? AND deleted_at IS NOT NULL")
        return try Bool.fetchOne(deleted, arguments: [userId]) == true
    }

    func setEmail(_ email: String, userId: String) throws {
        try sql.execute("UPDATE customers SET email = ? WHERE user_id = ?", [email, userId])
    }

    /// Sets the email of a customer not deleted; returns whether there was one.
    func setEmailIfActive(_ email: String, userId: String) throws -> Bool {
        try sql.execute("UPDATE customers SET email = ? WHERE user_id = ? AND deleted_at IS NULL", [email, userId]) > 0
    }

    func clearEmail(userId: String) throws {
        try sql.execute("UPDATE customers SET email = NULL WHERE user_id = ?", [userId])
    }

    /// Marks the customer deleted unless it already is; returns whether it changed.
    func markDeleted(userId: String, at now: Date) throws -> Bool {
        try sql.execute("UPDATE customers SET deleted_at = ? WHERE user_id = ? AND deleted_at IS NULL", [now, userId]) > 0
    }

    func customerIds() throws -> [String] {
        try sql.values("SELECT user_id FROM customers")
    }

    // MARK: Stripe customer links

    func stripeCustomerId(userId: String) throws -> String? {
        try sql.value("SELECT stripe_customer_id FROM customers WHERE user_id = ?", [userId])
    }

    func userId(stripeCustomerId: String) throws -> String? {
        try sql.value("SELECT user_id FROM customers WHERE stripe_customer_id = ?", [stripeCustomerId])
    }

    /// Records the customer's Stripe customer id unless one is already set; returns the id in use.
    func linkStripeCustomer(userId: String, stripeCustomerId: String) throws -> String? {
        try sql.execute("UPDATE customers SET stripe_customer_id = ? WHERE user_id = ? AND stripe_customer_id IS NULL", [stripeCustomerId, userId])
        return try self.stripeCustomerId(userId: userId)
    }

    /// Links `stripeCustomerId` to `userId` unless the user already has one or another user
    /// holds it; returns the user's Stripe customer id afterwards.
    @discardableResult
    func linkStripeCustomerIfFree(_ stripeCustomerId: String, userId: String) throws -> String? {
        try sql.execute(
            """
            UPDATE customers SET stripe_customer_id = ?
            WHERE user_id = ? AND stripe_customer_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM customers WHERE stripe_customer_id = ?)
            """,
            [stripeCustomerId, userId, stripeCustomerId]
        )
        return try self.stripeCustomerId(userId: userId)
    }

    /// Forgets the user's Stripe customer if it is still `stripeCustomerId`; returns whether it was.
    func clearStripeCustomer(userId: String, ifLinkedTo stripeCustomerId: String) throws -> Bool {
        try sql.execute("UPDATE customers SET stripe_customer_id = NULL WHERE user_id = ? AND stripe_customer_id = ?", [userId, stripeCustomerId]) > 0
    }

    // MARK: Balances

    func allBalances() throws -> [Balance] {
        try sql.fetchAll("SELECT * FROM balances").map { try $0.balance() }
    }

    /// `tokens_purchased` of the balance, nil for an unknown customer.
    func tokensPurchased(userId: String) throws -> Int? {
        try sql.value("SELECT tokens_purchased FROM balances WHERE user_id = ?", [userId])
    }

    // MARK: Entries

    /// The newest `limit` entries of `userId`, newest first.
    func entries(userId: String, limit: Int) throws -> [LedgerEntry] {
        guard sqlite != nil else {
            return try sql.fetchAll("SELECT * FROM ledger_entries WHERE user_id = ? ORDER BY id DESC LIMIT ?", [userId, limit]).map {
                try $0.ledgerEntry()
            }
        }
        return
            try LedgerEntry
            .filter(Column("user_id") == userId)
            .order(Column("id").desc)
            .limit(limit)
            .fetchAll(db)
    }

    /// Every entry, by user then id, one at a time (the whole ledger need not fit in memory:
    /// SQLite walks a cursor, PostgreSQL reads pages of 5 000 entries).
    func forEachEntryByUser(_ body: (LedgerEntry) throws -> Void) throws {
        guard let sqlite else {
            var after: (String, Int64) = ("", 0)
            while true {
                let page = try sql.fetchAll(
                    "SELECT * FROM ledger_entries WHERE (user_id, id) > (?, ?) ORDER BY user_id, id LIMIT 5000",
                    [after.0, after.1]
                ).map { try $0.ledgerEntry() }
                for entry in page { try body(entry) }
                guard let last = page.last else { return }
                after = (last.userId, last.id ?? 0)
            }
        }
        let entries = try LedgerEntry.order(Column("user_id"), Column("id")).fetchCursor(sqlite)
        while let entry = try entries.next() { try body(entry) }
    }

    func keyExists(_ idempotencyKey: String) throws -> Bool {
        try sql.fetchOne("SELECT 1 FROM ledger_entries WHERE idempotency_key = ?", [idempotencyKey]) != nil
    }

    /// The `delta` of the entry with key `idempotencyKey`.
    func delta(idempotencyKey: String) throws -> Int? {
        try sql.value("SELECT delta FROM ledger_entries WHERE idempotency_key = ?", [idempotencyKey])
    }

    /// The kinds of `userId`'s entries, one per entry.
    func kinds(userId: String) throws -> [String] {
        try sql.values("SELECT kind FROM ledger_entries WHERE user_id = ?", [userId])
    }

    /// The id of `userId`'s newest entry, 0 when none.
    func lastEntryId(userId: String) throws -> Int64 {
        try sql.value("SELECT MAX(id) FROM ledger_entries WHERE user_id = ?", [userId]) ?? 0
    }

    func purchaseCount(userId: String) throws -> Int {
        try sql.value("SELECT COUNT(*) FROM ledger_entries WHERE user_id = ? AND kind = 'purchase'", [userId]) ?? 0
    }

    /// The `payment_refund` entries referencing `reference`: how many, and the sum of their deltas.
    func paymentRefundCount(reference: String) throws -> Int {
        try sql.value("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'payment_refund' AND reference = ?", [reference]) ?? 0
    }

    func paymentRefundDeltaSum(reference: String) throws -> Int {
        try sql.value("SELECT COALESCE(SUM(delta), 0) FROM ledger_entries WHERE kind = 'payment_refund' AND reference = ?", [reference]) ?? 0
    }
}
