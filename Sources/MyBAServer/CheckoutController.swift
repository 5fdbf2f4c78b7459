import Foundation
import Hummingbird
import MyBAOps

/// `POST /api/create-checkout-session`: a Stripe Checkout Session for one plan, priced by the
/// server (20 % off a first purchase).
struct CheckoutController {
    let settings: MyBASettings
    let database: AppDatabase
    let plans: PlanCatalog
    let stripe: StripeClient?

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post(use: create)
    }

    struct CheckoutRequest: Decodable {
        var planId: String
        var userId: String?
    }

    struct CheckoutResponse: ResponseEncodable {
        var sessionId: String
        var url: String
    }

    @Sendable func create(_ request: Request, context: MyBARequestContext) async throws -> CheckoutResponse {
        let user = try context.requireUser()
        guard let stripe else {
            throw APIError(.serviceUnavailable, code: "payments_disabled", message: "payments are not configured on this server (STRIPE_SECRET_KEY)")
        }
        let body = try await request.decodeJSON(as: CheckoutRequest.self, context: context)
        if let claimed = body.userId, claimed != user.userId {
            throw APIError(.forbidden, code: "forbidden", message: "userId does not match the signed-in user")
        }
        guard let plan = plans.plan(id: body.planId) else {
            throw APIError(.badRequest, code: "unknown_plan", message: "no plan \"\(body.planId)\"; plans are \(plans.plans.map(\.id).joined(separator: ", "))")
        }
        let firstPurchase = try await database.isFirstPurchase(userId: user.userId)
        let amount = firstPurchase ? plan.amount * (100 - plans.firstPurchaseDiscountPercent) / 100 : plan.amount
        let requestKey = try request.idempotencyKey(context: context)
        do {
            let stripeCustomer = try await database.ensureStripeCustomer(userId: user.userId, stripe: stripe)
            var form: StripeForm = [
                ("mode", "payment"),
                ("line_items[0][price_data][currency]", plan.currency),
                ("line_items[0][price_data][unit_amount]", String(amount)),
                ("line_items[0][price_data][product_data][name]", "MyBA \(plan.name): \(plan.tokens) tokens"),
                ("line_items[0][quantity]", "1"),
                ("client_reference_id", user.userId),
                ("success_url", "\(settings.publicURL)/payment-success?session_id={CHECKOUT_SESSION_ID}"),
                ("cancel_url", "\(settings.publicURL)/pricing?canceled=1"),
                ("metadata[user_id]", user.userId),
                ("metadata[plan_id]", plan.id),
                ("metadata[tokens]", String(plan.tokens)),
                ("metadata[first_purchase_discount]", firstPurchase ? String(plans.firstPurchaseDiscountPercent) : "0"),
            ]
            form.append(("customer", stripeCustomer))
            let session = try await stripe.createCheckoutSession(form, idempotencyKey: StripeClient.checkoutIdempotencyKey(userId: user.userId, planId: plan.id, amount: amount, requestKey: requestKey))
            guard let id = session["id"] as? String, let url = session["url"] as? String else {
                throw APIError(.badGateway, code: "stripe_error", message: "Stripe returned a session without id or url")
            }
            context.logger.info("checkout session created", metadata: [
                "stripe.checkout_session.id": .string(id), "plan.id": .string(plan.id), "checkout.amount": .stringConvertible(amount),
            ])
            return CheckoutResponse(sessionId: id, url: url)
        } catch let error as StripeError {
            context.logger.error("Stripe refused checkout", metadata: ["error.message": .string(error.description)])
            throw APIError(.badGateway, code: "stripe_error", message: error.description)
        }
    }
}
