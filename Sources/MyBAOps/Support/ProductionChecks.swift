import Foundation

extension MyBASettings {
    /// The fingerprint secret used when `MYBA_FINGERPRINT_SECRET` is not set: public, so only for
    /// development.
    public static let builtInFingerprintSecret = AnonymousSettings().fingerprintSecret

    /// Production: `MYBA_ENV=production`, or a live Stripe key (`sk_live_…`, `rk_live_…`),
    /// whatever `MYBA_ENV` says.
    public var isProduction: Bool {
        environmentName == "production" || stripe.hasLiveKey
    }

    /// Why this configuration must not serve production traffic; empty when it may. Each entry
    /// names the variable to set. A production setting never falls back to a development
    /// default in silence: the server refuses to start instead.
    public func productionProblems() -> [String] {
        var problems: [String] = []
        if auth.isDevelopmentMode {
            problems.append(
                "no Clerk key (set CLERK_JWT_KEY, CLERK_SECRET_KEY or CLERK_JWKS_URL): development sign-in (`Bearer dev:<user>`) would accept anyone as anyone"
            )
        }
        if anonymous.fingerprintSecret == Self.builtInFingerprintSecret {
            problems.append("MYBA_FINGERPRINT_SECRET is not set: the built-in one is public")
        } else if anonymous.fingerprintSecret.utf8.count < 16 {
            problems.append("MYBA_FINGERPRINT_SECRET is shorter than 16 characters")
        }
        if stripe.secretKey != nil && stripe.webhookSecret == nil {
            problems.append("STRIPE_WEBHOOK_SECRET is missing: Stripe's purchase and refund events would be refused")
        }
        if !auth.isDevelopmentMode && auth.publishableKey == nil {
            problems.append("CLERK_PUBLISHABLE_KEY is missing: the web page could not sign anyone in")
        }
        if !auth.isDevelopmentMode && auth.webhookSecret == nil {
            problems.append("CLERK_WEBHOOK_SECRET is missing: Clerk's user events (sign-up, deletion) would be refused")
        }
        if environmentName == "production", let key = stripe.secretKey, !stripe.hasLiveKey {
            problems.append("STRIPE_SECRET_KEY is a test key (\(key.prefix(8))…) while MYBA_ENV=production: no real payment would be taken")
        }
        if ai.openRouterKey == nil {
            problems.append("no AI key (set OPENROUTER_API_KEY or OPENAI_API_KEY): paid tickets would be mock templates")
        }
        if publicURL == MyBASettings().publicURL {
            problems.append("MYBA_PUBLIC_URL is not set: Checkout would send buyers back to \(publicURL)")
        }
        if case .postgres(let location)? = try? DatabaseLocation.parse(databasePath, environment: [:]),
            !["127.0.0.1", "localhost", "::1"].contains(location.host), location.tls == .disable || location.tls == .prefer
        {
            problems.append(
                "MYBA_DATABASE reaches PostgreSQL at \(location.host) with sslmode=\(location.tls.rawValue): the ledger would cross the network unencrypted or unauthenticated (set sslmode=verify-full, or require)"
            )
        }
        if !faultInjection.isEmpty {
            problems.append("MYBA_FAULT_INJECTION is set (\(faultInjection.sorted().joined(separator: ","))): test-only crash points")
        }
        return problems
    }
}

extension StripeSettings {
    /// A live-mode secret or restricted key: real money moves.
    public var hasLiveKey: Bool {
        guard let secretKey else { return false }
        return secretKey.hasPrefix("sk_live_") || secretKey.hasPrefix("rk_live_")
    }
}
