import Foundation
import Logging

/// A delivery that is not an event: signed correctly, but no JSON object with an id and a type.
public struct InvalidWebhookEvent: CodedError {
    public var description: String
    public var code: String { "invalid_event" }
}

/// Receiving a webhook: verify the raw body's signature, store the delivery, then process it.
///
/// The inbox, not memory, is the source of truth: the delivery is stored before anything is
/// processed, and from then on the sender gets 2xx whatever processing does (a failure is
/// retried by the retry worker, an event stored by a process that died before processing it is
/// picked up after restart). Processing is `WebhookProcessor.process`, the function the
/// console's `webhooks replay` calls.
public struct WebhookIntake: Sendable {
    let database: AppDatabase
    let processor: WebhookProcessor
    /// `kill-after-webhook-store`: the process kills itself right after storing a delivery, for
    /// the crash drill (MYBA_FAULT_INJECTION; refused in production by the settings).
    let faultInjection: Set<String>

    public init(database: AppDatabase, processor: WebhookProcessor, faultInjection: Set<String> = []) {
        self.database = database
        self.processor = processor
        self.faultInjection = faultInjection
    }

    /// What the sender is told.
    public struct Receipt: Equatable, Sendable {
        /// The event id was stored before: nothing was done.
        public var duplicate: Bool
        public var status: WebhookEvent.Status
    }

    /// A Stripe delivery (`Stripe-Signature`, the whole `whsec_` secret).
    public func stripe(payload: [UInt8], signatureHeader: String?, secret: String, requestId: String, logger: Logger) async throws -> Receipt {
        try verified(source: .stripe, logger: logger) { try StripeSignature.verify(payload: payload, header: signatureHeader, secret: secret) }
        guard let header = try? StripeWire.decode(StripeEventHeader.self, from: Data(payload)) else {
            throw InvalidWebhookEvent(description: "body is not a Stripe event with id and type")
        }
        let (eventId, type) = (header.id, header.type)
        try Self.checkIdentifiers(eventId: eventId, type: type)
        return try await receive(
            WebhookDelivery(
                source: .stripe,
                eventId: eventId,
                type: type,
                body: String(decoding: payload, as: UTF8.self),
                headers: ["stripe-signature": signatureHeader ?? ""],
                requestId: requestId
            ),
            logger: logger
        )
    }

    /// A Clerk delivery (Svix headers; the event id is `svix-id`).
    public func clerk(
        payload: [UInt8],
        id: String?,
        timestamp: String?,
        signature: String?,
        secret: String,
        requestId: String,
        logger: Logger
    ) async throws -> Receipt {
        try verified(source: .clerk, logger: logger) {
            try SvixSignature.verify(payload: payload, id: id, timestamp: timestamp, signatureHeader: signature, secret: secret)
        }
        struct ClerkEventHeader: Decodable { var type: String }
        guard let type = try? StripeWire.decode(ClerkEventHeader.self, from: Data(payload)).type, let id else {
            throw InvalidWebhookEvent(description: "body is not a Clerk event with a type")
        }
        try Self.checkIdentifiers(eventId: id, type: type)
        return try await receive(
            WebhookDelivery(
                source: .clerk,
                eventId: id,
                type: type,
                body: String(decoding: payload, as: UTF8.self),
                headers: ["svix-id": id, "svix-timestamp": timestamp ?? "", "svix-signature": signature ?? ""],
                requestId: requestId
            ),
            logger: logger
        )
    }

    /// Event ids and types become keys, log values and console cells: even a correctly signed
    /// event (a leaked secret, a bug upstream) may not bring control characters or a megabyte id.
    /// Stripe's are `evt_…` and dotted lowercase types, Svix's `msg_…`.
    static func checkIdentifiers(eventId: String, type: String) throws {
        func plausible(_ text: String, extra: Set<Character>) -> Bool {
            (1...255).contains(text.utf8.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || extra.contains($0)) }
        }
        guard plausible(eventId, extra: ["_", "-"]) else {
            throw InvalidWebhookEvent(description: "event id must be 1–255 characters of A–Z, a–z, 0–9, '_' or '-'")
        }
        guard plausible(type, extra: ["_", "-", "."]) else {
            throw InvalidWebhookEvent(description: "event type must be 1–255 characters of A–Z, a–z, 0–9, '_', '-' or '.'")
        }
    }

    private func verified(source: WebhookSource, logger: Logger, _ check: () throws -> Void) throws {
        do {
            try check()
        } catch let error as WebhookSignatureError {
            MyBAMetrics.recordWebhook(source: source, outcome: "rejected")
            logger.warning("webhook rejected", metadata: ["webhook.source": .string(source.rawValue), "error.message": .string(error.description)])
            throw error
        }
    }

    /// Stores the delivery, then processes it (a known event id changes nothing).
    public func receive(_ delivery: WebhookDelivery, logger: Logger) async throws -> Receipt {
        var logger = logger
        logger[metadataKey: delivery.source == .stripe ? "stripe.event.id" : "clerk.event.id"] = .string(delivery.eventId)
        guard try await database.inbox.store(delivery) else {
            let status = try await database.inbox.event(source: delivery.source, eventId: delivery.eventId)?.status ?? .received
            MyBAMetrics.recordWebhook(source: delivery.source, outcome: "duplicate")
            logger.info("webhook redelivered; nothing to do", metadata: ["webhook.type": .string(delivery.type)])
            return Receipt(duplicate: true, status: status)
        }
        logger.info("webhook stored", metadata: ["webhook.type": .string(delivery.type)])
        if faultInjection.contains("kill-after-webhook-store") {
            logger.critical("fault injection: killing the server after storing a webhook")
            kill(getpid(), SIGKILL)
        }
        let outcome = try await processor.process(source: delivery.source, eventId: delivery.eventId, requestId: delivery.requestId, logger: logger)
        return Receipt(duplicate: false, status: outcome.status)
    }
}
