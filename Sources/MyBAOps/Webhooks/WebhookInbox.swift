import Foundation
import Logging

/// Who sent a webhook.
public enum WebhookSource: String, Codable, Sendable, CaseIterable {
    case stripe
    case clerk
}

/// A verified delivery, as it is stored before anything else happens.
public struct WebhookDelivery: Sendable {
    public var source: WebhookSource
    public var eventId: String
    public var type: String
    public var body: String
    /// Delivery headers worth keeping (ids, timestamps, signatures; never secrets).
    public var headers: [String: String]
    public var requestId: String?

    public init(source: WebhookSource, eventId: String, type: String, body: String, headers: [String: String], requestId: String?) {
        self.source = source
        self.eventId = eventId
        self.type = type
        self.body = body
        self.headers = headers
        self.requestId = requestId
    }
}

/// A stored webhook event.
public struct WebhookEvent: Equatable, Sendable {
    public enum Status: String, Codable, Sendable, CaseIterable {
        case received, processed, ignored, failed
    }

    public var source: WebhookSource
    public var eventId: String
    public var type: String
    public var body: String
    public var headers: [String: String]
    public var receivedAt: Date
    public var requestId: String?
    public var status: Status
    public var attempts: Int
    public var lastError: String?
    public var nextAttemptAt: Date?
    public var processedAt: Date?
    public var outcome: String?
    public var entryIds: [Int64]
}

/// What processing an event did.
public struct WebhookOutcome: Equatable, Sendable {
    public var status: WebhookEvent.Status
    public var message: String
    public var entryIds: [Int64]
    /// True when the event had been processed (or ignored) before and nothing was done now.
    public var alreadyDone: Bool
}

extension WebhookInbox {
    /// Stores a verified delivery unless its event id is known. Returns false for a redelivery,
    /// which changes nothing.
    public func store(_ delivery: WebhookDelivery) async throws -> Bool {
        let headers = String(decoding: try JSONSerialization.data(withJSONObject: delivery.headers, options: [.sortedKeys]), as: UTF8.self)
        return try await database.write { tx in try tx.inbox.insert(delivery, headers: headers, receivedAt: Date()) }
    }

    public func event(source: WebhookSource, eventId: String) async throws -> WebhookEvent? {
        try await database.read { tx in try tx.inbox.event(source: source, eventId: eventId) }
    }

    /// Events to (re)process now: stored but never processed (a crash between storing and
    /// processing; younger ones are left a moment to the request that stored them), and failed
    /// ones whose backoff has elapsed, oldest first.
    public func due(now: Date = Date(), maxAttempts: Int, limit: Int = 100) async throws -> [(WebhookSource, String)] {
        try await database.read { tx in
            try tx.inbox.due(receivedBefore: now.addingTimeInterval(-2), now: now, maxAttempts: maxAttempts, limit: limit)
        }
    }

    /// The due events this process takes on now. On PostgreSQL they are claimed for
    /// `leaseSeconds`: another server's retry worker skips them meanwhile, and takes them over
    /// if this one dies before finishing.
    public func claimDue(now: Date = Date(), maxAttempts: Int, limit: Int = 100, leaseSeconds: Int) async throws -> [(WebhookSource, String)] {
        try await database.write { tx in
            try tx.inbox.claimDue(
                receivedBefore: now.addingTimeInterval(-2),
                now: now,
                maxAttempts: maxAttempts,
                limit: limit,
                leaseSeconds: leaseSeconds
            )
        }
    }
}

/// Processes stored webhook events: the one function live deliveries, the retry worker, and the
/// console's replay all call. The ledger change and the event's new status commit in one
/// transaction, so an event is applied exactly once however often it is processed.
public struct WebhookProcessor: Sendable {
    /// After this many failed attempts an event waits for an operator's replay.
    public static let maxAttempts = 10

    let database: AppDatabase

    /// Plans come from the database at the moment of processing (`InstalledPlans`), so the
    /// server, its retries and a console replay decide from the same catalog.
    public init(database: AppDatabase) {
        self.database = database
    }

    /// Delay before retry number `attempts` (1-based): 5 s, 10 s, 20 s … capped at one hour.
    public static func backoff(attempts: Int) -> TimeInterval {
        min(5 * pow(2, Double(max(attempts - 1, 0))), 3600)
    }

