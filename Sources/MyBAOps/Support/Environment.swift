import Foundation

/// Settings shared by the server and the console, read from the environment.
///
/// Every setting has a default that works on a fresh machine; a value that is set but invalid
/// is an error naming the variable, never silently replaced by the default.
public struct MyBASettings: Equatable, Sendable {
    /// Where the SQLite file lives when `MYBA_DATABASE` is not set.
    public static let defaultDatabasePath = "data/myba.sqlite"
    public static let defaultLogFile = "data/logs/myba.jsonl"

    public var host: String
    public var port: Int
    public var databasePath: String
    public var logFile: String
    public var logMaxBytes: Int
    public var logMaxFiles: Int
    public var logLevel: String
    public var plansFile: String?
    /// `MYBA_ENV`: `development`, `staging`, `production`, … shown by the console.
    public var environmentName: String
    public var busyTimeoutSeconds: Double
    public var maxBodyBytes: Int
    /// Clerk session-token verification; `nil` key sources mean development auth.
    public var auth: AuthSettings
    /// Anonymous visitors.
    public var anonymous: AnonymousSettings
    /// AI providers for `/api/generate`.
    public var ai: AISettings
    /// Stripe payments and webhooks.
    public var stripe: StripeSettings
    /// `MYBA_PUBLIC_URL`: the front end's address (Checkout return URLs, OpenRouter referer).
    public var publicURL: String
    /// `MYBA_FAULT_INJECTION`: test-only crash points (see README); never set in production.
    public var faultInjection: Set<String>
    /// Serve `/metrics` to any address, not only loopback (for a scraper on another host; put
    /// the proxy's rules in front of it).
    public var metricsPublic = false
    /// `MYBA_METRICS_TOKEN`: when set, `/metrics` requires it in `X-Metrics-Token` from any address.
    public var metricsToken: String?
    /// `MYBA_WEBHOOK_RETRY_SECONDS`: how often the retry worker looks for due events.
    public var webhookRetryIntervalSeconds: Int = 5
    /// `MYBA_SESSION_TTL` (`30d`, `24h` …): the server reaps untransferred anonymous sessions not
    /// seen for this long; `nil` leaves it to `myba-admin sessions reap`.
    public var sessionTTLSeconds: Double?

    /// How long unseen makes an anonymous session stale, for every reader of the word (`stats`,
    /// `sessions list --stale-after` by default, the reaping runbook's cron line): the server's
    /// `MYBA_SESSION_TTL` when set, else 30 days.
    public var staleSessionSeconds: Double { sessionTTLSeconds ?? 30 * 86400 }
    /// `MYBA_MIRROR_INTERVAL_MS`: how often the Stripe mirror drains the outbox.
    public var mirrorIntervalMilliseconds: Int = 1000
    /// `MYBA_WORK_LEASE_SECONDS`: on PostgreSQL, how long a server's claim on a webhook event
    /// (retry worker) or an outbox row (Stripe mirror) keeps other servers off it; a server that
    /// dies mid-row leaves the row to the others after this. Longer than any one push takes.
    public var workLeaseSeconds: Int = 120
    /// `MYBA_CHECKOUTS_PER_HOUR`: Checkout Sessions one account may open per hour.
    public var checkoutsPerHour = 10
    /// Outbound HTTP limits (`MYBA_HTTP_MAX_CONNECTIONS_PER_HOST`, `MYBA_HTTP_IDLE_CLOSE_MS`).
    public var outboundHTTP = OutboundHTTPSettings()
    /// `MYBA_SHUTDOWN_TIMEOUT_MS`: SIGTERM/SIGINT to exit at most. Requests in flight get most of
    /// it to finish; then upstream calls are abandoned (their tokens released) and, if anything
    /// still holds on, the process exits anyway.
    public var shutdownTimeoutSeconds: Double = 10
    /// `MYBA_WATCHDOG_STALL_MS`: the executor or the database writer making no progress for this
    /// long makes `/api/health` report `degraded` and logs an error.
    public var watchdogStallSeconds: Double = 3
    /// `MYBA_CONNECTION_IDLE_MS`: a client connection that has not sent a complete request head
    /// for this long (a slowloris), or idles that long between requests, is closed.
    public var connectionIdleTimeoutSeconds: Double = 30
    /// `MYBA_LISTEN_BACKLOG`: connections the kernel queues before the server accepts them. A
    /// burst larger than the queue (hundreds of clients connecting at once) is dropped, and each
    /// dropped client retries its SYN a full second later (capped by `net.core.somaxconn`).
    public var listenBacklog: Int = 4096

