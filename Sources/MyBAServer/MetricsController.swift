import Foundation
import HTTPTypes
import Hummingbird
import MyBAOps
import Prometheus

/// `GET /metrics`: every swift-metrics value the process recorded, in Prometheus' text format.
/// Customer counts and token totals are business data. With MYBA_METRICS_TOKEN set, a scraper
/// must send it as `X-Metrics-Token` (compared in constant time; `Authorization` stays Clerk's);
/// without it, only a connection from loopback is served, judged by the socket's own peer, never
/// by `X-Forwarded-For`, which a client writes itself. MYBA_METRICS_PUBLIC=1 serves everyone.
struct MetricsController {
    let registry: PrometheusCollectorRegistry
    let database: AppDatabase
    let access: MetricsAccess

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: metrics)
    }

    @Sendable func metrics(_ request: Request, context: MyBARequestContext) async throws -> Response {
        switch access {
        case .token:
            guard access.admits(request, context: context) else {
                throw APIError(.forbidden, code: "metrics_forbidden", message: "/metrics needs the X-Metrics-Token header with MYBA_METRICS_TOKEN")
            }
        case .loopback:
            guard access.admits(request, context: context) else {
                throw APIError(
                    .forbidden,
                    code: "metrics_forbidden",
                    message:
                        "/metrics answers loopback connections only; set MYBA_METRICS_TOKEN (or MYBA_METRICS_PUBLIC=1) to serve a scraper elsewhere"
                )
            }
        case .tokenRequired:
            throw APIError(
                .forbidden,
                code: "metrics_forbidden",
                message: "behind a proxy (MYBA_TRUST_PROXY) every client arrives from the proxy's address; set MYBA_METRICS_TOKEN to serve /metrics"
            )
        case .everyone:
            break
        }
        do {
            try await MyBAMetrics.refreshGauges(from: database)
        } catch {
            // Counters are still worth exporting when storage is down; the gauges keep their last value.
            context.logger.error("metrics: could not read the gauges", metadata: ["error.message": .string("\(error)")])
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: buffer))
        )
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !b.isEmpty else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    static func isLoopback(_ address: String) -> Bool {
        address == "::1" || address.hasPrefix("127.") || address.hasPrefix("::ffff:127.")
    }
}

/// Who may read `/metrics` and the operator's details of `/api/health`.
enum MetricsAccess: Sendable, Equatable {
    /// `MYBA_METRICS_TOKEN`, sent as `X-Metrics-Token`.
    case token(String)
    /// Connections from loopback: a scraper on the host.
    case loopback
    /// Behind a proxy on the same host every client's connection comes from loopback, so
    /// loopback proves nothing: only a token would, and none is set.
    case tokenRequired
    /// `MYBA_METRICS_PUBLIC=1`.
    case everyone

    init(settings: MyBASettings) {
        if let token = settings.metricsToken {
            self = .token(token)
        } else if settings.metricsPublic {
            self = .everyone
        } else {
            self = settings.anonymous.trustedProxies > 0 ? .tokenRequired : .loopback
        }
    }

    /// Whether this request is an operator's: the token, or a loopback peer (the socket's own,
    /// never `X-Forwarded-For`, which a client writes itself) when no proxy stands in front.
    func admits(_ request: Request, context: MyBARequestContext) -> Bool {
        switch self {
        case .token(let expected):
            let sent = request.headers[HTTPField.Name("X-Metrics-Token")!] ?? ""
            return MetricsController.constantTimeEqual(Array(sent.utf8), Array(expected.utf8))
        case .loopback:
            return MetricsController.isLoopback(context.peerAddress)
        case .tokenRequired:
            return false
        case .everyone:
            return true
        }
    }
}
