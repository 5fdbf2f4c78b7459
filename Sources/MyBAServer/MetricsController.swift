import Foundation
import Hummingbird
import MyBAOps
import Prometheus

/// `GET /metrics`: every swift-metrics value the process recorded, in Prometheus' text format.
/// Counts of customers and money-adjacent totals are business data, so only loopback peers get
/// them unless MYBA_METRICS_PUBLIC=1 (a scraper elsewhere, behind the proxy's own rules).
struct MetricsController {
    let registry: PrometheusCollectorRegistry
    let database: AppDatabase
    let servesEveryAddress: Bool

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get(use: metrics)
    }

    @Sendable func metrics(_ request: Request, context: MyBARequestContext) async throws -> Response {
        guard servesEveryAddress || Self.isLoopback(context.clientAddress) else {
            throw APIError(.forbidden, code: "metrics_forbidden", message: "/metrics answers loopback clients only; set MYBA_METRICS_PUBLIC=1 to serve it to others")
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
            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    static func isLoopback(_ address: String) -> Bool {
        address == "::1" || address.hasPrefix("127.") || address.hasPrefix("::ffff:127.")
    }
}
