import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

/// The reap shares the file with a server that writes all the time: it must wait for the write
/// lock without failing at once, and when it cannot get it, say what it already removed.
@Suite("Session reaping against a busy writer", .serialized)
struct SessionReapTests {
    func makeStaleSessions(_ count: Int, at path: String) async throws -> AppDatabase {
        let database = try AppDatabase.openFile(at: path, options: .init(busyTimeout: 0.05, createIfMissing: true))
        let old = SQLTimestamp.string(Date().addingTimeInterval(-90 * 86_400))
        try await database.writerForTests.write { db in
            for index in 0..<count {
                try db.execute(
                    sql: """
                        INSERT INTO anonymous_sessions (id, fingerprint_hash, granted, used, created_at, last_seen_at)
                        VALUES (?, ?, 3, 0, ?, ?)
                        """,
                    arguments: ["anon_\(index)", "hash_\(index)", old, old]
                )
            }
        }
        return database
    }

    /// Holds the write lock from a second connection for `duration`.
    func holdWriteLock(at path: String, for duration: Duration) async throws -> Task<Void, any Error> {
        let other = try AppDatabase.openFile(at: path, options: .init(busyTimeout: 5, createIfMissing: false))
        let held = AsyncStream<Void>.makeStream()
        let task = Task {
            try await other.writerForTests.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                held.continuation.yield()
                Thread.sleep(forTimeInterval: duration.timeInterval)
                try db.execute(sql: "COMMIT")
            }
        }
        for await _ in held.stream { break }
        return task
    }

    @Test("a reap that meets a held write lock waits and retries, then removes every stale session")
    func waitsForTheLock() async throws {
        let directory = try TemporaryDirectory("myba-reap-busy")
        defer { directory.remove() }
        let path = directory.file("myba.sqlite")
        let database = try await makeStaleSessions(250, at: path)
        let holder = try await holdWriteLock(at: path, for: .milliseconds(600))
        let result = try await database.sessions.reap(
            lastSeenBefore: Date().addingTimeInterval(-86_400),
            batch: 40,
            dryRun: false,
            busyRetries: 8
        )
        try await holder.value
        #expect(result.removed == 250)
        #expect(result.batches == 7)
        #expect(try await database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions") } == 0)
    }

    @Test("a reap that loses the lock for good stops with the count of what it already removed")
    func reportsWhatItRemovedWhenStopped() async throws {
        let directory = try TemporaryDirectory("myba-reap-locked")
        defer { directory.remove() }
        let path = directory.file("myba.sqlite")
        let database = try await makeStaleSessions(100, at: path)
        // The first batch goes through; during the pause after it, another writer takes the lock
        // and keeps it longer than the reap is willing to wait.
        // A long pause after the first batch, and a lock held much longer still, so a loaded
        // machine cannot slip a second batch in before the lock is taken.
        let reap = Task {
            try await database.sessions.reap(
                lastSeenBefore: Date().addingTimeInterval(-86_400),
                batch: 40,
                dryRun: false,
                pause: .seconds(2),
                busyRetries: 1
            )
        }
        while try await database.writerForTests.read({ db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions") }) == 100 {
            try await Task.sleep(for: .milliseconds(5))
        }
        let holder = try await holdWriteLock(at: path, for: .seconds(6))
        do {
            _ = try await reap.value
            Issue.record("the reap should have stopped")
        } catch let stopped as ReapInterrupted {
            #expect(stopped.result.removed == 40)
            #expect(stopped.result.batches == 1)
            #expect(stopped.description.contains("removing 40 session(s)") && stopped.description.contains("run the reap again"))
        }
        try await holder.value
        #expect(try await database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM anonymous_sessions") } == 60)
    }
}

@Suite("Storage health probe")
struct StorageHealthProbeTests {
    @Test("counts are reused for their maximum age while readability is checked on every call")
    func cachedCountsLiveReadability() async throws {
        let directory = try TemporaryDirectory("myba-probe")
        defer { directory.remove() }
        let database = try AppDatabase.openFile(at: directory.file("myba.sqlite"))
        let probe = StorageHealthProbe(database: database, countsMaxAge: .seconds(600))
        #expect(await probe.check().storage.customers == 0)
        try await database.ledger.createCustomer(userId: "user_1")
        #expect(await probe.check().storage.customers == 0, "within its age the count is reused")
        #expect(await StorageHealthProbe(database: database, countsMaxAge: .zero).check().storage.customers == 1)
        try await database.writerForTests.write { db in
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            try db.execute(sql: "DROP TABLE balances")
        }
        let broken = await probe.check()
        #expect(!broken.storage.databaseReadable, "a broken database is reported at once, whatever the cache holds")
        #expect(broken.storage.problem?.contains("balances") == true)
    }
}
