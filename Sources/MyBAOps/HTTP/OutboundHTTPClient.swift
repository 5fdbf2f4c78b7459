import Foundation

/// One outbound HTTP request. Every client in MyBAOps (Clerk JWKS, AI providers, Stripe) speaks
/// through `OutboundHTTPClient`, so tests point them at local servers by base URL.
public struct OutboundRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(String, String)]
    public var body: Data?
    /// The whole exchange's deadline, connecting and waiting for a free connection included.
    public var timeout: TimeInterval

    public init(method: String, url: URL, headers: [(String, String)] = [], body: Data? = nil, timeout: TimeInterval = 30) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

public struct OutboundResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public init(status: Int, headers: [String: String], body: Data) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A header by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first { $0.key.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// Why a request got no HTTP response at all.
public enum OutboundHTTPError: Error, CustomStringConvertible, Sendable {
    case timedOut(host: String)
    case connectionFailed(host: String, detail: String)
    /// The client is stopping (server shutdown): the exchange was abandoned or never started.
    case shuttingDown(host: String)

    public var description: String {
        switch self {
        case .timedOut(let host): return "\(host) did not answer in time"
        case .connectionFailed(let host, let detail): return "cannot reach \(host): \(detail)"
        case .shuttingDown(let host): return "request to \(host) abandoned: the server is shutting down"
        }
    }
}

/// Sends HTTP requests.
public protocol OutboundHTTPClient: Sendable {
    func send(_ request: OutboundRequest) async throws -> OutboundResponse
    /// Sends `request`, handing each piece of the response body to `onChunk` as it arrives (a
    /// streamed answer), and returns the whole response at the end.
    func send(_ request: OutboundRequest, onChunk: @escaping @Sendable ([UInt8]) -> Void) async throws -> OutboundResponse
}

extension OutboundHTTPClient {
    /// A client that cannot stream hands over the whole body at once.
    public func send(_ request: OutboundRequest, onChunk: @escaping @Sendable ([UInt8]) -> Void) async throws -> OutboundResponse {
        let response = try await send(request)
        onChunk(Array(response.body))
        return response
    }
}