    public init(
        host: String = "127.0.0.1",
        port: Int = 3001,
        databasePath: String = defaultDatabasePath,
        logFile: String = defaultLogFile,
        logMaxBytes: Int = 50 * 1024 * 1024,
        logMaxFiles: Int = 5,
        logLevel: String = "info",
        plansFile: String? = nil,
        environmentName: String = "development",
        busyTimeoutSeconds: Double = 5,
        maxBodyBytes: Int = 1024 * 1024,
        auth: AuthSettings = AuthSettings(),
        anonymous: AnonymousSettings = AnonymousSettings(),
        ai: AISettings = AISettings(),
        stripe: StripeSettings = StripeSettings(),
        publicURL: String = "http://localhost:5173",
        faultInjection: Set<String> = []
    ) {
        self.stripe = stripe
        self.publicURL = publicURL
        self.faultInjection = faultInjection
        self.auth = auth
        self.anonymous = anonymous
        self.ai = ai
        self.host = host
        self.port = port
        self.databasePath = databasePath
        self.logFile = logFile
        self.logMaxBytes = logMaxBytes
        self.logMaxFiles = logMaxFiles
        self.logLevel = logLevel
        self.plansFile = plansFile
        self.environmentName = environmentName
        self.busyTimeoutSeconds = busyTimeoutSeconds
        self.maxBodyBytes = maxBodyBytes
    }

