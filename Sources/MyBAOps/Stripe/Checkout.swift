import Foundation
import Logging

/// A Checkout Session opened for a customer.
public struct OpenedCheckout: Equatable, Sendable {
    public var sessionId: String
    public var url: String
    /// What the customer pays, in the plan's currency's minor unit.
    public var amount: Int
    public var discounted: Bool
}

/// Why a checkout was not opened. Nothing was charged.
public enum CheckoutError: Error, CustomStringConvertible, Sendable {
    case unknownPlan(String, known: [String])
    /// Too many sessions opened by the account within the hour.
    case rateLimited(retryAfterSeconds: Int)
    /// A discounted purchase completed while this discounted session was being opened: the new
    /// session was expired; opening again gives the regular price.
    case discountJustUsed
    case stripe(StripeError)

    public var description: String {
        switch self {
        case .unknownPlan(let id, let known): return "no plan \"\(id)\"; plans are \(known.joined(separator: ", "))"
        case .rateLimited(let seconds): return "too many checkouts opened by this account; retry in \(seconds) s"
        case .discountJustUsed: return "your first-purchase discount was just used by another checkout; open the checkout again for the regular price"
        case .stripe(let error): return error.description
        }
    }
}

/// Opens Stripe Checkout Sessions: the plan's price, 20 % off while the customer has bought
/// nothing, and at most one purchase per customer ever paid at the discount.
///
/// Every session opened at the discount is recorded (`checkout_sessions`). Before a new
/// discounted session is opened, the customer's other open discounted sessions are expired at
/// Stripe (`POST /v1/checkout/sessions/{id}/expire`); one that cannot be expired because it was
/// paid means the discount is used, and the new session gets the regular price. After it is
/// opened, discounted sessions that concurrent requests opened before it are expired too (the
/// newest wins), so however many sessions are opened, and in whatever order they are paid, only
/// one discounted session can ever be paid. Opening is limited per account and hour.
public struct CheckoutOpener: Sendable {
    let database: AppDatabase
    let stripe: StripeClient
    let publicURL: String
    let perHour: Int

    /// The plans are read from the database on each opening (`InstalledPlans`): an operator's
    /// `plans set` is on sale at once.
    public init(database: AppDatabase, stripe: StripeClient, publicURL: String, perHour: Int) {
        self.database = database
        self.stripe = stripe
        self.publicURL = publicURL
        self.perHour = perHour
    }

