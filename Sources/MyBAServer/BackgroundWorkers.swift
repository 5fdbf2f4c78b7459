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
    static func webhookRetries(_ processor: WebhookProcessor, every interval: Duration, leaseSeconds: Int, logger: Logger) -> PeriodicService {
        PeriodicService(name: "webhook retry", interval: interval, logger: logger) {
            let handled = try await processor.processDue(leaseSeconds: leaseSeconds, logger: logger)
            if handled > 0 { logger.info("webhook retry pass", metadata: ["webhooks.handled": .stringConvertible(handled)]) }
        }
    }

    /// Drains the Stripe outbox into customer metadata.
    static func stripeMirror(_ mirror: StripeMirror, every interval: Duration, leaseSeconds: Int, logger: Logger) -> PeriodicService {
        PeriodicService(name: "Stripe mirror", interval: interval, logger: logger) {
            let (pushed, failed) = try await mirror.pushDue(leaseSeconds: leaseSeconds, logger: logger)
            if pushed + failed > 0 {
                logger.info(
                    "Stripe mirror pass",
                    metadata: ["mirror.pushed": .stringConvertible(pushed), "mirror.failed": .stringConvertible(failed)]
                )
            }
        }
    }

    /// Gives back the tokens of generations whose reservation outlived its deadline (their
    /// process died mid-call): at start-up, then a few times per deadline, while serving. A
    /// release that cannot be applied is logged and recorded on its generation, never fatal. The
    /// same pass removes own-key generations older than a day.
    static func reservationSweep(_ database: AppDatabase, deadlineSeconds: Double, logger: Logger) -> PeriodicService {
        let interval = Duration.milliseconds(Int(min(15, max(1, deadlineSeconds / 4)) * 1000))
        return PeriodicService(name: "reservation sweep", interval: interval, logger: logger) {
            let report = try await database.generations.releaseAbandoned(reservedBefore: Date().addingTimeInterval(-deadlineSeconds))
            if report.released > 0 {
                logger.warning("released tokens of abandoned generations", metadata: ["generations.released": .stringConvertible(report.released)])
            }
            for problem in report.unapplied {
                logger.error("abandoned generation closed without giving its token back", metadata: ["error.message": .string(problem)])
            }
            let pruned = try await database.generations.pruneOwnKey(createdBefore: Date().addingTimeInterval(-86_400))
            if pruned > 0 {
                logger.info("own-key generations older than a day removed", metadata: ["generations.removed": .stringConvertible(pruned)])
            }
        }
    }

    /// Reaps stale anonymous sessions hourly when `MYBA_SESSION_TTL` is set: the operation
    /// `myba-admin sessions reap` runs, in the same short batches.
    static func sessionReaper(_ database: AppDatabase, ttl: TimeInterval, logger: Logger) -> PeriodicService {
        PeriodicService(name: "session reap", interval: .seconds(3600), logger: logger) {
            let result = try await database.sessions.reap(lastSeenBefore: Date().addingTimeInterval(-ttl), batch: 100, dryRun: false)
            if result.removed > 0 {
                logger.info("stale anonymous sessions reaped", metadata: ["sessions.removed": .stringConvertible(result.removed)])
            }
        }
    }
}

/// Runs the progress watchdog while the server runs.
struct WatchdogService: Service {
    let watchdog: ProgressWatchdog

    func run() async throws {
        watchdog.start()
        try? await gracefulShutdown()
        watchdog.stop()
    }
}

/// Bounds a graceful shutdown (SIGTERM/SIGINT) to `MYBA_SHUTDOWN_TIMEOUT_MS`.
///
/// It must hear the signal first, so it runs beside the application in the outer service group,
/// listed after it (groups stop their services in reverse order). On the signal the server stops
/// accepting and lets requests in flight finish. Near the end of the bound the outbound HTTP
/// client abandons every upstream call still open, so those generations fail fast and give their
/// tokens back; at the bound, whatever still holds on, the process exits (logged as critical; a
/// reservation left behind is released by the next start). Timing runs on a thread of its own,
/// so a stuck executor cannot hold it.
struct ShutdownDeadline: Service {
    let bound: Duration
    let http: CurlHTTPClient
    let logger: Logger

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return
        }
        let bound = self.bound.timeInterval
        let abandonAfter = bound - min(2, bound * 0.3)
        let http = self.http
        let logger = self.logger
        logger.notice(
            "shutting down",
            metadata: ["shutdown.bound.ms": .stringConvertible(Int(bound * 1000)), "http.outbound.in_flight": .stringConvertible(http.inFlight)]
        )
        let thread = Thread {
            Thread.sleep(forTimeInterval: abandonAfter)
            let open = http.inFlight
            if open > 0 {
                logger.warning("shutdown: abandoning upstream calls still open", metadata: ["http.outbound.in_flight": .stringConvertible(open)])
            }
            http.cancelAll()
            Thread.sleep(forTimeInterval: bound - abandonAfter)
            logger.critical(
                "shutdown: still running at the shutdown bound; exiting now",
                metadata: ["shutdown.bound.ms": .stringConvertible(Int(bound * 1000))]
            )
            exit(0)
        }
        thread.name = "myba-shutdown"
        thread.start()
    }
}
