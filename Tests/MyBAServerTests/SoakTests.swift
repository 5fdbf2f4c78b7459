import Foundation
import MyBATestSupport
import Testing

/// The real binary at real AI latency against an upstream having a bad day (issue 25): replies
/// that race the deadline, hangs, resets mid-response, bodies that drip past the deadline, 500s,
/// and an upstream that disappears and comes back. Driven by `Tests/soak/soak.py`, the same
/// driver `benchmarks/soak.sh` runs for minutes with thousands of clients; here CI-sized.
@Suite("Soak at real AI latency", .serialized)
struct SoakTests {
    @Test(
        "300 clients × 5 generations on a misbehaving upstream: the server stays responsive, releases its sockets, charges exactly the answers, and stops on SIGTERM within its bound"
    )
    func soakAgainstMisbehavingUpstream() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shutdownBound = 5.0
        let run = try await ChildProcess.start(
            "/usr/bin/env",
            [
                "python3", root.appendingPathComponent("Tests/soak/soak.py").path,
                "--server", BuiltProduct.path("myba-server"), "--admin", BuiltProduct.path("myba-admin"),
                "--clients", "300", "--requests", "5", "--deadline-ms", "1000", "--shutdown-ms", String(Int(shutdownBound * 1000)),
                "--idle-close-ms", "1000", "--term-requests", "40", "--json",
            ],
            environment: ["PATH": "/usr/bin:/bin:/usr/local/bin"]
        ).wait(timeout: .seconds(300))
        try #require(run.status == 0, "soak.py failed:\n\(run.stdout.suffix(4000))\n\(run.stderr.suffix(4000))")
        let line = try #require(run.stdout.split(separator: "\n").last)
        let result = try jsonObject(String(line))
        let report = "soak result: \(line)"

        // Under load: alive, and every request got an answer: a ticket or a 502 with the token back.
        #expect(result["server_alive_after_load"] as? Bool == true, "\(report)")
        let statuses = result["statuses"] as? [String: Int] ?? [:]
        #expect(Set(statuses.keys).isSubset(of: ["200", "502"]), "\(report)")
        #expect((statuses["200"] ?? 0) > 0 && (statuses["502"] ?? 0) > 0, "the mix must both answer and fail: \(report)")
        #expect(statuses.values.reduce(0, +) == 1500, "\(report)")

        // Afterwards: no socket left behind, none in CLOSE-WAIT, health answers at once.
        #expect(result["close_wait_settled"] as? Int == 0, "\(report)")
        #expect((result["sockets_settled"] as? Int ?? .max) <= (result["sockets_baseline"] as? Int ?? -1), "\(report)")
        #expect((result["fds_settled"] as? Int ?? .max) <= (result["fds_baseline"] as? Int ?? -1), "\(report)")
        #expect(result["health_statuses"] as? [String] == ["200:ok"], "\(report)")
        // 19 of 20 within 100 ms and none slower than 1 s: this suite shares the machine with the
        // rest of the tests, and a wedged server does not answer at all.
        #expect((result["health_within_100ms"] as? Int ?? 0) >= 19, "\(report)")
        #expect((result["health_max_ms"] as? Double ?? .infinity) < 1000, "\(report)")

        // The accounts: one token per ticket answered, nothing still reserved, the ledger exact.
        let answered = try #require(result["answered"] as? Int)
        #expect(answered == statuses["200"], "\(report)")
        #expect(result["tokens_spent"] as? Int == answered, "\(report)")
        #expect(result["generations_completed"] as? Int == answered, "\(report)")
        #expect(result["generations_reserved"] as? Int == 0, "\(report)")
        #expect(result["negative_balances"] as? Int == 0, "\(report)")
        #expect(result["verify_exit"] as? Int == 0, "\(report)")

        // SIGTERM: at once when idle; within the bound with 40 calls hanging upstream, each of
        // which is answered 502 with its token given back.
        #expect(result["idle_term_exit_code"] as? Int == 0, "\(report)")
        #expect(result["term_exit_code"] as? Int == 0, "\(report)")
        #expect((result["term_seconds"] as? Double ?? .infinity) <= shutdownBound + 1, "\(report)")
        #expect(result["term_statuses"] as? [String: Int] == ["502": 40], "\(report)")
        #expect(result["term_reserved"] as? Int == 0, "\(report)")
        #expect(result["term_tokens_held"] as? Int == 0, "\(report)")
        #expect(result["term_answered"] as? Int == 0, "\(report)")
        #expect(result["verify_exit_after_term"] as? Int == 0, "\(report)")
        let errors = result["server_log_errors"] as? [String] ?? []
        #expect(errors.isEmpty, "errors logged: \(errors)")
    }
}
