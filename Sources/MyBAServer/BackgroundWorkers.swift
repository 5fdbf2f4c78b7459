import Foundation
import Logging
import MyBAOps
import ServiceLifecycle

/// Runs `pass` once at start-up and then every `interval` until graceful shutdown. A failing
/// pass is logged and the next one runs on time: a worker never dies of one bad pass.
struct PeriodicService: Service {
    let name: String
    let interval: Duration
    let logger: Logger
    let pass: @Sendable () async throws -> Void

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await pass()
                } catch {
                    logger.error("\(name) pass failed", metadata: ["error.message": .string("\(error)")])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}

extension PeriodicService {
    /// Retries failed webhook events with backoff, and finishes events stored by a process
    /// that died before processing them.
    static func webhookRetries(_ processor: WebhookProcessor, every interval: Duration, logger: Logger) -> PeriodicService {
        PeriodicService(name: "webhook retry", interval: interval, logger: logger) {
            let handled = try await processor.processDue(logger: logger)
            if handled > 0 { logger.info("webhook retry pass", metadata: ["webhooks.handled": .stringConvertible(handled)]) }
        }
    }

    /// Drains the Stripe outbox into customer metadata.
    static func stripeMirror(_ mirror: StripeMirror, every interval: Duration, logger: Logger) -> PeriodicService {
        PeriodicService(name: "Stripe mirror", interval: interval, logger: logger) {
            let (pushed, failed) = try await mirror.pushDue(logger: logger)
            if pushed + failed > 0 {
                logger.info("Stripe mirror pass", metadata: ["mirror.pushed": .stringConvertible(pushed), "mirror.failed": .stringConvertible(failed)])
            }
        }
    }

    /// Reaps stale anonymous sessions hourly when `MYBA_SESSION_TTL` is set: the operation
    /// `myba-admin sessions reap` runs, in the same short batches.
    static func sessionReaper(_ database: AppDatabase, ttl: TimeInterval, logger: Logger) -> PeriodicService {
        PeriodicService(name: "session reap", interval: .seconds(3600), logger: logger) {
            let result = try await database.reapAnonymousSessions(lastSeenBefore: Date().addingTimeInterval(-ttl), batch: 100, dryRun: false)
            if result.removed > 0 { logger.info("stale anonymous sessions reaped", metadata: ["sessions.removed": .stringConvertible(result.removed)]) }
        }
    }
}
