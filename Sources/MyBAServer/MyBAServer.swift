import Foundation
import Hummingbird
import Logging
import Metrics
import MyBAOps
import Prometheus
import ServiceLifecycle

@main
struct MyBAServer {
    static func main() async {
        // Everything this process creates (database, WAL, lock, logs) is its owner's only: the
        // ledger and the logs hold customers' data.
        umask(0o077)
        let settings: MyBASettings
        do {
            settings = try MyBASettings.fromEnvironment()
        } catch {
            fail("myba-server: \(error)")
        }
        if settings.isProduction {
            let problems = settings.productionProblems()
            if !problems.isEmpty {
                fail("myba-server: refusing to start in production (MYBA_ENV=production or a live Stripe key): " + problems.joined(separator: "; "))
            }
        }
        let logWriter: RotatingFileWriter
        do {
            logWriter = try RotatingFileWriter(path: settings.logFile, maxBytes: settings.logMaxBytes, maxFiles: settings.logMaxFiles)
        } catch {
            fail("myba-server: \(error)")
        }
        raiseOpenFileLimit()
        let level = Logger.Level(name: settings.logLevel) ?? .info
        let destination = LogDestination.all([.standardOutput, .file(logWriter)])
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level, destination: destination) }
        let logger = Logger(label: "myba.server")
        let metricsRegistry = PrometheusCollectorRegistry()
        var metricsFactory = PrometheusMetricsFactory(registry: metricsRegistry)
        // Requests and webhooks take milliseconds, not the seconds of the default buckets.
        metricsFactory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        MetricsSystem.bootstrap(metricsFactory)
        do {
            let server = try await buildServer(settings: settings, logger: logger, metricsRegistry: metricsRegistry)
            // Held until the process ends: `myba-admin db restore` refuses while it is.
            // (An SQLite file only: PostgreSQL is restored with its own tools.)
            let presence = try DatabaseLocation.parse(settings.databasePath).isSQLite ? ServerPresence(databasePath: settings.databasePath) : nil
            defer { withExtendedLifetime(presence) {} }
            // The deadline is listed last so that it hears SIGTERM first (services stop in reverse).
            let group = ServiceGroup(
                configuration: .init(
                    services: [server.application, server.shutdownDeadline],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
            logger.info("server stopped")
        } catch {
            logger.critical("server failed", metadata: ["error.message": "\(error)"])
            fail("myba-server: \(error)")
        }
    }

    /// Each client and each upstream call holds a descriptor, and the usual soft limit (1024) is
    /// below what a few hundred concurrent generations need: take the hard limit, as servers do.
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
}
