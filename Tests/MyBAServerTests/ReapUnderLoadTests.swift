import Foundation
import GRDB
import HummingbirdTesting
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Reaping under load", .serialized)
struct ReapUnderLoadTests {
    @Test("myba-admin reaps 20 000 stale sessions from the file the server is serving from: no request fails, the count is exact")
    func reapWhileServing() async throws {
        let fixture = try ServerFixture { $0.anonymous.sessionsPerHour = 100_000 }
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        let database = try fixture.database()
        try await database.writerForTests.write { db in
            let statement = try db.makeStatement(
                sql: """
                    INSERT INTO anonymous_sessions (id, fingerprint_hash, client_address_hash, granted, used, created_at, last_seen_at)
                    VALUES (?, ?, 'x', 3, 0, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000')
                    """
            )
            for index in 0..<20_000 { try statement.execute(arguments: ["anon_stale_\(index)", "stale-\(index)"]) }
        }
        _ = try await database.ledger.openAccount(userId: "user_load", email: nil, actor: "test")
        _ = try await database.ledger.post(
            LedgerPosting(userId: "user_load", kind: .adjust, delta: 100_000, idempotencyKey: "load", actor: "test", reason: "load")
        )
        let databasePath = fixture.settings.databasePath
        let generated = try await app.test(.live) { client -> Int in
            let port = try #require(client.port)
            let reapStarted = ContinuousClock.now
            let reapEnded = ReapEnd()
            async let reaped = Self.reap(databasePath, markingEndIn: reapEnded)
            let results = try await Self.load(port: port, until: reapEnded)
            let reap = try await reaped
            let ended = try #require(reapEnded.instant.withLock { $0 })
            #expect(results.allSatisfy { $0.status == 200 }, "\(Dictionary(grouping: results.map(\.status), by: { $0 }).mapValues(\.count))")
            #expect(reap.status == 0, "\(reap.stderr)")
            #expect(try jsonObject(reap.stdout)["removed"] as? Int == 20_000)
            // The load and the reap overlapped: requests were answered while the reap ran.
            let during = results.filter { $0.at > reapStarted && $0.at < ended }.count
            #expect(during >= 10, "\(during) requests answered while the reap ran (\(ended - reapStarted))")
            #expect(try await database.sessions.count() == results.filter { $0.kind == "session" }.count)
            return results.filter { $0.kind == "generate" }.count
        }
        #expect(try await database.ledger.balance(userId: "user_load")?.tokensUsed == generated)
        #expect(try await database.ledger.verify().isClean)
    }

    static func reap(_ databasePath: String, markingEndIn end: ReapEnd) async throws -> ProcessResult {
        let result = try await BuiltProduct.run(
            "myba-admin",
            // Paced (at least 100 batches × 30 ms) so that the overlap does not hang on how fast
            // a loaded machine runs the two sides.
            ["sessions", "reap", "--older-than", "30d", "--yes", "--batch", "200", "--pause-ms", "30", "--json", "--db", databasePath]
        )
        end.instant.withLock { $0 = ContinuousClock.now }
        return result
    }

    /// Eight clients keep the server busy until the reap has returned (and for 25 requests each
    /// at least), each answer's time kept.
    static func load(port: Int, until end: ReapEnd) async throws -> [LoadAnswer] {
        try await withThrowingTaskGroup(of: [LoadAnswer].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var done: [LoadAnswer] = []
                    var index = worker
                    while end.instant.withLock({ $0 == nil }) || done.count < 25 {
                        let kind = index % 2 == 0 ? "generate" : "session"
                        var request = URLRequest(
                            url: URL(string: "http://127.0.0.1:\(port)/api/\(kind == "generate" ? "generate" : "anonymous-session")")!
                        )
                        if kind == "generate" {
                            request.setValue("Bearer dev:user_load", forHTTPHeaderField: "Authorization")
                            request.httpBody = try JSONSerialization.data(withJSONObject: ["input": "load \(index)"])
                        } else {
                            request.httpBody = try JSONSerialization.data(withJSONObject: ["fingerprint": "fresh-\(index)"])
                        }
                        request.httpMethod = "POST"
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        let (_, response) = try await URLSession.shared.data(for: request)
                        done.append(LoadAnswer(kind: kind, status: (response as! HTTPURLResponse).statusCode, at: ContinuousClock.now))
                        index += 8
                    }
                    return done
                }
            }
            return try await group.reduce(into: [LoadAnswer]()) { $0 += $1 }
        }
    }
}

/// One request of the load beside the reap, and when its answer came.
struct LoadAnswer: Sendable {
    var kind: String
    var status: Int
    var at: ContinuousClock.Instant
}

/// When the reap returned; read by the load's clients to know when to stop.
final class ReapEnd: Sendable {
    let instant = Mutex<ContinuousClock.Instant?>(nil)
}

@Suite("Server session reaper")
struct ServerReaperTests {
    @Test("with MYBA_SESSION_TTL the server reaps stale untransferred sessions itself")
    func reaperService() async throws {
        let fixture = try ServerFixture { $0.sessionTTLSeconds = 3600 }
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        let database = try fixture.database()
        let fresh = try await database.sessions.start(fingerprint: "fresh", clientAddress: "a", settings: AnonymousSettings())
        try await database.writerForTests.write { db in
            for index in 0..<50 {
                try db.execute(
                    sql: """
                        INSERT INTO anonymous_sessions (id, fingerprint_hash, granted, used, created_at, last_seen_at)
                        VALUES (?, ?, 3, 0, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000')
                        """,
                    arguments: ["anon_old_\(index)", "old-\(index)"]
                )
            }
        }
        try await app.test(.live) { _ in
            let deadline = Date().addingTimeInterval(10)
            while try await database.sessions.count() > 1, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(try await database.sessions.count() == 1)
        #expect(try await database.sessions.session(id: fresh.session.id) != nil)
        #expect(try fixture.logLines().contains { $0["msg"] as? String == "stale anonymous sessions reaped" && $0["sessions.removed"] as? Int == 50 })
    }
}