    /// Reads the settings from `environment` (the process environment by default).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MyBASettings {
        var settings = MyBASettings()
        let env = EnvironmentReader(environment)
        settings.host = env.string("MYBA_HOST") ?? settings.host
        settings.port = try env.integer("PORT", in: 0...65535) ?? settings.port
        settings.databasePath = env.string("MYBA_DATABASE") ?? settings.databasePath
        settings.logFile = env.string("MYBA_LOG_FILE") ?? settings.logFile
        settings.logMaxBytes = try env.integer("MYBA_LOG_MAX_BYTES", in: 4096...Int(Int32.max)) ?? settings.logMaxBytes
        settings.logMaxFiles = try env.integer("MYBA_LOG_MAX_FILES", in: 0...1000) ?? settings.logMaxFiles
        if let level = env.string("MYBA_LOG_LEVEL") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(level) else {
                throw SettingsError(variable: "MYBA_LOG_LEVEL", problem: "must be one of \(levels.joined(separator: ", ")), got \"\(level)\"")
            }
            settings.logLevel = level
        }
        settings.plansFile = env.string("MYBA_PLANS_FILE")
        settings.environmentName = env.string("MYBA_ENV") ?? settings.environmentName
        if let timeout = try env.integer("MYBA_DB_BUSY_TIMEOUT_MS", in: 1...600_000) {
            settings.busyTimeoutSeconds = Double(timeout) / 1000
        }
        settings.maxBodyBytes = try env.integer("MYBA_MAX_BODY_BYTES", in: 1024...(64 * 1024 * 1024)) ?? settings.maxBodyBytes

        settings.auth.jwtPublicKeyPEM = env.string("CLERK_JWT_KEY").map { $0.replacingOccurrences(of: "\\n", with: "\n") }
        settings.auth.secretKey = env.string("CLERK_SECRET_KEY")
        settings.auth.jwksURL =
            try env.url("CLERK_JWKS_URL")
            ?? (settings.auth.secretKey != nil ? URL(string: "https://api.clerk.com/v1/jwks") : nil)
        settings.auth.authorizedParties = env.list("MYBA_AUTHORIZED_PARTIES")
        settings.auth.issuer = try env.url("CLERK_ISSUER").map {
            $0.absoluteString.hasSuffix("/") ? String($0.absoluteString.dropLast()) : $0.absoluteString
        }

        if let proxies = env.string("MYBA_TRUST_PROXY") {
            guard let count = Int(proxies), (0...10).contains(count) else {
                throw SettingsError(
                    variable: "MYBA_TRUST_PROXY",
                    problem: "is the number of proxies in front of the server (0–10; 1 for one nginx or load balancer), got \"\(proxies)\""
                )
            }
            settings.anonymous.trustedProxies = count
        }
        settings.anonymous.sessionsPerHour = try env.integer("MYBA_ANON_SESSIONS_PER_HOUR", in: 1...1_000_000) ?? settings.anonymous.sessionsPerHour
        settings.anonymous.freeTokens = try env.integer("MYBA_ANON_TOKENS", in: 0...1000) ?? settings.anonymous.freeTokens
        settings.anonymous.maxTransfersPerAccount =
            try env.integer("MYBA_MAX_SESSION_TRANSFERS", in: 0...1000) ?? settings.anonymous.maxTransfersPerAccount
        settings.anonymous.fingerprintSecret = env.string("MYBA_FINGERPRINT_SECRET") ?? settings.anonymous.fingerprintSecret

        settings.ai.openRouterKey = env.string("OPENROUTER_API_KEY") ?? env.string("OPENAI_API_KEY")
        settings.ai.models = env.list("MYBA_AI_MODELS").nilIfEmpty ?? settings.ai.models
        settings.ai.openRouterBase = try env.url("OPENROUTER_API_BASE") ?? settings.ai.openRouterBase
        settings.ai.openAIBase = try env.url("OPENAI_API_BASE") ?? settings.ai.openAIBase
        settings.ai.anthropicBase = try env.url("ANTHROPIC_API_BASE") ?? settings.ai.anthropicBase
        if let timeout = try env.integer("MYBA_AI_TIMEOUT_MS", in: 100...600_000) { settings.ai.timeoutSeconds = Double(timeout) / 1000 }
        settings.ai.maxInFlight = try env.integer("MYBA_MAX_GENERATIONS_IN_FLIGHT", in: 1...100_000) ?? settings.ai.maxInFlight
        settings.ai.maxInFlightPerAccount = try env.integer("MYBA_MAX_GENERATIONS_PER_ACCOUNT", in: 1...10_000) ?? settings.ai.maxInFlightPerAccount
        settings.ai.ownKeyPerHourPerAddress =
            try env.integer("MYBA_OWN_KEY_PER_HOUR_ADDRESS", in: 1...1_000_000) ?? settings.ai.ownKeyPerHourPerAddress
        settings.ai.ownKeyPerHourPerAccount =
            try env.integer("MYBA_OWN_KEY_PER_HOUR_ACCOUNT", in: 1...1_000_000) ?? settings.ai.ownKeyPerHourPerAccount
        settings.publicURL =
            try env.url("MYBA_PUBLIC_URL").map { $0.absoluteString.hasSuffix("/") ? String($0.absoluteString.dropLast()) : $0.absoluteString }
            ?? settings.publicURL
        settings.ai.publicURL = settings.publicURL
        settings.auth.webhookSecret = env.string("CLERK_WEBHOOK_SECRET")
        if let key = env.string("CLERK_PUBLISHABLE_KEY") {
            guard AuthSettings.frontendAPIHost(publishableKey: key) != nil else {
                throw SettingsError(
                    variable: "CLERK_PUBLISHABLE_KEY",
                    problem: "must be a Clerk publishable key (pk_test_… or pk_live_… naming the Frontend API), as the dashboard shows it"
                )
            }
            settings.auth.publishableKey = key
        }
        settings.auth.browserSDKURL = try env.url("MYBA_CLERK_JS_URL")
        settings.stripe.secretKey = env.string("STRIPE_SECRET_KEY")
        if let key = settings.stripe.secretKey, !key.hasPrefix("sk_") && !key.hasPrefix("rk_") {
            throw SettingsError(variable: "STRIPE_SECRET_KEY", problem: "must be a secret key (sk_… or rk_…), not a publishable one")
        }
        settings.stripe.webhookSecret = env.string("STRIPE_WEBHOOK_SECRET")
        settings.stripe.apiBase = try env.url("STRIPE_API_BASE") ?? settings.stripe.apiBase
        if let timeout = try env.integer("MYBA_STRIPE_TIMEOUT_MS", in: 100...120_000) { settings.stripe.timeoutSeconds = Double(timeout) / 1000 }
        settings.faultInjection = Set(env.list("MYBA_FAULT_INJECTION"))
        settings.metricsPublic = try env.flag("MYBA_METRICS_PUBLIC") ?? false
        settings.metricsToken = env.string("MYBA_METRICS_TOKEN")
        if let token = settings.metricsToken, token.utf8.count < 16 {
            throw SettingsError(variable: "MYBA_METRICS_TOKEN", problem: "must be at least 16 characters")
        }
        if let ttl = env.string("MYBA_SESSION_TTL") {
            guard let seconds = OperatorDuration.parse(ttl), seconds >= 60 else {
                throw SettingsError(
                    variable: "MYBA_SESSION_TTL",
                    problem: "must be a duration of at least a minute like 30d, 24h or 90m, got \"\(ttl)\""
                )
            }
            settings.sessionTTLSeconds = seconds
        }
        settings.mirrorIntervalMilliseconds = try env.integer("MYBA_MIRROR_INTERVAL_MS", in: 10...600_000) ?? settings.mirrorIntervalMilliseconds
        settings.webhookRetryIntervalSeconds = try env.integer("MYBA_WEBHOOK_RETRY_SECONDS", in: 1...3600) ?? settings.webhookRetryIntervalSeconds
        settings.workLeaseSeconds = try env.integer("MYBA_WORK_LEASE_SECONDS", in: 2...3600) ?? settings.workLeaseSeconds
        settings.checkoutsPerHour = try env.integer("MYBA_CHECKOUTS_PER_HOUR", in: 1...10_000) ?? settings.checkoutsPerHour
        settings.outboundHTTP.maxConnectionsPerHost =
            try env.integer("MYBA_HTTP_MAX_CONNECTIONS_PER_HOST", in: 1...10_000) ?? settings.outboundHTTP.maxConnectionsPerHost
        if let idle = try env.integer("MYBA_HTTP_IDLE_CLOSE_MS", in: 100...3_600_000) { settings.outboundHTTP.idleCloseSeconds = Double(idle) / 1000 }
        if let timeout = try env.integer("MYBA_SHUTDOWN_TIMEOUT_MS", in: 500...600_000) { settings.shutdownTimeoutSeconds = Double(timeout) / 1000 }
        if let stall = try env.integer("MYBA_WATCHDOG_STALL_MS", in: 200...600_000) { settings.watchdogStallSeconds = Double(stall) / 1000 }
        if let idle = try env.integer("MYBA_CONNECTION_IDLE_MS", in: 200...3_600_000) { settings.connectionIdleTimeoutSeconds = Double(idle) / 1000 }
        if let backlog = try env.integer("MYBA_LISTEN_BACKLOG", in: 16...65535) { settings.listenBacklog = backlog }
        return settings
    }
}

