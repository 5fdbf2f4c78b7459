import Foundation
import HTTPTypes
import Hummingbird
import MyBAOps
import NIOCore
import ServiceLifecycle

/// `GET /api/account`: the signed-in user's balance, purchase statistics and discount, as the
/// web page shows them. `GET /api/account/events`: the same, pushed as Server-Sent Events
/// whenever the balance changes (a purchase's webhook applied, a ticket charged).
struct AccountController {
    let database: AppDatabase
    /// How often a stream re-reads the balance without being woken: changes made by another
    /// process (the console, another server) arrive within this, and the comment it writes
    /// when nothing changed keeps proxies from closing a quiet stream.
    var recheckInterval: Duration = .seconds(10)
    /// How long one stream lives; the page reconnects, and a server never holds a stream forever.
    var streamLifetime: Duration = .seconds(300)
    /// Streams one account may hold open at once.
    static let streamsPerAccount = 5

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: show)
            .get("events", use: events)
            .get("purchases/{checkoutSessionId}", use: purchase)
    }

    @Sendable func purchase(_ request: Request, context: MyBARequestContext) async throws -> PurchaseStatus {
        let user = try context.requireUser()
        let sessionId = try context.parameters.require("checkoutSessionId")
        guard (1...200).contains(sessionId.count), sessionId.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw APIError(.badRequest, code: "invalid_input", message: "a Checkout Session id is letters, digits and _ (cs_…)")
        }
        return try await database.payments.purchaseStatus(userId: user.userId, checkoutSessionId: sessionId)
    }

    struct AccountResponse: ResponseEncodable {
        var account: AccountOverview
        /// Tokens of the welcome grant this request opened the account with (first sign-in).
        var welcomeGranted: Int?

        func encode(to encoder: any Encoder) throws {
            try account.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(welcomeGranted, forKey: .welcomeGranted)
        }

        enum CodingKeys: String, CodingKey { case welcomeGranted }
    }

    @Sendable func show(_ request: Request, context: MyBARequestContext) async throws -> AccountResponse {
        AccountResponse(account: try await overview(try context.requireUser()), welcomeGranted: context.welcomeGranted)
    }

    @Sendable func events(_ request: Request, context: MyBARequestContext) async throws -> Response {
        let user = try context.requireUser()
        let first = try await overview(user)
        guard let subscription = BalanceChanges.shared.subscribe(userId: user.userId, limit: Self.streamsPerAccount) else {
            throw APIError(
                .tooManyRequests,
                code: "too_many_streams",
                message: "this account already has \(Self.streamsPerAccount) balance streams open; close one",
                headers: [.retryAfter: "10"]
            )
        }
        let database = self.database
        let recheckInterval = self.recheckInterval
        let streamLifetime = self.streamLifetime
        let logger = context.logger
        return Response(
            status: .ok,
            headers: .eventStream,
            body: ResponseBody { writer in
                defer { subscription.cancel() }
                var sent = try Self.json(first)
                try await writer.write(ByteBuffer(string: "retry: 2000\nevent: balance\ndata: \(sent)\n\n"))
                let ticker = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: recheckInterval)
                        subscription.poke()
                    }
                }
                defer { ticker.cancel() }
                let ends = ContinuousClock.now + streamLifetime
                // A server shutting down ends its streams (the page reconnects to another one)
                // instead of waiting for them at the shutdown deadline.
                let clientGone = try await withGracefulShutdownHandler {
                    for await _ in subscription.wakeUps {
                        if ContinuousClock.now >= ends { break }
                        guard let account = try await database.ledger.accountOverview(userId: user.userId) else { break }
                        let now = try Self.json(account)
                        let text = now == sent ? ": unchanged\n\n" : "event: balance\ndata: \(now)\n\n"
                        sent = now
                        do { try await writer.write(ByteBuffer(string: text)) } catch { return true }
                    }
                    return false
                } onGracefulShutdown: {
                    subscription.cancel()
                }
                if clientGone { return }
                logger.debug("balance stream ended")
                try await writer.finish(nil)
            }
        )
    }

    /// The signed-in user's account, or 404 when it is gone (a deleted customer).
    private func overview(_ user: AuthenticatedUser) async throws -> AccountOverview {
        guard let account = try await database.ledger.accountOverview(userId: user.userId) else {
            throw APIError(.notFound, code: "unknown_customer", message: "no customer with id \(user.userId)")
        }
        return account
    }

    static func json(_ account: AccountOverview) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(account), as: UTF8.self)
    }
}

extension PurchaseStatus: ResponseEncodable {}
