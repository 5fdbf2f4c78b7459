import Foundation

/// Why tokens moved. Each kind has one fixed rule for how it moves the balance projection,
/// defined in `LedgerEntryKind.effect(delta:at:opening:)` and documented in `docs/ledger.md`.
public enum LedgerEntryKind: String, Codable, Sendable, CaseIterable {
    /// +n once per user at sign-up (6 by default).
    case welcome
    /// +n moved over from an anonymous session at sign-up.
    case transfer
    /// +n bought through Stripe Checkout.
    case purchase
    /// −n spent on generated work.
    case consume
    /// +n given back automatically when the work a consume paid for failed.
    case release
    /// ±n set by an operator.
    case adjust
    /// +n credited back by an operator for failed work.
    case refundCredit = "refund_credit"
    /// −n taken back because the payment for them was refunded; +n given back when that refund
    /// failed or was canceled at Stripe.
    case paymentRefund = "payment_refund"
    /// The opening balance taken over from the legacy Stripe-metadata store.
    case `import`

    /// The sign `delta` must have for this kind.
    public var allowedSign: AllowedSign {
        switch self {
        case .welcome, .transfer, .purchase, .release, .refundCredit: return .positive
        case .consume: return .negative
        // Zero only when everything owed back had been spent: the entry then records the shortfall.
        // Positive only when a refund failed at Stripe and what it took is given back.
        case .paymentRefund: return .any
        case .adjust: return .nonZero
        case .import: return .nonNegative
        }
    }

    public enum AllowedSign: Sendable {
        case positive, negative, nonPositive, nonZero, nonNegative, any

        func admits(_ value: Int) -> Bool {
            switch self {
            case .positive: return value > 0
            case .negative: return value < 0
            case .nonPositive: return value <= 0
            case .nonZero: return value != 0
            case .nonNegative: return value >= 0
            case .any: return true
            }
        }

        var phrase: String {
            switch self {
            case .positive: return "positive"
            case .negative: return "negative"
            case .nonPositive: return "zero or negative"
            case .nonZero: return "non-zero"
            case .nonNegative: return "zero or positive"
            case .any: return "any"
            }
        }
    }

    /// The one place that says how an entry of this kind moves each projection field.
    ///
    /// - `delta` is the signed change of `tokens`.
    /// - `at` is the entry's time, which becomes `last_purchase` or `transfer_date`.
    /// - `opening` is used by `import` only: the legacy counters and dates taken over as they are.
    public func effect(delta: Int, at date: Date, opening: OpeningBalance?) -> LedgerEffect {
        switch self {
        case .welcome, .adjust, .refundCredit:
            return LedgerEffect(tokens: delta)
        case .transfer:
            return LedgerEffect(tokens: delta, transferred: delta, setsTransferDate: date)
        case .purchase:
            return LedgerEffect(tokens: delta, purchased: delta, setsLastPurchase: date)
        case .consume:
            return LedgerEffect(tokens: delta, used: -delta)
        case .release:
            return LedgerEffect(tokens: delta, used: -delta)
        case .paymentRefund:
            return LedgerEffect(tokens: delta, purchased: delta)
        case .import:
            let opening = opening ?? OpeningBalance()
            return LedgerEffect(
                tokens: delta,
                used: opening.tokensUsed,
                purchased: opening.tokensPurchased,
                transferred: opening.tokensTransferred,
                setsLastPurchase: opening.lastPurchase,
                setsTransferDate: opening.transferDate
            )
        }
    }
}

/// How one ledger entry changes the balance projection.
public struct LedgerEffect: Equatable, Sendable {
    public var tokens: Int
    public var used: Int = 0
    public var purchased: Int = 0
    public var transferred: Int = 0
    public var setsLastPurchase: Date? = nil
    public var setsTransferDate: Date? = nil
}

/// The counters and dates of a legacy balance, carried by an `import` entry.
public struct OpeningBalance: Codable, Equatable, Sendable {
    public var tokensUsed: Int
    public var tokensPurchased: Int
    public var tokensTransferred: Int
    public var lastPurchase: Date?
    public var transferDate: Date?

    public init(tokensUsed: Int = 0, tokensPurchased: Int = 0, tokensTransferred: Int = 0, lastPurchase: Date? = nil, transferDate: Date? = nil) {
        self.tokensUsed = tokensUsed
        self.tokensPurchased = tokensPurchased
        self.tokensTransferred = tokensTransferred
        self.lastPurchase = lastPurchase
        self.transferDate = transferDate
    }
}