/// How session tokens are checked.
public struct AuthSettings: Equatable, Sendable {
    /// `CLERK_JWT_KEY`: a PEM public key; verification needs no network.
    public var jwtPublicKeyPEM: String?
    /// `CLERK_SECRET_KEY`: authorises the JWKS request to Clerk's backend API. Never logged.
    public var secretKey: String?
    /// `CLERK_JWKS_URL`, else Clerk's backend JWKS when a secret key is set.
    public var jwksURL: URL?
    /// `MYBA_AUTHORIZED_PARTIES`: accepted `azp` values; when set, `azp` is required. Empty
    /// accepts any.
    public var authorizedParties: [String] = []
    /// `CLERK_ISSUER`: the `iss` tokens must carry (`https://<instance>.clerk.accounts.dev`).
    /// Unset, it is derived from a frontend-API `CLERK_JWKS_URL`; otherwise `iss` is not checked.
    public var issuer: String?
    /// `CLERK_WEBHOOK_SECRET`: the Svix signing secret (`whsec_…`) of Clerk's webhooks.
    public var webhookSecret: String?
    /// `CLERK_PUBLISHABLE_KEY` (`pk_test_…`, `pk_live_…`): the web page loads Clerk's browser SDK
    /// from the instance's Frontend API, which the key names.
    public var publishableKey: String?
    /// `MYBA_CLERK_JS_URL`: where the page loads Clerk's browser SDK from instead of the Frontend
    /// API (a pinned copy, or the tests' stand-in).
    public var browserSDKURL: URL?