    public func process(source: WebhookSource, eventId: String, requestId: String? = nil, logger: Logger) async throws -> WebhookOutcome {
        let started = ContinuousClock.now
        do {
            let outcome = try await database.write { tx in
                try Self.processInTransaction(source: source, eventId: eventId, requestId: requestId, in: tx)
            }
            if !outcome.alreadyDone {
                MyBAMetrics.recordWebhook(source: source, outcome: outcome.status.rawValue, duration: ContinuousClock.now - started)
                logger.info(
                    "webhook processed",
                    metadata: [
                        "webhook.source": .string(source.rawValue), "webhook.event.id": .string(eventId),
                        "webhook.status": .string(outcome.status.rawValue), "webhook.outcome": .string(outcome.message),
                    ]
                )
            }
            return outcome
        } catch let error as WebhookMissing {
            throw error
        } catch {
            let message = "\(error)"
            let attempts = try await database.write { tx -> Int in
                let now = Date()
                let attempts = (try tx.inbox.attempts(source: source, eventId: eventId) ?? 0) + 1
                try tx.inbox.recordFailure(
                    source: source,
                    eventId: eventId,
                    attempts: attempts,
                    error: message,
                    nextAttemptAt: now.addingTimeInterval(Self.backoff(attempts: attempts))
                )
                return attempts
            }
            MyBAMetrics.recordWebhook(source: source, outcome: WebhookEvent.Status.failed.rawValue, duration: ContinuousClock.now - started)
            logger.error(
                "webhook processing failed",
                metadata: [
                    "webhook.source": .string(source.rawValue), "webhook.event.id": .string(eventId),
                    "webhook.attempts": .stringConvertible(attempts), "error.message": .string(message),
                ]
            )
            return WebhookOutcome(status: .failed, message: message, entryIds: [], alreadyDone: false)
        }
    }

    /// What processing the event now would do, with nothing kept: the live processing runs in a
    /// transaction that is rolled back (the console's plan for `webhooks replay`).
    public func preview(source: WebhookSource, eventId: String) async throws -> WebhookOutcome {
        try await database.writeAndRollBack { tx in
            do {
                return try Self.processInTransaction(source: source, eventId: eventId, requestId: nil, in: tx)
            } catch let error as WebhookMissing {
                throw error
            } catch {
                return WebhookOutcome(status: .failed, message: "\(error)", entryIds: [], alreadyDone: false)
            }
        }
    }

    /// Processes every due event once; returns how many were looked at. Several servers on
    /// PostgreSQL each claim their own events for `leaseSeconds` (see `WebhookInbox.claimDue`).
    @discardableResult
    public func processDue(leaseSeconds: Int = 120, logger: Logger) async throws -> Int {
        let due = try await database.inbox.claimDue(maxAttempts: Self.maxAttempts, leaseSeconds: leaseSeconds)
        for (source, eventId) in due {
            _ = try await process(source: source, eventId: eventId, logger: logger)
        }
        return due.count
    }

    struct WebhookMissing: Error, CustomStringConvertible {
        var eventId: String
        var description: String { "no stored webhook event \(eventId)" }
    }