    public func open(userId: String, planId: String, requestKey: String, logger: Logger) async throws -> OpenedCheckout {
        let plans = try await database.plans.installed().catalog
        guard let plan = plans.plan(id: planId) else { throw CheckoutError.unknownPlan(planId, known: plans.plans.map(\.id)) }
        if let retryAfter = try await database.payments.checkoutRateLimit(userId: userId, perHour: perHour) {
            throw CheckoutError.rateLimited(retryAfterSeconds: retryAfter)
        }
        do {
            var discounted = try await database.payments.isFirstPurchase(userId: userId)
            // Any discounted session still open goes, whatever this one costs: once the customer
            // has bought, an old discounted session must not be payable any more either.
            for earlier in try await database.payments.openDiscountedCheckouts(userId: userId, before: nil) {
                if try await close(earlier, logger: logger) == .paid { discounted = false }
            }
            let amount = discounted ? plans.firstPurchaseAmount(of: plan) : plan.amount
            var stripeCustomer = try await database.stripeCustomers.ensure(userId: userId, stripe: stripe)
            var form: StripeForm = [
                ("mode", "payment"),
                ("line_items[0][price_data][currency]", plan.currency),
                ("line_items[0][price_data][unit_amount]", String(amount)),
                ("line_items[0][price_data][product_data][name]", "MyBA \(plan.name): \(plan.tokens) tokens"),
                ("line_items[0][quantity]", "1"),
                ("client_reference_id", userId),
                ("success_url", "\(publicURL)/payment-success?session_id={CHECKOUT_SESSION_ID}"),
                ("cancel_url", "\(publicURL)/pricing?canceled=1"),
                ("metadata[user_id]", userId),
                ("metadata[plan_id]", plan.id),
                ("metadata[tokens]", String(plan.tokens)),
                ("metadata[first_purchase_discount]", discounted ? String(plans.firstPurchaseDiscountPercent) : "0"),
                // Stripe copies these to the payment's charge, so a refund or dispute of it is
                // known as MyBA's even when it arrives before the purchase event.
                ("payment_intent_data[metadata][user_id]", userId),
                ("payment_intent_data[metadata][checkout]", "myba"),
                ("customer", stripeCustomer),
            ]
            let session: StripeCheckoutSession
            do {
                session = try await stripe.createCheckoutSession(
                    form,
                    idempotencyKey: StripeClient.checkoutIdempotencyKey(
                        userId: userId,
                        planId: plan.id,
                        amount: amount,
                        requestKey: requestKey + ":" + stripeCustomer
                    )
                )
            } catch let error as StripeError where error.code == "resource_missing" {
                // The Stripe customer was deleted at Stripe: forget it and make a new one, once.
                try await database.stripeCustomers.unlink(stripeCustomer)
                stripeCustomer = try await database.stripeCustomers.ensure(userId: userId, stripe: stripe)
                form.removeAll { $0.0 == "customer" }
                form.append(("customer", stripeCustomer))
                session = try await stripe.createCheckoutSession(
                    form,
                    idempotencyKey: StripeClient.checkoutIdempotencyKey(
                        userId: userId,
                        planId: plan.id,
                        amount: amount,
                        requestKey: requestKey + ":" + stripeCustomer
                    )
                )
            }
            guard let url = session.url else {
                throw StripeError(status: 200, type: "api_error", code: nil, message: "Stripe returned a session without a url", param: nil)
            }
            let id = session.id
            let sequence = try await database.payments.recordCheckout(id: id, userId: userId, planId: plan.id, amount: amount, discounted: discounted)
            if discounted {
                // Discounted sessions opened meanwhile by other requests: the newest stays open.
                for earlier in try await database.payments.openDiscountedCheckouts(userId: userId, before: sequence) {
                    guard try await close(earlier, logger: logger) == .paid else { continue }
                    _ = try await close(id, logger: logger)
                    throw CheckoutError.discountJustUsed
                }
            }
            return OpenedCheckout(sessionId: id, url: url, amount: amount, discounted: discounted)
        } catch let error as StripeError {
            throw CheckoutError.stripe(error)
        }
    }

    enum Closed { case expired, paid }

    /// Expires a discounted session at Stripe; one that can no longer be expired was paid (or
    /// had expired on its own). Recorded either way.
    private func close(_ sessionId: String, logger: Logger) async throws -> Closed {
        do {
            _ = try await stripe.expireCheckoutSession(sessionId, idempotencyKey: "myba-expire:\(sessionId)")
            try await database.payments.markCheckout(id: sessionId, status: "expired")
            logger.info("discounted checkout expired for a newer one", metadata: ["stripe.checkout_session.id": .string(sessionId)])
            return .expired
        } catch let error as StripeError where error.status == 400 {
            let session = try await stripe.retrieveCheckoutSession(sessionId)
            let paid = session.status == "complete" || session.paymentStatus == "paid"
            try await database.payments.markCheckout(id: sessionId, status: paid ? "complete" : "expired")
            return paid ? .paid : .expired
        }
    }
}

extension Payments {
    /// Seconds until the account may open another checkout, or nil when it may now.
    func checkoutRateLimit(userId: String, perHour: Int) async throws -> Int? {
        try await database.read { tx in
            let now = Date()
            let recent = try tx.payments.checkoutCreationTimes(userId: userId, since: HourlyWindow.start(now), limit: perHour)
            return HourlyWindow.retryAfter(oldestFirst: recent, limit: perHour, now: now)
        }
    }

    /// The account's discounted sessions still open, oldest first; with `before`, only those
    /// recorded before that sequence number.
    func openDiscountedCheckouts(userId: String, before sequence: Int64?) async throws -> [String] {
        try await database.read { tx in try tx.payments.openDiscountedCheckouts(userId: userId, before: sequence ?? Int64.max) }
    }

    /// Records an opened session (a Stripe idempotency replay records nothing new); returns its
    /// sequence number.
    func recordCheckout(id: String, userId: String, planId: String, amount: Int, discounted: Bool) async throws -> Int64 {
        try await database.write { tx in
            try tx.payments.recordCheckout(id: id, userId: userId, planId: planId, amount: amount, discounted: discounted, at: Date())
        }
    }

    func markCheckout(id: String, status: String) async throws {
        try await database.write { tx in try tx.payments.markCheckout(id: id, status: status) }
    }
}
