import Foundation
import Hummingbird
import MyBAOps

/// `GET /api/health`: liveness and the state of storage.
struct HealthController {
    let dependencies: ServerDependencies
    let probe: StorageHealthProbe

    init(dependencies: ServerDependencies) {
        self.dependencies = dependencies
        probe = StorageHealthProbe(database: dependencies.database)
    }

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: health)
    }

    /// The public answer says whether the service is up; the configuration and the business
    /// figures (`customers`, `auth`, `ai`, `payments`, the outbox) go to operators only: a
    /// loopback peer, or the metrics token (`MetricsAccess`).
    struct HealthResponse: ResponseEncodable, Equatable {
        var status: String
        var version: String
        var uptimeSeconds: Int
        var database: String
        var customers: Int?
        var anonymousSessions: Int?
        /// `development` when dev tokens are accepted, else `clerk`.
        var auth: String?
        /// `mock` without an AI key, else `openrouter`.
        var ai: String?
        /// `enabled` when STRIPE_SECRET_KEY is set.
        var payments: String?
        /// Customers whose Stripe metadata is behind the ledger, and the oldest wait.
        var outboxDepth: Int?
        var outboxOldestPendingSeconds: Int?
        /// What has made no progress for `MYBA_WATCHDOG_STALL_MS`: `executor`, `database_writer`.
        var stalled: [String]?
    }

    @Sendable func health(_ request: Request, context: MyBARequestContext) async throws -> EditedResponse<HealthResponse> {
        let report = await probe.check()
        let storage = report.storage
        let outbox = report.outbox
        let progress = dependencies.watchdog.report()
        let healthy = storage.databaseReadable && progress.isHealthy
        var body = HealthResponse(
            status: healthy ? "ok" : "degraded",
            version: mybaVersion,
            uptimeSeconds: Int(Date().timeIntervalSince(dependencies.startedAt)),
            database: storage.databaseReadable ? "ok" : "unavailable",
            customers: storage.customers,
            anonymousSessions: storage.anonymousSessions,
            auth: dependencies.settings.auth.isDevelopmentMode ? "development" : "clerk",
            ai: dependencies.generator.defaultProviderName,
            payments: dependencies.stripe == nil ? "disabled" : "enabled",
            outboxDepth: outbox?.depth,
            outboxOldestPendingSeconds: outbox?.oldestPendingSeconds,
            stalled: progress.isHealthy ? nil : progress.stalled
        )
        if !MetricsAccess(settings: dependencies.settings).admits(request, context: context) {
            body.customers = nil
            body.anonymousSessions = nil
            body.auth = nil
            body.ai = nil
            body.payments = nil
            body.outboxDepth = nil
            body.outboxOldestPendingSeconds = nil
        }
        if let problem = storage.problem {
            context.logger.error("health check: database unreadable", metadata: ["error.message": .string(problem)])
        }
        return EditedResponse(status: healthy ? .ok : .serviceUnavailable, response: body)
    }
}
