import Foundation

/// What MyBA remembers about Stripe customers besides the link on `customers`: the ones deleted
/// at Stripe and forgotten here (`stripe_customer_unlinks`, whose count gives the next one a
/// creation key of its own), and legacy balances found at Stripe awaiting `import from-stripe`
/// (`legacy_balance_holds`).
struct StripeCustomerStore {
    let sql: SQLConnection

    /// How many Stripe customers of `userId` were forgotten.
    func unlinkCount(userId: String) throws -> Int {
        try sql.value("SELECT COUNT(*) FROM stripe_customer_unlinks WHERE user_id = ?", [userId]) ?? 0
    }

    /// The Stripe customers of `userId` that were forgotten.
    func unlinkedIds(userId: String) throws -> Set<String> {
        Set(try sql.values("SELECT stripe_customer_id FROM stripe_customer_unlinks WHERE user_id = ?", [userId], as: String.self))
    }

    func recordUnlink(userId: String, stripeCustomerId: String, at now: Date) throws {
        try sql.execute("INSERT INTO stripe_customer_unlinks (user_id, stripe_customer_id, at) VALUES (?, ?, ?)", [userId, stripeCustomerId, now])
    }

    /// The Stripe customer whose legacy balance of `userId` awaits the import, if any.
    func legacyHold(userId: String) throws -> String? {
        try sql.value("SELECT stripe_customer_id FROM legacy_balance_holds WHERE user_id = ?", [userId])
    }

    func insertLegacyHoldIfNew(userId: String, stripeCustomerId: String, at now: Date) throws {
        try sql.execute(
            "INSERT INTO legacy_balance_holds (user_id, stripe_customer_id, found_at) VALUES (?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
            [userId, stripeCustomerId, now]
        )
    }

    func removeLegacyHold(userId: String) throws {
        try sql.execute("DELETE FROM legacy_balance_holds WHERE user_id = ?", [userId])
    }
}
