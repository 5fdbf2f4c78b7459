import Foundation
import Logging
import MyBAOps
import ServiceLifecycle

/// Retries failed webhook events with backoff, and finishes events stored by a process that
/// died before processing them (it runs once at start-up, then every `interval`).
struct WebhookRetryService: Service {
    let processor: WebhookProcessor
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let handled = try await processor.processDue(logger: logger)
                    if handled > 0 { logger.info("webhook retry pass", metadata: ["webhooks.handled": .stringConvertible(handled)]) }
                } catch {
                    logger.error("webhook retry pass failed", metadata: ["error.message": .string("\(error)")])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// Drains the Stripe outbox into customer metadata.
struct StripeMirrorService: Service {
    let mirror: StripeMirror
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let (pushed, failed) = try await mirror.pushDue(logger: logger)
                    if pushed + failed > 0 {
                        logger.info("Stripe mirror pass", metadata: ["mirror.pushed": .stringConvertible(pushed), "mirror.failed": .stringConvertible(failed)])
                    }
                } catch {
                    logger.error("Stripe mirror pass failed", metadata: ["error.message": .string("\(error)")])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}

/// Reaps stale anonymous sessions every hour when `MYBA_SESSION_TTL` is set: the operation
/// `myba-admin sessions reap` runs, in the same short batches.
struct SessionReaperService: Service {
    let database: AppDatabase
    let ttl: TimeInterval
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let result = try await database.reapAnonymousSessions(lastSeenBefore: Date().addingTimeInterval(-ttl), batch: 500, dryRun: false)
                    if result.removed > 0 { logger.info("stale anonymous sessions reaped", metadata: ["sessions.removed": .stringConvertible(result.removed)]) }
                } catch {
                    logger.error("session reap failed", metadata: ["error.message": .string("\(error)")])
                }
                try? await Task.sleep(for: .seconds(3600))
            }
        }
    }
}
