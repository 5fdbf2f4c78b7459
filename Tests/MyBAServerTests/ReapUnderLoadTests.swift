import Foundation
import GRDB
import HummingbirdTesting
import MyBATestSupport
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
        try await database.writer.write { db in
            let statement = try db.makeStatement(
                sql: """
                    INSERT INTO anonymous_sessions (id, fingerprint_hash, client_address_hash, granted, used, created_at, last_seen_at)
                    VALUES (?, ?, 'x', 3, 0, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000')
                    """
            )
            for index in 0..<20_000 { try statement.execute(arguments: ["anon_stale_\(index)", "stale-\(index)"]) }
        }
        _ = try await database.openAccount(userId: "user_load", email: nil, actor: "test")
        _ = try await database.post(
            LedgerPosting(userId: "user_load", kind: .adjust, delta: 1000, idempotencyKey: "load", actor: "test", reason: "load")
        )
        try await app.test(.live) { client in
            let port = try #require(client.port)
            async let reap = BuiltProduct.run(
                "myba-admin",
                ["sessions", "reap", "--older-than", "30d", "--yes", "--batch", "200", "--json", "--db", fixture.settings.databasePath]
            )
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        var request: URLRequest
                        if index % 2 == 0 {
                            request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/api/generate")!)
                            request.setValue("Bearer dev:user_load", forHTTPHeaderField: "Authorization")
                            request.httpBody = try JSONSerialization.data(withJSONObject: ["input": "load \(index)"])
                        } else {
                            request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/api/anonymous-session")!)
                            request.httpBody = try JSONSerialization.data(withJSONObject: ["fingerprint": "fresh-\(index)"])
                        }
                        request.httpMethod = "POST"
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        let (_, response) = try await URLSession.shared.data(for: request)
                        return (response as! HTTPURLResponse).statusCode
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            let reaped = try await reap
            #expect(statuses.count == 200)
            #expect(statuses.allSatisfy { $0 == 200 }, "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
            #expect(reaped.status == 0, "\(reaped.stderr)")
            #expect(try jsonObject(reaped.stdout)["removed"] as? Int == 20_000)
        }
        #expect(try await database.anonymousSessionCount() == 100)
        #expect(try await database.balance(userId: "user_load")?.tokensUsed == 100)
        #expect(try await database.verify().isClean)
    }
}

@Suite("Server session reaper")
struct ServerReaperTests {
    @Test("with MYBA_SESSION_TTL the server reaps stale untransferred sessions itself")
    func reaperService() async throws {
        let fixture = try ServerFixture { $0.sessionTTLSeconds = 3600 }
        defer { fixture.directory.remove() }
        let app = try await fixture.application()
        let database = try fixture.database()
        let fresh = try await database.startAnonymousSession(fingerprint: "fresh", clientAddress: "a", settings: AnonymousSettings())
        try await database.writer.write { db in
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
            while try await database.anonymousSessionCount() > 1, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(try await database.anonymousSessionCount() == 1)
        #expect(try await database.anonymousSession(id: fresh.session.id) != nil)
        #expect(try fixture.logLines().contains { $0["msg"] as? String == "stale anonymous sessions reaped" && $0["sessions.removed"] as? Int == 50 })
    }
}
