import Foundation

/// One moment in a request's or a customer's history, from any of the sources.
public struct TimelineItem: Codable, Equatable, Sendable {
    public var at: Date
    /// `log`, `webhook`, `ledger` or `audit`.
    public var source: String
    public var summary: String
    public var requestId: String?

    public init(at: Date, source: String, summary: String, requestId: String?) {
        self.at = at
        self.source = source
        self.summary = summary
        self.requestId = requestId
    }
}

extension ConsoleQueries {
    /// Ledger entries, webhook deliveries and audit rows of a request or a customer, in time order.
    public func timeline(requestId: String?, userId: String?, since: Date?) async throws -> [TimelineItem] {
        try await database.read { tx in
            var items: [TimelineItem] = []
            var entries: [LedgerEntry] = []
            if let requestId {
                entries += try tx.queries.entries(requestId: requestId)
            }
            if let userId { entries += try tx.queries.entries(userId: userId) }
            for entry in entries {
                let delta = entry.delta > 0 ? "+\(entry.delta)" : String(entry.delta)
                items.append(
                    TimelineItem(
                        at: entry.createdAt,
                        source: "ledger",
                        summary:
                            "#\(entry.id ?? 0) \(entry.kind.rawValue) \(delta) for \(entry.userId) by \(entry.actor) (key \(entry.idempotencyKey))",
                        requestId: entry.requestId
                    )
                )
            }
            var webhookKeys: [(String, String)] = []
            if let requestId {
                webhookKeys += try tx.inbox.keys(requestId: requestId)
            }
            if let userId {
                webhookKeys += try tx.queries.webhookKeys(namingUser: userId, limit: 10_000).map { ($0.source.rawValue, $0.eventId) }
            }
            for (source, eventId) in webhookKeys {
                guard let webhookSource = WebhookSource(rawValue: source),
                    let event = try tx.inbox.event(source: webhookSource, eventId: eventId)
                else { continue }
                items.append(
                    TimelineItem(
                        at: event.receivedAt,
                        source: "webhook",
                        summary: "received \(source) \(event.type) \(eventId)",
                        requestId: event.requestId
                    )
                )
                if event.status == .failed || event.status == .received {
                    items.append(
                        TimelineItem(
                            at: event.receivedAt,
                            source: "webhook",
                            summary:
                                "\(event.status.rawValue) \(eventId) after \(event.attempts) attempt(s): \(event.lastError ?? "not processed yet")",
                            requestId: event.requestId
                        )
                    )
                } else if let processed = event.processedAt {
                    items.append(
                        TimelineItem(
                            at: processed,
                            source: "webhook",
                            summary:
                                "\(event.status.rawValue) \(eventId) after \(event.attempts) attempt(s): \(event.outcome ?? event.lastError ?? "")",
                            requestId: event.requestId
                        )
                    )
                } else if let error = event.lastError {
                    items.append(
                        TimelineItem(
                            at: event.nextAttemptAt ?? event.receivedAt,
                            source: "webhook",
                            summary: "\(event.status.rawValue) \(eventId) after \(event.attempts) attempt(s): \(error)",
                            requestId: event.requestId
                        )
                    )
                }
            }
            if let userId {
                for record in try tx.audit.records(userId: userId) {
                    items.append(
                        TimelineItem(
                            at: record.at,
                            source: "audit",
                            summary: "\(record.operatorName): \(record.outcome) (reason: \(record.reason ?? "-"))",
                            requestId: nil
                        )
                    )
                }
            }
            return items.filter { since == nil || $0.at >= since! }
        }
    }
}
