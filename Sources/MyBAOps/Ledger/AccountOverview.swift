import Foundation

/// What the signed-in web page shows of an account: the balance and purchase statistics, and
/// the first-purchase discount when it applies.
public struct AccountOverview: Encodable, Sendable {
    public var balance: BalanceFields
    /// The discount the next checkout gets: the catalog's percentage before the first
    /// purchase, 0 after it.
    public var firstPurchaseDiscountPercent: Int

    public func encode(to encoder: any Encoder) throws {
        try balance.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(firstPurchaseDiscountPercent, forKey: .firstPurchaseDiscountPercent)
    }

    enum CodingKeys: String, CodingKey {
        case firstPurchaseDiscountPercent
    }
}

extension Ledger {
    /// The account of `userId` as the page shows it; nil when there is no such customer.
    public func accountOverview(userId: String) async throws -> AccountOverview? {
        guard let balance = try await balance(userId: userId) else { return nil }
        let discount =
            try await database.payments.isFirstPurchase(userId: userId)
            ? try await database.plans.installed().catalog.firstPurchaseDiscountPercent : 0
        return AccountOverview(balance: BalanceFields(balance), firstPurchaseDiscountPercent: discount)
    }
}

/// Whether a Checkout Session's purchase has reached its buyer's balance, as the page's
/// `/payment-success` asks. A session that is not the asker's reads as pending, so the answer
/// tells nobody anything about other people's purchases.
public struct PurchaseStatus: Encodable, Sendable {
    public var checkoutSessionId: String
    /// `granted` once the purchase event was applied, `pending` before (or not the asker's).
    public var status: String
    /// The tokens the purchase granted; nil while pending.
    public var tokens: Int?
}

extension Payments {
    /// The state of `checkoutSessionId`'s purchase for `userId` (see `PurchaseStatus`).
    public func purchaseStatus(userId: String, checkoutSessionId: String) async throws -> PurchaseStatus {
        guard let payment = try await payment(id: checkoutSessionId), payment.userId == userId, payment.checkoutSessionId == checkoutSessionId else {
            return PurchaseStatus(checkoutSessionId: checkoutSessionId, status: "pending", tokens: nil)
        }
        return PurchaseStatus(checkoutSessionId: checkoutSessionId, status: "granted", tokens: payment.tokens)
    }
}
