import Hummingbird
import Logging
import MyBAOps

/// The per-request context: Hummingbird's core storage plus MyBA's request id and body cap.
struct MyBARequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// Set by `RequestIDMiddleware` before anything else runs.
    var requestId: String = ""
    var bodyLimit: Int = 1024 * 1024
    /// Set by `AuthenticationMiddleware` when a valid bearer token came with the request.
    var user: AuthenticatedUser?
    /// The welcome grant this request opened the account with; nil when it existed before.
    var welcomeGranted: Int?
    /// The peer's address; behind trusted proxies, the hop of `X-Forwarded-For` they vouch for.
    var clientAddress: String
    /// The address of the connection itself, never taken from a header a client can write.
    let peerAddress: String

    init(source: Source) {
        self.coreContext = .init(source: source)
        self.peerAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        self.clientAddress = peerAddress
    }

    /// The signed-in user, or 401.
    func requireUser() throws -> AuthenticatedUser {
        guard let user else { throw APIError(.unauthorized, code: "unauthorized", message: AuthError.missingToken.description) }
        return user
    }

    var maxUploadSize: Int { bodyLimit }
}