    public init(jwtPublicKeyPEM: String? = nil, secretKey: String? = nil, jwksURL: URL? = nil, authorizedParties: [String] = []) {
        self.jwtPublicKeyPEM = jwtPublicKeyPEM
        self.secretKey = secretKey
        self.jwksURL = jwksURL
        self.authorizedParties = authorizedParties
    }

    /// True when no Clerk key of any kind is configured: `Bearer dev:<userId>` is accepted.
    public var isDevelopmentMode: Bool { jwtPublicKeyPEM == nil && jwksURL == nil }

    /// The Frontend API host a publishable key names: the key is `pk_test_` or `pk_live_`
    /// followed by the base64 of `<host>$`. Nil for anything else.
    public static func frontendAPIHost(publishableKey: String) -> String? {
        guard publishableKey.hasPrefix("pk_test_") || publishableKey.hasPrefix("pk_live_") else { return nil }
        var encoded = String(publishableKey.dropFirst(8))
        while encoded.count % 4 != 0 { encoded += "=" }
        guard let data = Data(base64Encoded: encoded), let decoded = String(data: data, encoding: .utf8), decoded.hasSuffix("$") else {
            return nil
        }
        let host = String(decoded.dropLast())
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
        guard !host.isEmpty, host.count <= 253, host.allSatisfy(allowed.contains) else { return nil }
        return host
    }

    /// Where the page loads Clerk's browser SDK from: `MYBA_CLERK_JS_URL`, else the script
    /// Clerk documents for a page without a build step on the key's Frontend API. Nil without a
    /// publishable key.
    public var browserSDKScriptURL: URL? {
        guard let publishableKey else { return nil }
        if let browserSDKURL { return browserSDKURL }
        guard let host = Self.frontendAPIHost(publishableKey: publishableKey) else { return nil }
        return URL(string: "https://\(host)/npm/@clerk/clerk-js@5/dist/clerk.browser.js")
    }
}

/// Anonymous visitors' free tokens and the limits on creating sessions.
public struct AnonymousSettings: Equatable, Sendable {
    public var freeTokens = 3
    public var sessionsPerHour = 10
    /// `MYBA_TRUST_PROXY=N`: the proxies in front of the server; the client is the Nth
    /// `X-Forwarded-For` hop from the right (see `ClientAddress`). 0: the connection's peer.
    public var trustedProxies = 0
    /// `MYBA_MAX_SESSION_TRANSFERS`: anonymous sessions one account may ever receive.
    public var maxTransfersPerAccount = 3
    /// Mixed into fingerprint hashes so stored hashes cannot be matched against known fingerprints.
    public var fingerprintSecret = "myba-fingerprint-v1"

    public init(freeTokens: Int = 3, sessionsPerHour: Int = 10, trustedProxies: Int = 0) {
        self.freeTokens = freeTokens
        self.sessionsPerHour = sessionsPerHour
        self.trustedProxies = trustedProxies
    }
}

