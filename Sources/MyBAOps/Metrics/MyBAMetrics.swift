import Foundation
import Metrics

/// Every metric MyBA records, named in one place (docs/metrics.md lists them with their labels).
///
/// Recording goes through swift-metrics' global API, so it costs nothing until an executable
/// bootstraps a backend: the server exports Prometheus text at `/metrics`; the console and the
/// tests record into the no-op default.
public enum MyBAMetrics {
    /// HTTP requests by route template (never the raw path, so ids don't explode the series),
    /// method and status.
    public static func recordRequest(route: String, method: String, status: Int, duration: Duration) {
        let dimensions = [("route", route), ("method", method), ("status", String(status))]
        Counter(label: "myba_http_requests_total", dimensions: dimensions).increment()
        Metrics.Timer(label: "myba_http_request_duration_seconds", dimensions: dimensions).recordNanoseconds(duration.nanoseconds)
    }

    /// A ledger entry that was committed (replays of an idempotency key are not counted).
    static func recordCommittedEntry(kind: LedgerEntryKind, delta: Int) {
        if kind == .consume {
            Counter(label: "myba_tokens_consumed_total", dimensions: [("payer", "account")]).increment(by: -delta)
        } else if delta > 0 {
            Counter(label: "myba_tokens_granted_total", dimensions: [("kind", kind.rawValue)]).increment(by: delta)
        } else if delta < 0 {
            Counter(label: "myba_tokens_removed_total", dimensions: [("kind", kind.rawValue)]).increment(by: -delta)
        }
    }

    /// An anonymous session's token charge (+) or release (−) that was committed.
    static func recordCommittedSessionCharge(amount: Int) {
        if amount > 0 {
            Counter(label: "myba_tokens_consumed_total", dimensions: [("payer", "session")]).increment(by: amount)
        } else if amount < 0 {
            Counter(label: "myba_tokens_granted_total", dimensions: [("kind", LedgerEntryKind.release.rawValue)]).increment(by: -amount)
        }
    }

    /// The free tokens of a new anonymous session, once it is committed.
    static func recordCommittedSession(granted: Int) {
        Counter(label: "myba_tokens_granted_total", dimensions: [("kind", "anonymous_session")]).increment(by: granted)
    }

    /// What happened to one webhook delivery or processing attempt: `processed`, `ignored`,
    /// `failed`, `duplicate` (a redelivery of a stored event) or `rejected` (bad signature).
    public static func recordWebhook(source: WebhookSource, outcome: String, duration: Duration? = nil) {
        let dimensions = [("source", source.rawValue), ("outcome", outcome)]
        Counter(label: "myba_webhook_events_total", dimensions: dimensions).increment()
        if let duration {
            Metrics.Timer(label: "myba_webhook_processing_seconds", dimensions: [("source", source.rawValue)]).recordNanoseconds(duration.nanoseconds)
        }
    }

    /// Reads the gauges that describe stored state (outbox depth, sessions, customers) and sets
    /// them; called just before an export so they are current.
    public static func refreshGauges(from database: AppDatabase) async throws {
        let outbox = try await database.outbox.status()
        let snapshot = try await database.queries.metricsSnapshot()
        Gauge(label: "myba_stripe_outbox_pending").record(outbox.depth)
        Gauge(label: "myba_stripe_outbox_oldest_pending_seconds").record(outbox.oldestPendingSeconds ?? 0)
        Gauge(label: "myba_anonymous_sessions", dimensions: [("state", "open")]).record(snapshot.openAnonymousSessions)
        Gauge(label: "myba_anonymous_sessions", dimensions: [("state", "transferred")]).record(snapshot.transferredAnonymousSessions)
        Gauge(label: "myba_customers").record(snapshot.customers)
        Gauge(label: "myba_webhook_events_pending").record(snapshot.webhooksPending)
    }
}

/// Stored state the metrics gauges report besides the outbox.
public struct MetricsSnapshot: Sendable, Equatable {
    public var openAnonymousSessions: Int
    public var transferredAnonymousSessions: Int
    public var customers: Int
    /// Webhook events stored but not yet processed (received, or failed and due for a retry).
    public var webhooksPending: Int
}

extension ConsoleQueries {
    /// Counts for the metrics gauges, in one read transaction.
    public func metricsSnapshot() async throws -> MetricsSnapshot {
        try await database.read { tx in try tx.queries.metricsSnapshot() }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