    static func processInTransaction(
        source: WebhookSource,
        eventId: String,
        requestId: String?,
        in tx: StorageTransaction
    ) throws -> WebhookOutcome {
        guard let event = try tx.inbox.event(source: source, eventId: eventId) else { throw WebhookMissing(eventId: eventId) }
        if event.status == .processed || event.status == .ignored {
            return WebhookOutcome(status: event.status, message: event.outcome ?? "", entryIds: event.entryIds, alreadyDone: true)
        }
        let now = Date().truncatedToMilliseconds
        let body = Data(event.body.utf8)
        let result: (status: WebhookEvent.Status, message: String, entries: [Int64])
        switch (source, event.type) {
        case (.stripe, "checkout.session.completed"), (.stripe, "checkout.session.async_payment_succeeded"):
            result = try checkoutCompleted(body, requestId: requestId ?? event.requestId, now: now, in: tx)
        case (.stripe, "customer.deleted"):
            let customerId = try decodeEvent(StripeCustomer.self, body, what: "customer.deleted").object.id
            result =
                try StripeCustomers.unlink(customerId, in: tx)
                ? (.processed, "Stripe customer \(customerId) deleted; unlinked, a new one is made on next need", [])
                : (.ignored, "Stripe customer \(customerId) is not linked to a MyBA customer", [])
        case (.stripe, "checkout.session.expired"):
            let sessionId = try decodeEvent(StripeCheckoutSession.self, body, what: "checkout.session.expired").object.id
            try tx.payments.markCheckout(id: sessionId, status: "expired")
            result = (.processed, "checkout session \(sessionId) expired", [])
        case (.stripe, "charge.refunded"):
            result = try chargeRefunded(body, requestId: requestId ?? event.requestId, now: now, in: tx)
        case (.stripe, "charge.refund.updated"), (.stripe, "refund.updated"), (.stripe, "refund.failed"):
            result = try refundUpdated(body, requestId: requestId ?? event.requestId, now: now, in: tx)
        case (.stripe, "charge.dispute.created"), (.stripe, "charge.dispute.closed"):
            result = try dispute(body, opened: event.type == "charge.dispute.created", requestId: requestId ?? event.requestId, now: now, in: tx)
        case (.clerk, "user.created"):
            result = try userCreated(body, requestId: requestId ?? event.requestId, now: now, in: tx)
        case (.clerk, "user.deleted"):
            result = try userDeleted(body, now: now, in: tx)
        case (.clerk, "user.updated"):
            result = try userUpdated(body, in: tx)
        default:
            result = (.ignored, "event type \(event.type) is not handled", [])
        }
        try tx.inbox.markDone(source: source, eventId: eventId, status: result.status, outcome: result.message, entryIds: result.entries, at: now)
        return WebhookOutcome(status: result.status, message: result.message, entryIds: result.entries, alreadyDone: false)
    }

    /// The event with its `data.object` read as `Object`; a body that is not one fails the event
    /// naming the field (a retry will not change it, but an operator's replay after a fix may).
    static func decodeEvent<Object: Decodable>(_ type: Object.Type, _ body: Data, what: String) throws -> StripeEvent<Object> {
        try decodeBody(StripeEvent<Object>.self, body, what: what)
    }

    static func decodeClerkUser(_ body: Data, what: String) throws -> ClerkUserEvent.User {
        try decodeBody(ClerkUserEvent.self, body, what: what).data
    }

    private static func decodeBody<T: Decodable>(_ type: T.Type, _ body: Data, what: String) throws -> T {
        do {
            return try StripeWire.decode(type, from: body)
        } catch {
            throw PaymentError.invalidEvent("\(what): \(StripeWire.explain(error))")
        }
    }

