import Foundation
import Hummingbird
import Logging
import MyBAOps

/// Everything the HTTP layer needs, built once at start-up.
struct ServerDependencies: Sendable {
    var settings: MyBASettings
    var database: AppDatabase
    var plans: PlanCatalog
    var startedAt: Date
}

/// Builds the server from settings: opens and migrates the database, loads and validates the
/// plans, and wires the router. Used by `main` and by the tests.
func buildApplication(settings: MyBASettings, logger: Logger) async throws -> some ApplicationProtocol {
    let plans = try settings.plansFile.map(PlanCatalog.load(contentsOf:)) ?? .standard
    let database = try AppDatabase.openFile(
        at: settings.databasePath,
        options: .init(busyTimeout: settings.busyTimeoutSeconds, createIfMissing: true))
    let dependencies = ServerDependencies(settings: settings, database: database, plans: plans, startedAt: Date())
    let router = buildRouter(dependencies)
    logger.info("server starting", metadata: [
        "db.path": .string(database.path),
        "http.host": .string(settings.host),
        "http.port": .stringConvertible(settings.port),
        "myba.env": .string(settings.environmentName),
        "myba.version": .string(mybaVersion),
        "plans.source": .string(settings.plansFile ?? "built-in"),
    ])
    return Application(
        router: router,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
        onServerRunning: { channel in
            logger.info("server listening", metadata: [
                "http.host": .string(settings.host),
                "http.port": .stringConvertible(channel.localAddress?.port ?? settings.port),
            ])
        },
        logger: logger
    )
}

/// The routes and middleware of the public API.
func buildRouter(_ dependencies: ServerDependencies) -> Router<MyBARequestContext> {
    let router = Router(context: MyBARequestContext.self)
    router.addMiddleware {
        RequestIDMiddleware(maxBodyBytes: dependencies.settings.maxBodyBytes)
        AccessLogMiddleware()
        JSONErrorMiddleware()
        BodyLimitMiddleware()
    }
    router.addRoutes(HealthController(database: dependencies.database, startedAt: dependencies.startedAt).endpoints, atPath: "/api/health")
    router.addRoutes(PlansController(catalog: dependencies.plans).endpoints, atPath: "/api/plans")
    return router
}
