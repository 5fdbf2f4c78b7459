import Foundation
import Hummingbird
import MyBAOps

/// `POST /api/create-checkout-session`: a Stripe Checkout Session for one plan, priced by the
/// server (20 % off a first purchase).
struct CheckoutController {
    let settings: MyBASettings
    let database: AppDatabase
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
        let opener = CheckoutOpener(
            database: database,
            stripe: stripe,
            publicURL: settings.checkoutReturnBase(requestAuthority: request.head.authority),
            perHour: settings.checkoutsPerHour
        )
        let opened = try await opener.open(
            userId: user.userId,
            planId: body.planId,
            requestKey: try request.idempotencyKey(context: context),
            logger: context.logger
        )
        context.logger.info(
            "checkout session created",
            metadata: [
                "stripe.checkout_session.id": .string(opened.sessionId), "plan.id": .string(body.planId),
                "checkout.amount": .stringConvertible(opened.amount),
            ]
        )
        return CheckoutResponse(sessionId: opened.sessionId, url: opened.url)
    }
}