    static func checkoutCompleted(
        _ body: Data,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> (WebhookEvent.Status, String, [Int64]) {
        let session = try decodeEvent(StripeCheckoutSession.self, body, what: "checkout session").object
        let sessionId = session.id
        guard session.paymentStatus == "paid" else {
            return (
                .ignored,
                "checkout session \(sessionId) is not paid yet (\(session.paymentStatus ?? "?")); waiting for async_payment_succeeded",
                []
            )
        }
        let metadata = session.metadata ?? StripeMetadata()
        guard let userId = metadata["user_id"] ?? session.clientReferenceId, !userId.isEmpty else {
            // Another product on the same Stripe account: not MyBA's to grant, and no retry will
            // make it so.
            return (.ignored, "checkout session \(sessionId) names no MyBA user (metadata.user_id or client_reference_id); not a MyBA purchase", [])
        }
        let planId = metadata["plan_id"]
        // MyBA's own sessions carry their token count; the catalog decides for the others (a
        // payment link, the old service's sessions), and the outcome names the version it used.
        var decidedBy = ""
        var tokens = metadata["tokens"].flatMap { Int($0) }
        if tokens == nil, let planId {
            let installed = try tx.plans.installed()
            tokens = installed.catalog.plan(id: planId)?.tokens
            decidedBy = " (plan \(planId) in plans \(installed.label))"
            if tokens == nil {
                throw PaymentError.invalidEvent(
                    "checkout session \(sessionId): plan \"\(planId)\" is not in plans \(installed.label) and the session carries no metadata.tokens"
                )
            }
        }
        guard let tokens, tokens > 0 else {
            throw PaymentError.invalidEvent("checkout session \(sessionId) carries no token count (metadata.tokens or a known plan_id)")
        }
        try tx.payments.markCheckout(id: sessionId, status: "complete")
        let result = try Payments.recordPurchase(
            checkoutSessionId: sessionId,
            paymentIntentId: session.paymentIntent?.id,
            stripeCustomerId: session.customer?.id,
            userId: userId,
            planId: planId,
            tokens: tokens,
            amountTotal: session.amountTotal ?? 0,
            currency: session.currency ?? "usd",
            actor: "webhook:stripe",
            requestId: requestId,
            now: now,
            in: tx
        )
        // Refunds and disputes of this payment that arrived first failed for want of it, perhaps
        // until their retries ran out, or were ignored as another product's (a charge made
        // before its PaymentIntent carried the user): they are due again now that it is here.
        if !result.replayed, let paymentIntent = session.paymentIntent?.id {
            try tx.inbox.requeueWaitingForPurchase(paymentIntent: paymentIntent, now: now)
        }
        let message =
            result.replayed ? "purchase \(sessionId) was already granted" : "granted \(tokens) tokens to \(userId) for \(sessionId)\(decidedBy)"
        return (.processed, message, result.entry.id.map { [$0] } ?? [])
    }

    static func dispute(
        _ body: Data,
        opened: Bool,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> (WebhookEvent.Status, String, [Int64]) {
        let dispute = try decodeEvent(StripeDispute.self, body, what: "dispute").object
        let disputeId = dispute.id
        guard let paymentIntent = dispute.paymentIntent?.id else {
            return (.ignored, "dispute \(disputeId) has no payment intent; not a Checkout purchase", [])
        }
        let amount = dispute.amount
        let outcome =
            opened
            ? try Payments.disputeOpened(
                disputeId: disputeId,
                paymentIntent: paymentIntent,
                amount: amount,
                reason: dispute.reason,
                actor: "webhook:stripe",
                requestId: requestId,
                now: now,
                in: tx
            )
            : try Payments.disputeClosed(
                disputeId: disputeId,
                paymentIntent: paymentIntent,
                amount: amount,
                status: dispute.status,
                actor: "webhook:stripe",
                requestId: requestId,
                now: now,
                in: tx
            )
        return (.processed, outcome.message, outcome.entry?.id.map { [$0] } ?? [])
    }

    static func chargeRefunded(
        _ body: Data,
        requestId: String?,
        now: Date,
        in tx: StorageTransaction
    ) throws -> (WebhookEvent.Status, String, [Int64]) {
        let event = try decodeEvent(StripeCharge.self, body, what: "charge")
        let charge = event.object
        let chargeId = charge.id
        guard let paymentIntent = charge.paymentIntent?.id else {
            return (.ignored, "charge \(chargeId) has no payment intent; not a Checkout purchase", [])
        }
        let refunded = charge.amountRefunded
        if try tx.payments.payment(id: paymentIntent) == nil {
            // MyBA's Checkout Sessions put the user on the PaymentIntent, which Stripe copies to
            // its charge: without it the payment is another product's, and no retry makes it
            // MyBA's. With it, the purchase event is late, and this one is retried (and re-queued
            // when the purchase arrives).
            guard let userId = charge.metadata?["user_id"], !userId.isEmpty else {
                return (
                    .ignored, "charge \(chargeId) of \(paymentIntent) names no MyBA user and no MyBA purchase is recorded for it; not a MyBA payment",
                    []
                )
            }
            throw PaymentError.unknownPayment(paymentIntent)
        }
        let outcome = try Payments.applyRefund(
            paymentId: paymentIntent,
            snapshot: RefundSnapshot(amountRefunded: refunded, at: event.created),
            actor: "webhook:stripe",
            requestId: requestId,
            now: now,
            in: tx
        )
        var message: String
        if outcome.givenBack > 0 {
            message = "gave back \(outcome.givenBack) tokens for \(paymentIntent): less is refunded than before"
        } else if outcome.entry == nil && outcome.shortfall == 0 {
            message = "refund of \(paymentIntent) already applied"
        } else {
            message = "took back \(outcome.taken) tokens for \(paymentIntent)"
            if outcome.shortfall > 0 { message += "; shortfall \(outcome.shortfall) (already spent)" }
        }
        return (.processed, message, outcome.entry?.id.map { [$0] } ?? [])
    }

    /// A Refund object changed (`charge.refund.updated`, `refund.updated`, `refund.failed`):
    /// only a refund that failed or was canceled changes tokens, by giving back what it took.
    static func refundUpdated(_ body: Data, requestId: String?, now: Date, in tx: StorageTransaction) throws -> (WebhookEvent.Status, String, [Int64])
    {
        let event = try decodeEvent(StripeRefund.self, body, what: "refund")
        let refund = event.object
        let refundId = refund.id
        let status = refund.status ?? "?"
        guard status == "failed" || status == "canceled" else {
            return (.ignored, "refund \(refundId) is \(status); charge.refunded applies refunds", [])
        }
        guard let paymentIntent = refund.paymentIntent?.id else {
            return (.ignored, "refund \(refundId) has no payment intent; not a Checkout purchase", [])
        }
        let failure = FailedRefund(
            refundId: refundId,
            paymentIntentId: paymentIntent,
            amount: refund.amount,
            status: status,
            refundCreated: refund.created,
            failedAt: event.created ?? Int(now.timeIntervalSince1970)
        )
        let (message, outcome) = try Payments.refundFailed(failure, actor: "webhook:stripe", requestId: requestId, now: now, in: tx)
        return (.processed, message, outcome?.entry?.id.map { [$0] } ?? [])
    }

    static func userCreated(_ body: Data, requestId: String?, now: Date, in tx: StorageTransaction) throws -> (WebhookEvent.Status, String, [Int64]) {
        let user = try decodeClerkUser(body, what: "user.created")
        let userId = user.id
        guard !userId.isEmpty else { throw PaymentError.invalidEvent("user.created: data.id is empty") }
        let email = user.primaryEmail
        let result: PostingResult
        do {
            result = try Ledger.openAccount(userId: userId, email: email, actor: "webhook:clerk", requestId: requestId, now: now, in: tx)
        } catch LedgerError.accountDeleted {
            // user.deleted was delivered first: the deletion stands, no welcome grant.
            return (.ignored, "customer \(userId) was deleted; no welcome grant", [])
        }
        if let email {
            try tx.ledger.setEmail(email, userId: userId)
        }
        // The mirror worker creates the Stripe customer (metadata user_id and balance keys).
        try tx.outbox.enqueue(userId: userId, now: now)
        let message =
            result.replayed ? "customer \(userId) existed; welcome grant already given" : "opened \(userId) with \(result.entry.delta) welcome tokens"
        return (.processed, message, result.replayed ? [] : (result.entry.id.map { [$0] } ?? []))
    }

    /// Keeps the customer's email the user's primary address, so that the console finds them by it.
    static func userUpdated(_ body: Data, in tx: StorageTransaction) throws -> (WebhookEvent.Status, String, [Int64]) {
        let user = try decodeClerkUser(body, what: "user.updated")
        let userId = user.id
        guard !userId.isEmpty else { throw PaymentError.invalidEvent("user.updated: data.id is empty") }
        guard let email = user.primaryEmail else {
            return (.ignored, "user.updated for \(userId) carries no email address", [])
        }
        return try !tx.ledger.setEmailIfActive(email, userId: userId)
            ? (.ignored, "no active customer \(userId)", [])
            : (.processed, "email of \(userId) is now its primary address", [])
    }

    static func userDeleted(_ body: Data, now: Date, in tx: StorageTransaction) throws -> (WebhookEvent.Status, String, [Int64]) {
        let userId = try decodeClerkUser(body, what: "user.deleted").id
        // A user deleted before their first request gets a deleted customer row, so that no
        // later request, transfer or user.created opens the account with a welcome grant.
        let existed = try tx.ledger.customer(userId: userId) != nil
        try tx.ledger.createCustomerIfMissing(userId: userId, email: nil, now: now)
        if try !tx.ledger.markDeleted(userId: userId, at: now) {
            return (.ignored, "customer \(userId) was already deleted", [])
        }
        return (
            .processed, existed ? "marked \(userId) deleted; the ledger is kept" : "recorded \(userId) as deleted before any account was opened", []
        )
    }
}

extension WebhookInbox {
    /// Stored events, newest first, filtered by status, type and receipt time.
    public func list(status: WebhookEvent.Status?, type: String?, since: Date?, limit: Int) async throws -> [WebhookEvent] {
        try await database.read { tx in try tx.inbox.list(status: status, type: type, since: since, limit: limit) }
    }

    /// An event by id from either source.
    public func event(id: String) async throws -> WebhookEvent? {
        for source in WebhookSource.allCases {
            if let event = try await event(source: source, eventId: id) { return event }
        }
        return nil
    }
}

/// What `webhooks recover` did.
public struct RecoveryReport: Codable, Equatable, Sendable {
    public var listed: Int
    public var alreadyStored: Int
    public var recovered: [String]
    public var failed: [String]

    public init(listed: Int, alreadyStored: Int, recovered: [String], failed: [String]) {
        self.listed = listed
        self.alreadyStored = alreadyStored
        self.recovered = recovered
        self.failed = failed
    }
}

extension WebhookProcessor {
    /// The Stripe event types MyBA processes (what recovery asks Stripe for).
    public static let handledStripeTypes = [
        "checkout.session.completed", "checkout.session.async_payment_succeeded", "charge.refunded",
        "charge.refund.updated", "charge.dispute.created", "charge.dispute.closed",
    ]

    /// Stripe keeps events for 30 days.
    public static let stripeEventRetention: TimeInterval = 30 * 86400

    /// A Stripe event missing from the inbox, as `/v1/events` returned it.
    public struct MissingEvent: @unchecked Sendable {
        public var id: String
        public var type: String
        public var created: Int?
        /// The event object; stored as a live delivery's body would be.
        public var object: [String: Any]
    }

    /// Reads Stripe's events API for the handled types since `since` and returns the events not in
    /// the inbox (the plan of `webhooks recover`), and how many were listed.
    public func missingEvents(from stripe: StripeClient, since: Date) async throws -> (listed: Int, missing: [MissingEvent]) {
        var listed = 0
        var missing: [MissingEvent] = []
        for type in Self.handledStripeTypes {
            for event in try await stripe.events(type: type, since: since) {
                listed += 1
                guard let id = event["id"] as? String else { continue }
                if try await database.inbox.event(source: .stripe, eventId: id) != nil { continue }
                missing.append(MissingEvent(id: id, type: type, created: (event["created"] as? NSNumber)?.intValue, object: event))
            }
        }
        return (listed, missing)
    }

    /// Stores `events` (as a live delivery would) and processes them.
    public func recover(_ events: [MissingEvent], listed: Int, logger: Logger) async throws -> RecoveryReport {
        var report = RecoveryReport(listed: listed, alreadyStored: listed - events.count, recovered: [], failed: [])
        for event in events {
            let body = String(decoding: try JSONSerialization.data(withJSONObject: event.object, options: [.sortedKeys]), as: UTF8.self)
            let stored = try await database.inbox.store(
                WebhookDelivery(
                    source: .stripe,
                    eventId: event.id,
                    type: event.type,
                    body: body,
                    headers: ["recovered-from": "GET /v1/events"],
                    requestId: nil
                )
            )
            guard stored else {
                report.alreadyStored += 1
                continue
            }
            let outcome = try await process(source: .stripe, eventId: event.id, logger: logger)
            if outcome.status == .failed { report.failed.append(event.id) } else { report.recovered.append(event.id) }
        }
        return report
    }

    /// Reads Stripe's events API for the handled types since `since`, stores the events missing
    /// from the inbox (as a live delivery would) and processes them.
    public func recover(from stripe: StripeClient, since: Date, logger: Logger) async throws -> RecoveryReport {
        let (listed, missing) = try await missingEvents(from: stripe, since: since)
        return try await recover(missing, listed: listed, logger: logger)
    }
}
