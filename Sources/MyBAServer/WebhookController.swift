import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MyBAOps

/// `POST /api/webhook/stripe` and `POST /api/webhook/clerk`: the raw body and signature
/// headers go to `WebhookIntake` (verify, store, answer 2xx, process).
struct WebhookController {
    let settings: MyBASettings
    let intake: WebhookIntake

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post("stripe", use: stripe)
            .post("clerk", use: clerk)
    }

    struct Receipt: ResponseEncodable {
        var received: Bool
        var duplicate: Bool
        var status: String

        init(_ receipt: WebhookIntake.Receipt) {
            received = true
            duplicate = receipt.duplicate
            status = receipt.status.rawValue
        }
    }

    @Sendable func stripe(_ request: Request, context: MyBARequestContext) async throws -> Receipt {
        guard let secret = settings.stripe.webhookSecret else {
            throw APIError(.serviceUnavailable, code: "webhooks_disabled", message: "STRIPE_WEBHOOK_SECRET is not configured")
        }
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        return Receipt(
            try await intake.stripe(
                payload: Array(buffer: body),
                signatureHeader: request.headers[HTTPField.Name("Stripe-Signature")!],
                secret: secret,
                requestId: context.requestId,
                logger: context.logger
            )
        )
    }

    @Sendable func clerk(_ request: Request, context: MyBARequestContext) async throws -> Receipt {
        guard let secret = settings.auth.webhookSecret else {
            throw APIError(.serviceUnavailable, code: "webhooks_disabled", message: "CLERK_WEBHOOK_SECRET is not configured")
        }
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        return Receipt(
            try await intake.clerk(
                payload: Array(buffer: body),
                id: request.headers[HTTPField.Name("svix-id")!],
                timestamp: request.headers[HTTPField.Name("svix-timestamp")!],
                signature: request.headers[HTTPField.Name("svix-signature")!],
                secret: secret,
                requestId: context.requestId,
                logger: context.logger
            )
        )
    }
}
