import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import MyBAOps
import Prometheus
import ServiceLifecycle

/// Everything the HTTP layer needs, built once at start-up.
struct ServerDependencies: Sendable {
    var settings: MyBASettings
    var database: AppDatabase
    var startedAt: Date
    var verifier: ClerkTokenVerifier
    var generator: TicketGenerator
    var webhookProcessor: WebhookProcessor
    /// `nil` when STRIPE_SECRET_KEY is not set: payments are disabled.
    var stripe: StripeClient?
    /// What `/metrics` exports; the executable bootstraps swift-metrics into it.
    var metricsRegistry: PrometheusCollectorRegistry
    /// Every outbound call (AI providers, Clerk JWKS, Stripe); abandoned at the shutdown bound.
    var http: CurlHTTPClient
    /// Notices a stuck executor or database writer; read by `/api/health`.
    var watchdog: ProgressWatchdog
}

/// Opens and migrates the database, loads and validates the plans, and makes the clients: what
/// the router and the background services share.
func buildDependencies(
    settings: MyBASettings,
    logger: Logger,
    metricsRegistry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
) async throws -> ServerDependencies {
    // A bad plans file stops start-up before the database is touched.
    let plansFile = try settings.plansFile.map { ($0, try PlanCatalog.load(contentsOf: $0)) }
    let database = try await AppDatabase.open(
        settings.databasePath,
        options: .init(busyTimeout: settings.busyTimeoutSeconds, createIfMissing: true),
        logger: logger
    )
    // Several servers on one PostgreSQL: a balance changed on another server reaches the
    // browsers streaming balance events from this one.
    database.postgres?.relayBalanceChanges()
    if let (path, catalog) = plansFile {
        switch try await database.plans.adoptFile(catalog, path: path) {
        case .installed(let installed):
            logger.notice("plans file installed", metadata: ["plans.version": .stringConvertible(installed.version), "plans.source": .string(path)])
        case .unchanged(let current):
            logger.info(
                "plans file unchanged since it was installed; the catalog in force stays",
                metadata: ["plans.version": .stringConvertible(current.version), "plans.source": .string(current.source)]
            )
        }
    }
    let http = CurlHTTPClient(settings: settings.outboundHTTP)
    return ServerDependencies(
        settings: settings,
        database: database,
        startedAt: Date(),
        verifier: try ClerkTokenVerifier(settings: settings.auth, http: http),
        generator: TicketGenerator(database: database, settings: settings.ai, http: http, addressSecret: settings.anonymous.fingerprintSecret),
        webhookProcessor: WebhookProcessor(database: database),
        stripe: settings.stripe.secretKey == nil ? nil : try StripeClient(settings: settings.stripe, http: http),
        metricsRegistry: metricsRegistry,
        http: http,
        watchdog: ProgressWatchdog(threshold: .milliseconds(Int(settings.watchdogStallSeconds * 1000)), logger: logger) {
            database.writerStalledFor()
        }
    )
}

/// Builds the server from settings: the dependencies, the router and the background services.
/// Used by the tests. `metricsRegistry` is what `/metrics` exports: `main` bootstraps
/// swift-metrics into it; tests may pass a fresh one.
func buildApplication(
    settings: MyBASettings,
    logger: Logger,
    metricsRegistry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
) async throws -> some ApplicationProtocol {
    try await buildServer(settings: settings, logger: logger, metricsRegistry: metricsRegistry).application
}

/// The application and what bounds its shutdown, which `main` runs beside it in the group that
/// handles SIGTERM/SIGINT (see `ShutdownDeadline`).
func buildServer(
    settings: MyBASettings,
    logger: Logger,
    metricsRegistry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
) async throws -> (application: some ApplicationProtocol, shutdownDeadline: ShutdownDeadline) {
    let dependencies = try await buildDependencies(settings: settings, logger: logger, metricsRegistry: metricsRegistry)
    let database = dependencies.database
    let webhookProcessor = dependencies.webhookProcessor
    let generator = dependencies.generator
    var services: [any Service] = [
        WatchdogService(watchdog: dependencies.watchdog),
        PeriodicService.webhookRetries(
            webhookProcessor,
            every: .seconds(settings.webhookRetryIntervalSeconds),
            leaseSeconds: settings.workLeaseSeconds,
            logger: logger
        ),
        PeriodicService.reservationSweep(
            database,
            deadlineSeconds: ReservationDeadline.seconds(ai: settings.ai, busyTimeoutSeconds: settings.busyTimeoutSeconds),
            logger: logger
        ),
    ]
    if let ttl = settings.sessionTTLSeconds {
        services.append(PeriodicService.sessionReaper(database, ttl: ttl, logger: logger))
    }
    if let stripe = dependencies.stripe {
        services.append(
            PeriodicService.stripeMirror(
                StripeMirror(database: database, stripe: stripe),
                every: .milliseconds(settings.mirrorIntervalMilliseconds),
                leaseSeconds: settings.workLeaseSeconds,
                logger: logger
            )
        )
    } else {
        logger.notice("payments disabled: STRIPE_SECRET_KEY is not set; balance changes wait in the Stripe outbox")
    }
    let router = buildRouter(dependencies)
    let plans = try await database.plans.installed()
    if settings.auth.isDevelopmentMode {
        logger.warning(
            "DEVELOPMENT AUTH: no Clerk key is configured (CLERK_JWT_KEY, CLERK_SECRET_KEY or CLERK_JWKS_URL); any `Bearer dev:<userId>` is accepted as that user. Never run like this in production.",
            metadata: ["auth.mode": "development"]
        )
    }
    logger.info(
        "server starting",
        metadata: [
            "db.path": .string(database.path),
            "http.host": .string(settings.host),
            "http.port": .stringConvertible(settings.port),
            "myba.env": .string(settings.environmentName),
            "myba.version": .string(mybaVersion),
            "plans.version": .stringConvertible(plans.version),
            "plans.source": .string(plans.source),
            "auth.mode": .string(settings.auth.isDevelopmentMode ? "development" : "clerk"),
            "ai.provider": .string(generator.defaultProviderName),
            "stripe.api": .string(settings.stripe.secretKey == nil ? "disabled" : settings.stripe.apiBase.absoluteString),
        ]
    )
    if !settings.faultInjection.isEmpty {
        logger.critical(
            "FAULT INJECTION is on; this server will crash on purpose",
            metadata: ["fault.points": .string(settings.faultInjection.sorted().joined(separator: ","))]
        )
    }
    // A connection that has not completed a request's head within the idle timeout, or sits
    // idle between requests that long, is closed: a slowloris cannot hold descriptors. Headers
    // are bounded well below the library's 80 KiB.
    let http1 = HTTP1Channel.Configuration(
        idleTimeout: .milliseconds(Int64(settings.connectionIdleTimeoutSeconds * 1000)),
        httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 * 1024, maxHeaderListSize: 32 * 1024, maxHeaderFieldCount: 100)
    )
    let application = Application(
        router: router,
        server: .http1(configuration: http1),
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil, backlog: settings.listenBacklog),
        services: services,
        onServerRunning: { channel in
            logger.info(
                "server listening",
                metadata: [
                    "http.host": .string(settings.host),
                    "http.port": .stringConvertible(channel.localAddress?.port ?? settings.port),
                ]
            )
        },
        logger: logger
    )
    let deadline = ShutdownDeadline(bound: .milliseconds(Int(settings.shutdownTimeoutSeconds * 1000)), http: dependencies.http, logger: logger)
    return (application, deadline)
}

