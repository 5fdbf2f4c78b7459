import Foundation
import GRDB
import HTTPTypes
import MyBATestSupport
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// Reserved tokens of a server that died mid-call (issues 14 and 24), on the real binary: the
/// running server's sweep gives them back once their deadline passes, without another restart;
/// a retry with the same key runs anew; a reservation whose session is gone never stops a start.
@Suite("Reservation sweep", .serialized)
struct ReservationSweepTests {
    @Test(
        "killed mid-call and restarted at once: the retry is 409 while the reservation may still be live, the sweep gives the token back within its deadline while serving, then the retry runs anew; a reservation whose session was removed is closed and logged, and the server starts"
    )
    func killedMidCall() async throws {
        let directory = try TemporaryDirectory("myba-sweep")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let logPath = directory.file("myba.jsonl")
        let (upstream, upstreamPort) = try await startHangingUpstream()
        defer { upstream.send(SIGKILL) }
        // Deadline of a reservation: 8 s × 1 model + 1 s busy timeout + 5 s. The provider
        // deadline leaves a loaded machine (the whole suite runs beside) time to see both calls
        // reserved before the kill.
        let environment = serverEnvironment(
            database: databasePath,
            log: logPath,
            upstreamPort: upstreamPort,
            ["MYBA_AI_TIMEOUT_MS": "8000", "MYBA_DB_BUSY_TIMEOUT_MS": "1000"]
        )
        let user: HTTPFields = [.authorization: "Bearer dev:user_sweep", .contentType: "application/json", .idempotencyKey: "ticket-k1"]
        let first = try await RunningServer.start(environment: environment)
        #expect(try await first.get("/api/user-tokens/user_sweep", headers: user).0 == 200)
        let session = try jsonObject(
            String(
                decoding: try await first.post(
                    "/api/anonymous-session",
                    body: #"{"fingerprint":"fp-sweep"}"#,
                    headers: [.contentType: "application/json"]
                ).1,
                as: UTF8.self
            )
        )
        let sessionId = try #require(session["sessionId"] as? String)
        let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
        // Two generations hang upstream; the server dies under them. They go out on a client of
        // their own: URLSession.shared is shared with every other suite running meanwhile.
        let http = CurlHTTPClient()
        func hangingGenerate(_ body: String, _ headers: [(String, String)]) -> Task<Void, Never> {
            Task {
                _ = try? await http.send(
                    OutboundRequest(
                        method: "POST",
                        url: URL(string: "http://127.0.0.1:\(first.port)/api/generate")!,
                        headers: [("Content-Type", "application/json")] + headers,
                        body: Data(body.utf8),
                        timeout: 60
                    )
                )
            }
        }
        let calls = [
            hangingGenerate(#"{"input":"Export reports as CSV"}"#, [("Authorization", "Bearer dev:user_sweep"), ("Idempotency-Key", "ticket-k1")]),
            hangingGenerate(#"{"input":"Export reports as CSV","sessionId":"\#(sessionId)"}"#, []),
        ]
        func reserved() async throws -> Int {
            try await database.writerForTests.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM generations WHERE status = 'reserved'") ?? 0
            }
        }
        // Watched and killed from a thread of its own: on a machine busy with the whole suite,
        // this process's executor can lag for seconds, and the kill must land while both calls
        // still hang upstream.
        let process = first.process
        let sawBoth = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            Thread.detachNewThread {
                for _ in 0..<1500 {
                    let count =
                        (try? database.writerForTests.read { db in
                            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM generations WHERE status = 'reserved'") ?? 0
                        }) ?? 0
                    if count == 2 {
                        process.send(SIGKILL)
                        continuation.resume(returning: true)
                        return
                    }
                    usleep(10_000)
                }
                continuation.resume(returning: false)
            }
        }
        #expect(sawBoth)
        let generations = try await database.writerForTests.read { db in
            try Row.fetchAll(db, sql: "SELECT payer_kind, status, error FROM generations").map {
                "\($0["payer_kind"] as String) \($0["status"] as String) \($0["error"] as String? ?? "")"
            }
        }
        #expect(try await reserved() == 2, "generations: \(generations); server: \(first.process.stdoutSoFar.suffix(3000))")
        first.process.send(SIGKILL)
        _ = try await first.process.wait(timeout: .seconds(10))
        for call in calls { _ = await call.value }
        #expect(try await database.ledger.balance(userId: "user_sweep")?.tokens == 5)
        // The anonymous session is removed while the server is down (as an older reap did).
        try await database.writerForTests.write { db in try db.execute(sql: "DELETE FROM anonymous_sessions WHERE id = ?", arguments: [sessionId]) }

        let second = try await RunningServer.start(environment: environment)
        defer { second.stop() }
        let restartedAt = ContinuousClock.now
        // Another server may still be finishing that call: the same key waits for the deadline.
        let early = try await second.post("/api/generate", body: #"{"input":"Export reports as CSV"}"#, headers: user)
        #expect(early.0 == 409)
        #expect(
            try jsonObject(String(decoding: early.1, as: UTF8.self))["error"].flatMap { ($0 as? [String: Any])?["code"] as? String }
                == "generation_in_progress"
        )
        var tokens = 5
        for _ in 0..<400 where tokens == 5 {
            try await Task.sleep(for: .milliseconds(100))
            tokens = try await database.ledger.balance(userId: "user_sweep")?.tokens ?? -1
        }
        #expect(tokens == 6, "the sweep gave nothing back")
        // Deadline 14 s, a sweep every 3.5 s; slack for a loaded machine.
        #expect(ContinuousClock.now - restartedAt < .seconds(26), "the release took \(ContinuousClock.now - restartedAt)")
        #expect(second.process.isRunning)
        #expect(try await reserved() == 0)

        // The retry runs anew as a second attempt, charged once.
        _ = try await http.send(
            OutboundRequest(
                method: "POST",
                url: URL(string: "http://127.0.0.1:\(upstreamPort)/control")!,
                body: Data(#"{"mode":"fast"}"#.utf8),
                timeout: 5
            )
        )
        let retry = try await second.post("/api/generate", body: #"{"input":"Export reports as CSV"}"#, headers: user)
        #expect(retry.0 == 200)
        #expect(try jsonObject(String(decoding: retry.1, as: UTF8.self))["tokensRemaining"] as? Int == 5)
        let attempts = try await database.writerForTests.read { db in
            try Row.fetchOne(db, sql: "SELECT status, attempts FROM generations WHERE payer_id = 'user_sweep'").map {
                ($0["status"] as String, $0["attempts"] as Int)
            }
        }
        #expect(attempts?.0 == "completed" && attempts?.1 == 2)

        // The session's reservation was closed, recorded and logged, never fatal.
        let closed = try await database.writerForTests.read { db in
            try String.fetchOne(db, sql: "SELECT error FROM generations WHERE payer_kind = 'session'")
        }
        #expect(closed?.contains("could not be given back") == true)
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(log.contains(#""msg":"abandoned generation closed without giving its token back""#))
        #expect(!log.contains(sessionId))
        #expect(try await database.ledger.verify().isClean)
    }

    @Test(
        "an anonymous session moved to an account while its generation hangs upstream: when the provider then fails, the token follows the session into the account, and verify sees a token left behind in a moved session"
    )
    func transferDuringGeneration() async throws {
        let directory = try TemporaryDirectory("myba-transfer-inflight")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let (upstream, upstreamPort) = try await startHangingUpstream()
        defer { upstream.send(SIGKILL) }
        let server = try await RunningServer.start(
            environment: serverEnvironment(
                database: databasePath,
                log: directory.file("myba.jsonl"),
                upstreamPort: upstreamPort,
                ["MYBA_AI_TIMEOUT_MS": "30000"]
            )
        )
        defer { server.stop() }
        let session = try jsonObject(
            String(
                decoding: try await server.post(
                    "/api/anonymous-session",
                    body: #"{"fingerprint":"fp-inflight"}"#,
                    headers: [.contentType: "application/json"]
                ).1,
                as: UTF8.self
            )
        )
        let sessionId = try #require(session["sessionId"] as? String)
        let http = CurlHTTPClient()
        let call = Task {
            try await http.send(
                OutboundRequest(
                    method: "POST",
                    url: URL(string: "http://127.0.0.1:\(server.port)/api/generate")!,
                    headers: [("Content-Type", "application/json")],
                    body: Data(#"{"input":"Export reports as CSV","sessionId":"\#(sessionId)"}"#.utf8),
                    timeout: 60
                )
            )
        }
        let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
        for _ in 0..<500 where try await database.sessions.session(id: sessionId)?.remaining != 2 { try await Task.sleep(for: .milliseconds(20)) }
        // Signed in meanwhile: the 2 left move to the account.
        let user: HTTPFields = [.authorization: "Bearer dev:user_inflight", .contentType: "application/json"]
        let moved = try jsonObject(
            String(
                decoding: try await server.post("/api/transfer-anonymous-tokens", body: #"{"sessionId":"\#(sessionId)"}"#, headers: user).1,
                as: UTF8.self
            )
        )
        #expect(moved["transferred"] as? Int == 2)
        // The provider goes away: the generation fails and gives its token back.
        upstream.send(SIGKILL)
        let answer = try await call.value
        #expect(answer.status == 502)
        #expect(try await database.ledger.balance(userId: "user_inflight")?.tokens == 6 + 2 + 1)
        #expect(try await database.ledger.verify().isClean)

        // What verify says of the loss this used to be: another session charged, moved, then
        // released the old way, into the session only.
        let other = try await database.sessions.start(fingerprint: "fp-old-way", clientAddress: "127.0.0.1", settings: AnonymousSettings())
            .session.id
        _ = try await database.sessions.charge(sessionId: other, idempotencyKey: "old-way-charge", requestId: nil)
        _ = try await database.sessions.transfer(sessionId: other, to: "user_inflight", actor: "test", requestId: nil)
        try await database.writerForTests.write { db in
            try db.execute(
                sql: "INSERT INTO anonymous_charges (session_id, amount, idempotency_key, created_at) VALUES (?, -1, 'release:old-way-charge', ?)",
                arguments: [other, SQLTimestamp.string(Date())]
            )
            try db.execute(sql: "UPDATE anonymous_sessions SET used = used - 1 WHERE id = ?", arguments: [other])
        }
        let report = try await database.ledger.verify()
        #expect(report.violations.map(\.field) == ["remainder"], "\(report.violations)")
    }

    @Test(
        "past the in-flight caps a generation is refused at once (429 per account, 503 for the server) with Retry-After and nothing reserved; the calls in flight still end and give their tokens back"
    )
    func inFlightCaps() async throws {
        let directory = try TemporaryDirectory("myba-in-flight")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let (upstream, upstreamPort) = try await startHangingUpstream()
        defer { upstream.send(SIGKILL) }
        let server = try await RunningServer.start(
            environment: serverEnvironment(
                database: databasePath,
                log: directory.file("myba.jsonl"),
                upstreamPort: upstreamPort,
                ["MYBA_AI_TIMEOUT_MS": "30000", "MYBA_MAX_GENERATIONS_IN_FLIGHT": "3", "MYBA_MAX_GENERATIONS_PER_ACCOUNT": "2"]
            )
        )
        defer { server.stop() }
        let http = CurlHTTPClient()
        func generate(_ user: String, _ key: String) -> Task<OutboundResponse, any Error> {
            Task {
                try await http.send(
                    OutboundRequest(
                        method: "POST",
                        url: URL(string: "http://127.0.0.1:\(server.port)/api/generate")!,
                        headers: [("Content-Type", "application/json"), ("Authorization", "Bearer dev:\(user)"), ("Idempotency-Key", key)],
                        body: Data(#"{"input":"Export reports as CSV"}"#.utf8),
                        timeout: 60
                    )
                )
            }
        }
        let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
        func reserved() async throws -> Int {
            try await database.writerForTests.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM generations WHERE status = 'reserved'") ?? 0
            }
        }
        let hanging = [generate("user_caps_a", "a1"), generate("user_caps_a", "a2")]
        for _ in 0..<500 where try await reserved() < 2 { try await Task.sleep(for: .milliseconds(20)) }
        let third = try await generate("user_caps_a", "a3").value
        #expect(third.status == 429 && third.header("Retry-After") != nil)
        #expect(String(decoding: third.body, as: UTF8.self).contains("too_many_in_flight"))
        let other = [generate("user_caps_b", "b1")]
        for _ in 0..<500 where try await reserved() < 3 { try await Task.sleep(for: .milliseconds(20)) }
        let full = try await generate("user_caps_b", "b2").value
        #expect(full.status == 503 && full.header("Retry-After") != nil)
        #expect(String(decoding: full.body, as: UTF8.self).contains("overloaded"))
        #expect(try await reserved() == 3)
        #expect(try await database.ledger.balance(userId: "user_caps_a")?.tokens == 4)
        // The upstream goes away: every call in flight fails and gives its token back.
        upstream.send(SIGKILL)
        for call in hanging + other { #expect(try await call.value.status == 502) }
        #expect(try await database.ledger.balance(userId: "user_caps_a")?.tokens == 6)
        #expect(try await database.ledger.balance(userId: "user_caps_b")?.tokens == 6)
        #expect(try await database.ledger.verify().isClean)
    }
}

/// A server on `database` whose one AI model (`m1`) is the upstream at `upstreamPort`, plus `extra`.
func serverEnvironment(database: String, log: String, upstreamPort: Int, _ extra: [String: String]) -> [String: String] {
    [
        "PORT": "0", "MYBA_DATABASE": database, "MYBA_LOG_FILE": log, "MYBA_AI_MODELS": "m1",
        "OPENROUTER_API_KEY": "sk-or-test", "OPENROUTER_API_BASE": "http://127.0.0.1:\(upstreamPort)/api/v1",
    ].merging(extra) { _, new in new }
}

/// `Tests/soak/upstream.py` in hang mode: an OpenRouter whose calls never answer until it is
/// killed. Returns the process (kill it to make every call in flight fail) and its port.
func startHangingUpstream() async throws -> (process: ChildProcess, port: Int) {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let upstream = try ChildProcess.start(
        "/usr/bin/env",
        ["python3", root.appendingPathComponent("Tests/soak/upstream.py").path, "--mode", "hang"],
        environment: ["PATH": "/usr/bin:/bin:/usr/local/bin"]
    )
    let line = try await upstream.waitForOutput("port").split(separator: "\n").first ?? ""
    guard let port = try jsonObject(String(line))["port"] as? Int else {
        upstream.send(SIGKILL)
        throw TestSupportError("upstream.py printed no port: \(line)")
    }
    return (upstream, port)
}
