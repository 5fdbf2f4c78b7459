import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One outbound HTTP request. Every client in MyBAOps (Clerk JWKS, AI providers, later Stripe)
/// speaks through `HTTPClient`, so tests point them at local servers by base URL.
public struct HTTPClientRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(String, String)]
    public var body: Data?
    public var timeout: TimeInterval

    public init(method: String, url: URL, headers: [(String, String)] = [], body: Data? = nil, timeout: TimeInterval = 30) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

public struct HTTPClientResponse: Sendable {
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
public enum HTTPClientError: Error, CustomStringConvertible, Sendable {
    case timedOut(host: String)
    case connectionFailed(host: String, detail: String)

    public var description: String {
        switch self {
        case .timedOut(let host): return "\(host) did not answer in time"
        case .connectionFailed(let host, let detail): return "cannot reach \(host): \(detail)"
        }
    }
}

/// Sends HTTP requests.
public protocol HTTPClient: Sendable {
    func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse
}

/// `HTTPClient` over Foundation's URLSession, which on Linux is libcurl.
public struct URLSessionHTTPClient: HTTPClient {
    private let session: URLSession

    public init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 16
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    public func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        var urlRequest = URLRequest(url: request.url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: request.timeout)
        urlRequest.httpMethod = request.method
        for (name, value) in request.headers { urlRequest.addValue(value, forHTTPHeaderField: name) }
        urlRequest.httpBody = request.body
        let host = request.url.host ?? request.url.absoluteString
        do {
            let (data, response) = try await withDeadline(request.timeout, host: host) { [session, urlRequest] in
                try await session.data(for: urlRequest)
            }
            guard let http = response as? HTTPURLResponse else {
                throw HTTPClientError.connectionFailed(host: host, detail: "not an HTTP response")
            }
            var headers: [String: String] = [:]
            for (key, value) in http.allHeaderFields {
                if let key = key as? String, let value = value as? String { headers[key] = value }
            }
            return HTTPClientResponse(status: http.statusCode, headers: headers, body: data)
        } catch let error as HTTPClientError {
            throw error
        } catch let error as URLError where error.code == .timedOut {
            throw HTTPClientError.timedOut(host: host)
        } catch let error as URLError {
            throw HTTPClientError.connectionFailed(host: host, detail: error.localizedDescription)
        }
    }
}

/// Runs `operation`, cancelling it when `seconds` pass first. URLSession's own
/// `timeoutInterval` is an idle timeout and on Linux does not bound a server that accepts the
/// connection and then stays silent; a provider call must never hang a request.
func withDeadline<T: Sendable>(_ seconds: TimeInterval, host: String, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            throw HTTPClientError.timedOut(host: host)
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw HTTPClientError.timedOut(host: host) }
        return first
    }
}
