import Foundation
import GRDB
import HTTPTypes
import Logging
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

/// The progress watchdog: a stuck database writer (real binary, the write lock held by another
/// connection) and a stuck executor (in process, both pool threads blocked) are reported by
/// `/api/health` and logged, and the report clears when progress resumes.
@Suite("Progress watchdog", .serialized)
struct WatchdogTests {
    @Test(
        "writes waiting on a lock held elsewhere: /api/health answers 503 degraded with stalled database_writer and an error is logged; once the lock is free the write completes and health is ok again"
    )
    func writerStallShowsInHealth() async throws {
        let directory = try TemporaryDirectory("myba-watchdog")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let logPath = directory.file("myba.jsonl")
        let server = try await RunningServer.start(environment: [
            "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": logPath,
            "MYBA_WATCHDOG_STALL_MS": "400", "MYBA_DB_BUSY_TIMEOUT_MS": "20000",
        ])
        defer { server.stop() }
        let user: HTTPFields = [.authorization: "Bearer dev:user_watch", .contentType: "application/json"]
        #expect(try await server.get("/api/user-tokens/user_watch", headers: user).0 == 200)

        // Another connection takes the write lock and keeps it.
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true
        let holder = try DatabaseQueue(path: databasePath, configuration: configuration)
        try await holder.writeWithoutTransaction { db in try db.execute(sql: "BEGIN IMMEDIATE") }
        let generation = Task { try await server.post("/api/generate", body: #"{"input":"Export reports as CSV"}"#, headers: user) }
        var stalled: [String: Any] = [:]
        for _ in 0..<50 {
            try await Task.sleep(for: .milliseconds(100))
            let (status, body) = try await server.get("/api/health")
            let object = try jsonObject(String(decoding: body, as: UTF8.self))
            if status == 503 {
                stalled = object
                break
            }
        }
        #expect(stalled["status"] as? String == "degraded")
        #expect(stalled["stalled"] as? [String] == ["database_writer"])

        try await holder.writeWithoutTransaction { db in try db.execute(sql: "COMMIT") }
        let (status, _) = try await generation.value
        #expect(status == 200)
        var recovered = false
        for _ in 0..<50 where !recovered {
            let (status, body) = try await server.get("/api/health")
            let object = try jsonObject(String(decoding: body, as: UTF8.self))
            recovered = status == 200 && object["stalled"] == nil
            if !recovered { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(recovered)
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(log.contains(#""level":"error","msg":"watchdog: the database writer has made no progress""#))
        #expect(log.contains(#""msg":"watchdog: the database writer is making progress again""#))
    }

    @Test(
        "every thread of the executor blocked (in a process of its own): the watchdog's own thread reports the executor stalled and logs it, then sees it recover"
    )
    func executorStall() async throws {
        let run = try await BuiltProduct.run("myba-bench", ["watchdog-probe", "--block-ms", "1500", "--threshold-ms", "300"], timeout: .seconds(60))
        #expect(run.status == 0, "\(run.stderr)")
        let report = try jsonObject(String(run.stdout.split(separator: "\n").last ?? ""))
        #expect(report["healthyBefore"] as? Bool == true)
        #expect(report["stalledDuring"] as? [String] == ["executor"])
        #expect(report["healthyAfter"] as? Bool == true)
        let log = report["log"] as? [String] ?? []
        #expect(log.contains { $0.contains(#""level":"error","msg":"watchdog: the executor has made no progress""#) }, "\(log)")
        #expect(log.contains { $0.contains(#""msg":"watchdog: the executor is making progress again""#) }, "\(log)")
    }
}
