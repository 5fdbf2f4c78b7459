import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBAOps
import NIOCore
import Testing

/// `CurlHTTPClient` against a real local server: the wire, its deadlines, cancellation racing
/// completion (the deadlock of issue 25), limits and shutdown.
@Suite("Outbound HTTP (libcurl)")
struct OutboundHTTPTests {
    /// Runs a loopback server: `/echo` answers the method, headers and body it got;
    /// `/sleep/:ms` answers after that long; `/big/:bytes` answers that many bytes.
    func withServer<T: Sendable>(_ body: @Sendable (URL) async throws -> T) async throws -> T {
        let router = Router()
        router.on("/echo", method: .post) { request, _ -> Response in
            let received = try await request.body.collect(upTo: 1 << 20)
            let object: [String: Any] = [
                "method": request.method.rawValue, "bytes": received.readableBytes,
                "custom": request.headers[HTTPField.Name("X-Custom")!] ?? "", "expect": request.headers[.expect] ?? "",
            ]
            return Response(
                status: .created,
                headers: [.contentType: "application/json", HTTPField.Name("X-Reply")!: "yes"],
                body: .init(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object)))
            )
        }
        router.get("/sleep/:ms") { _, context -> String in
            try await Task.sleep(for: .milliseconds(try context.parameters.require("ms", as: Int.self)))
            return "slept"
        }
        router.get("/big/:bytes") { _, context -> Response in
            let count = try context.parameters.require("bytes", as: Int.self)
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: count)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in try await body(URL(string: "http://127.0.0.1:\(client.port!)")!) }
    }

    @Test(
        "A POST goes out with its headers and a 2 KiB body, without Expect: 100-continue (a 1 s pause in libcurl); status, headers and body come back"
    )
    func roundTrip() async throws {
        try await withServer { base in
            let client = CurlHTTPClient()
            let response = try await client.send(
                OutboundRequest(
                    method: "POST",
                    url: base.appendingPathComponent("echo"),
                    headers: [("X-Custom", "value 1"), ("Content-Type", "application/json")],
                    body: Data(repeating: UInt8(ascii: "a"), count: 2048),
                    timeout: 10
                )
            )
            #expect(response.status == 201)
            #expect(response.header("x-reply") == "yes")
            let object = try #require(try JSONSerialization.jsonObject(with: response.body) as? [String: Any])
            #expect(object["method"] as? String == "POST")
            #expect(object["bytes"] as? Int == 2048)
            #expect(object["custom"] as? String == "value 1")
            #expect(object["expect"] as? String == "")
        }
    }

    @Test("The deadline bounds a silent server; a refused connection and an oversized body are errors, not hangs")
    func deadlinesAndFailures() async throws {
        try await withServer { base in
            let client = CurlHTTPClient(settings: OutboundHTTPSettings(maxResponseBytes: 1000))
            // The server answers after 3 s: only the deadline can end the call with timedOut.
            do {
                _ = try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("sleep/3000"), timeout: 0.3))
                Issue.record("a silent server answered before the deadline")
            } catch OutboundHTTPError.timedOut(let host) {
                #expect(host == "127.0.0.1")
            }
            do {
                _ = try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("big/5000"), timeout: 5))
                Issue.record("an oversized body was accepted")
            } catch let error as OutboundHTTPError {
                #expect("\(error)".contains("larger than 1000 bytes"))
            }
            #expect(
                try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("big/1000"), timeout: 5)).body.count == 1000
            )
        }
        // A port nobody listens on (the server above is gone).
        let client = CurlHTTPClient()
        do {
            _ = try await client.send(OutboundRequest(method: "GET", url: URL(string: "http://127.0.0.1:9/")!, timeout: 5))
            Issue.record("a refused connection answered")
        } catch OutboundHTTPError.connectionFailed(let host, _) {
            #expect(host == "127.0.0.1")
        }
        #expect(client.inFlight == 0)
    }

    @Test("Cancelling the calling task ends a hanging call at once with CancellationError")
    func cancellation() async throws {
        try await withServer { base in
            let client = CurlHTTPClient()
            let call = Task { try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("sleep/3000"), timeout: 30)) }
            try await Task.sleep(for: .milliseconds(200))
            // The server answers after 3 s: a CancellationError means the cancel ended the call.
            call.cancel()
            await #expect(throws: CancellationError.self) { _ = try await call.value }
            #expect(client.inFlight == 0)
        }
    }

    @Test("2000 calls whose deadline and cancellation race their completion: every call ends, the executor stays free, the client still works")
    func cancellationRacingCompletion() async throws {
        try await withServer { base in
            let client = CurlHTTPClient()
            let outcomes = await withTaskGroup(of: String.self) { group in
                for index in 0..<2000 {
                    group.addTask {
                        // Answers after 20–40 ms; deadlines (10–400 ms, the queue counts) and
                        // cancellations land around the answers.
                        let latency = 20 + index % 21
                        // Every tenth call has time to spare, so some answers arrive however
                        // loaded the machine is.
                        let timeout = index % 10 == 0 ? 30 : Double(10 + (index * 7) % 390) / 1000
                        let call = Task {
                            try await client.send(
                                OutboundRequest(method: "GET", url: base.appendingPathComponent("sleep/\(latency)"), timeout: timeout)
                            )
                        }
                        if index % 3 == 0 && index % 10 != 0 {
                            try? await Task.sleep(for: .milliseconds(15 + (index * 13) % 200))
                            call.cancel()
                        }
                        switch await call.result {
                        case .success: return "answered"
                        case .failure(let error as OutboundHTTPError): if case .timedOut = error { return "timed out" } else { return "\(error)" }
                        case .failure(is CancellationError): return "cancelled"
                        case .failure(let error): return "\(error)"
                        }
                    }
                }
                return await group.reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
            }
            #expect(outcomes.values.reduce(0, +) == 2000)
            #expect(Set(outcomes.keys).isSubset(of: ["answered", "timed out", "cancelled"]), "\(outcomes)")
            #expect(outcomes["answered", default: 0] > 0 && outcomes["timed out", default: 0] + outcomes["cancelled", default: 0] > 0, "\(outcomes)")
            #expect(client.inFlight == 0)
            let after = try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("sleep/1"), timeout: 5))
            #expect(after.status == 200)
        }
    }

    @Test("cancelAll ends the calls in flight with shuttingDown and refuses later ones at once")
    func cancelAll() async throws {
        try await withServer { base in
            let client = CurlHTTPClient()
            let calls = (0..<20).map { _ in
                Task { try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("sleep/3000"), timeout: 30)) }
            }
            for _ in 0..<100 where client.inFlight < 20 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(client.inFlight == 20)
            client.cancelAll()
            for call in calls {
                do {
                    _ = try await call.value
                    Issue.record("a call survived cancelAll")
                } catch OutboundHTTPError.shuttingDown {}
            }
            await #expect(throws: OutboundHTTPError.self) {
                _ = try await client.send(OutboundRequest(method: "GET", url: base.appendingPathComponent("sleep/1"), timeout: 5))
            }
            #expect(client.inFlight == 0)
        }
    }
}