/// Where `/api/generate` gets its text.
public struct AISettings: Equatable, Sendable {
    /// `OPENAI_API_KEY` (the seed's name) or `OPENROUTER_API_KEY`; `nil` → mock templates.
    public var openRouterKey: String?
    /// `MYBA_AI_MODELS`: tried in order.
    public var models = ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "meta-llama/llama-3.1-8b-instruct"]
    public var openRouterBase = URL(string: "https://openrouter.ai/api/v1")!
    public var openAIBase = URL(string: "https://api.openai.com/v1")!
    public var anthropicBase = URL(string: "https://api.anthropic.com/v1")!
    public var timeoutSeconds: Double = 30
    /// `MYBA_MAX_GENERATIONS_IN_FLIGHT`: provider calls the server keeps waiting at once.
    public var maxInFlight = 1000
    /// `MYBA_MAX_GENERATIONS_PER_ACCOUNT`: provider calls one account (or session) keeps waiting at once.
    public var maxInFlightPerAccount = 4
    /// `MYBA_OWN_KEY_PER_HOUR_ADDRESS`: generations on the caller's own key per client address and hour.
    public var ownKeyPerHourPerAddress = 60
    /// `MYBA_OWN_KEY_PER_HOUR_ACCOUNT`: the same per account (or anonymous session) and hour.
    public var ownKeyPerHourPerAccount = 120
    /// Sent to OpenRouter as `HTTP-Referer`.
    public var publicURL = "http://localhost:5173"

    public init(openRouterKey: String? = nil) {
        self.openRouterKey = openRouterKey
    }
}

/// Stripe: the API and the webhook endpoint's secret.
public struct StripeSettings: Equatable, Sendable {
    /// `STRIPE_SECRET_KEY`; `nil` disables payments (checkout answers 503 `payments_disabled`).
    public var secretKey: String?
    /// `STRIPE_WEBHOOK_SECRET` (`whsec_…`).
    public var webhookSecret: String?
    /// `STRIPE_API_BASE`: Stripe's API, or the emulator.
    public var apiBase = URL(string: "https://api.stripe.com")!
    /// `MYBA_STRIPE_TIMEOUT_MS`: how long one Stripe request may take before it counts as failed
    /// (and is retried); the outbox makes a slow Stripe delay only the mirror, never an answer.
    public var timeoutSeconds: TimeInterval = 20

    public init(secretKey: String? = nil, webhookSecret: String? = nil, apiBase: URL = URL(string: "https://api.stripe.com")!) {
        self.secretKey = secretKey
        self.webhookSecret = webhookSecret
        self.apiBase = apiBase
    }
}

/// A variable that is set to something unusable.
public struct SettingsError: Error, CustomStringConvertible, Sendable {
    public var variable: String
    public var problem: String
    public var description: String { "\(variable) \(problem)" }
}

struct EnvironmentReader {
    let values: [String: String]

    init(_ values: [String: String]) { self.values = values }

    /// The variable's value, treating empty as unset.
    func string(_ name: String) -> String? {
        guard let value = values[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    func list(_ name: String) -> [String] {
        (string(name) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func url(_ name: String) throws -> URL? {
        guard let text = string(name) else { return nil }
        guard let url = URL(string: text), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw SettingsError(variable: name, problem: "must be an http(s) URL, got \"\(text)\"")
        }
        return url
    }

    func flag(_ name: String) throws -> Bool? {
        guard let text = string(name) else { return nil }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw SettingsError(variable: name, problem: "must be 1 or 0, got \"\(text)\"")
        }
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw SettingsError(variable: name, problem: "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return value
    }
}

extension Array {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}

extension MyBASettings {
    /// Where Checkout sends a buyer back to: `MYBA_PUBLIC_URL`. Unset (development only: a
    /// production server refuses to start without it), the address the browser used to reach
    /// this server, so the local journey returns to the page it left; a `Host` that is not a
    /// plain `host[:port]` falls back to the listening address.
    public func checkoutReturnBase(requestAuthority: String?) -> String {
        guard publicURL == MyBASettings().publicURL else { return publicURL }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
        if let authority = requestAuthority, !authority.isEmpty, authority.count <= 262, authority.allSatisfy(allowed.contains) {
            return "http://\(authority)"
        }
        return "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)"
    }
}