/// The routes and middleware of the public API.
func buildRouter(_ dependencies: ServerDependencies) -> Router<MyBARequestContext> {
    let router = Router(context: MyBARequestContext.self)
    router.addMiddleware {
        RequestIDMiddleware(maxBodyBytes: dependencies.settings.maxBodyBytes)
        AccessLogMiddleware()
        JSONErrorMiddleware()
        BodyLimitMiddleware()
        AuthenticationMiddleware(
            verifier: dependencies.verifier,
            database: dependencies.database,
            trustedProxies: dependencies.settings.anonymous.trustedProxies
        )
    }
    router.addRoutes(HealthController(dependencies: dependencies).endpoints, atPath: "/api/health")
    router.addRoutes(
        MetricsController(
            registry: dependencies.metricsRegistry,
            database: dependencies.database,
            access: MetricsAccess(settings: dependencies.settings)
        ).endpoints,
        atPath: "/metrics"
    )
    router.addRoutes(OpenAPIController().endpoints, atPath: "/openapi.json")
    router.addRoutes(WebPageController(settings: dependencies.settings).endpoints)
    router.addRoutes(AccountController(database: dependencies.database).endpoints, atPath: "/api/account")
    router.addRoutes(PlansController(database: dependencies.database).endpoints, atPath: "/api/plans")
    router.addRoutes(
        AnonymousSessionController(database: dependencies.database, settings: dependencies.settings.anonymous).endpoints,
        atPath: "/api/anonymous-session"
    )
    router.addRoutes(UserTokensController(database: dependencies.database).endpoints, atPath: "/api/user-tokens")
    router.addRoutes(
        TransferController(database: dependencies.database, settings: dependencies.settings.anonymous).endpoints,
        atPath: "/api/transfer-anonymous-tokens"
    )
    router.addRoutes(GenerateController(generator: dependencies.generator).endpoints, atPath: "/api/generate")
    router.addRoutes(
        CheckoutController(settings: dependencies.settings, database: dependencies.database, stripe: dependencies.stripe)
            .endpoints,
        atPath: "/api/create-checkout-session"
    )
    router.addRoutes(
        WebhookController(
            settings: dependencies.settings,
            intake: WebhookIntake(
                database: dependencies.database,
                processor: dependencies.webhookProcessor,
                faultInjection: dependencies.settings.faultInjection
            )
        ).endpoints,
        atPath: "/api/webhook"
    )
    router.add(middleware: MethodNotAllowedMiddleware(routes: router.routes))
    return router
}

/// A known path asked with a method it does not serve is 405 with `Allow`, not 404: the client
/// got the method wrong, not the address. Any method counts, including ones Hummingbird has no
/// name for (QUERY), which is why this looks at unmatched requests instead of adding routes.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = MyBARequestContext
    /// Path templates split into segments (`{…}` matches any one segment) and what they serve.
    let templates: [(segments: [Substring], allow: String)]

    init(routes: [Router<MyBARequestContext>.RouteDescription]) {
        var methodsByPath: [String: Set<String>] = [:]
        for route in routes { methodsByPath[route.path.description, default: []].insert(route.method.rawValue) }
        templates = methodsByPath.map { path, methods in (path.split(separator: "/"), methods.sorted().joined(separator: ", ")) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && (context.endpointPath == nil || context.endpointPath == "NotFound") {
            let segments = request.uri.path.split(separator: "/")
            guard
                let match = templates.first(where: { template in
                    template.segments.count == segments.count
                        && zip(template.segments, segments).allSatisfy { pattern, segment in pattern.hasPrefix("{") || pattern == segment }
                })
            else { throw error }
            throw APIError(
                .methodNotAllowed,
                code: "method_not_allowed",
                message: "\(request.method.rawValue.prefix(20)) is not served here; use \(match.allow)",
                headers: [.allow: match.allow]
            )
        }
    }
}
