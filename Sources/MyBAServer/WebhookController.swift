import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MyBAOps

/// `POST /api/webhook/stripe` and `POST /api/webhook/clerk`: verify the raw body, store the
/// delivery, answer 2xx, process. The inbox, not memory, is the source of truth: an event stored
/// by a process that dies before processing it is picked up by the retry worker after restart.
struct WebhookController {
    let settings: MyBASettings
    let database: AppDatabase
    let processor: WebhookProcessor

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post("stripe", use: stripe)
            .post("clerk", use: clerk)
    }

    struct Receipt: ResponseEncodable {
        var received: Bool
        var duplicate: Bool
        var status: String
    }

    @Sendable func stripe(_ request: Request, context: MyBARequestContext) async throws -> Receipt {
        guard let secret = settings.stripe.webhookSecret else {
            throw APIError(.serviceUnavailable, code: "webhooks_disabled", message: "STRIPE_WEBHOOK_SECRET is not configured")
        }
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        let bytes = Array(buffer: body)
        let header = request.headers[HTTPField.Name("Stripe-Signature")!]
        try verify(context: context, source: .stripe) { try StripeSignature.verify(payload: bytes, header: header, secret: secret) }
        guard let event = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let eventId = event["id"] as? String, let type = event["type"] as? String
        else { throw APIError(.badRequest, code: "invalid_event", message: "body is not a Stripe event with id and type") }
        return try await receive(WebhookDelivery(
            source: .stripe, eventId: eventId, type: type, body: String(decoding: bytes, as: UTF8.self),
            headers: ["stripe-signature": header ?? ""], requestId: context.requestId), context: context)
    }

    @Sendable func clerk(_ request: Request, context: MyBARequestContext) async throws -> Receipt {
        guard let secret = settings.auth.webhookSecret else {
            throw APIError(.serviceUnavailable, code: "webhooks_disabled", message: "CLERK_WEBHOOK_SECRET is not configured")
        }
        let body = try await request.body.collect(upTo: context.maxUploadSize)
        let bytes = Array(buffer: body)
        let id = request.headers[HTTPField.Name("svix-id")!]
        let timestamp = request.headers[HTTPField.Name("svix-timestamp")!]
        let signature = request.headers[HTTPField.Name("svix-signature")!]
        try verify(context: context, source: .clerk) {
            try SvixSignature.verify(payload: bytes, id: id, timestamp: timestamp, signatureHeader: signature, secret: secret)
        }
        guard let event = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any], let type = event["type"] as? String, let id else {
            throw APIError(.badRequest, code: "invalid_event", message: "body is not a Clerk event with a type")
        }
        return try await receive(WebhookDelivery(
            source: .clerk, eventId: id, type: type, body: String(decoding: bytes, as: UTF8.self),
            headers: ["svix-id": id, "svix-timestamp": timestamp ?? "", "svix-signature": signature ?? ""], requestId: context.requestId), context: context)
    }

    private func verify(context: MyBARequestContext, source: WebhookSource, _ check: () throws -> Void) throws {
        do {
            try check()
        } catch let error as WebhookSignatureError {
            MyBAMetrics.recordWebhook(source: source, outcome: "rejected")
            context.logger.warning("webhook rejected", metadata: ["webhook.source": .string(source.rawValue), "error.message": .string(error.description)])
            throw APIError(.badRequest, code: "invalid_signature", message: error.description)
        }
    }

    private func receive(_ delivery: WebhookDelivery, context: MyBARequestContext) async throws -> Receipt {
        var logger = context.logger
        logger[metadataKey: delivery.source == .stripe ? "stripe.event.id" : "clerk.event.id"] = .string(delivery.eventId)
        let stored = try await database.storeWebhook(delivery)
        guard stored else {
            let status = try await database.webhookEvent(source: delivery.source, eventId: delivery.eventId)?.status.rawValue ?? "received"
            MyBAMetrics.recordWebhook(source: delivery.source, outcome: "duplicate")
            logger.info("webhook redelivered; nothing to do", metadata: ["webhook.type": .string(delivery.type)])
            return Receipt(received: true, duplicate: true, status: status)
        }
        logger.info("webhook stored", metadata: ["webhook.type": .string(delivery.type)])
        if settings.faultInjection.contains("kill-after-webhook-store") {
            logger.critical("fault injection: killing the server after storing a webhook")
            kill(getpid(), SIGKILL)
        }
        // Stored: from here on the answer is 2xx whatever processing does; failures are retried.
        let outcome = try await processor.process(source: delivery.source, eventId: delivery.eventId, requestId: context.requestId, logger: logger)
        return Receipt(received: true, duplicate: false, status: outcome.status.rawValue)
    }
}
