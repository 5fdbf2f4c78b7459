import Foundation
import GRDB
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

/// Counts the transactions the writer connection commits.
private final class CommitCounter: TransactionObserver, @unchecked Sendable {
    private let count = Mutex(0)
    var commits: Int { count.withLock { $0 } }
    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { false }
    func databaseDidChange(with event: DatabaseEvent) {}
    func databaseDidCommit(_ db: Database) { count.withLock { $0 += 1 } }
    func databaseDidRollback(_ db: Database) {}
}

private struct Refused: Error, Equatable {}

/// A ledger on a real file whose writer queue can be held shut, so that writes queue up and are
/// known to share one batch when it opens.
private struct GroupCommitFixture {
    let ledger: LedgerFixture
    let counter = CommitCounter()
    var database: AppDatabase { ledger.database }

    init() throws {
        ledger = try LedgerFixture()
        let counter = self.counter
        try ledger.database.writerForTests.writeWithoutTransaction { db in db.add(transactionObserver: counter, extent: .databaseLifetime) }
    }

    /// Runs `writes` while the writer is held, releases it once all of them wait in the queue,
    /// and returns their outcomes in the order given.
    func inOneBatch<T: Sendable>(_ writes: [@Sendable () async throws -> T]) async throws -> [Result<T, any Error>] {
        let gate = DispatchSemaphore(value: 0)
        database.writerForTests.asyncWriteWithoutTransaction { _ in gate.wait() }
        // One at a time, each queued before the next starts: tasks started together may reach
        // the queue in any order on a loaded machine, and the order given is the queue order.
        var tasks: [Task<Result<T, any Error>, Never>] = []
        let deadline = ContinuousClock.now + .seconds(10)
        for (index, write) in writes.enumerated() {
            tasks.append(
                Task { () -> Result<T, any Error> in
                    do { return .success(try await write()) } catch { return .failure(error) }
                }
            )
            while database.groupCommit.waitingCount < index + 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        try #require(database.groupCommit.waitingCount == writes.count, "the writes never all queued up")
        gate.signal()
        var results: [Result<T, any Error>] = []
        for task in tasks { results.append(await task.value) }
        return results
    }

    func count(_ sql: String) async throws -> Int {
        try await database.writerForTests.read { db in try Int.fetchOne(db, sql: sql)! }
    }
}

@Suite("Group commit")
struct GroupCommitTests {
    @Test("concurrent consumes share commits: 400 calls on 250 tokens spend exactly 250 in far fewer than 400 commits")
    func concurrentConsumesShareCommits() async throws {
        let fixture = try GroupCommitFixture()
        defer { fixture.ledger.directory.remove() }
        try await fixture.ledger.customer("user_1", tokens: 250)
        let before = fixture.counter.commits
        let outcomes = await withTaskGroup(of: String.self) { group in
            for index in 0..<400 {
                group.addTask {
                    do {
                        _ = try await fixture.database.ledger.consume(userId: "user_1", idempotencyKey: "c\(index)", actor: "test")
                        return "ok"
                    } catch LedgerError.insufficientTokens {
                        return "insufficient"
                    } catch {
                        return "error \(error)"
                    }
                }
            }
            var all: [String] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        #expect(outcomes.filter { $0 == "ok" }.count == 250)
        #expect(outcomes.filter { $0 == "insufficient" }.count == 150)
        #expect(outcomes.filter { $0.hasPrefix("error") }.isEmpty)
        let balance = try #require(try await fixture.database.ledger.balance(userId: "user_1"))
        #expect(balance.tokens == 0 && balance.tokensUsed == 250)
        #expect(try await fixture.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'consume'") == 250)
        #expect(try await fixture.database.ledger.verify().isClean)
        let commits = fixture.counter.commits - before
        #expect(commits < 400 / 2, "\(commits) commits for 400 writes: they did not share transactions")
    }

    @Test("writes of one batch commit once, and a refused one changes nothing and fails alone")
    func refusalInsideABatch() async throws {
        let fixture = try GroupCommitFixture()
        defer { fixture.ledger.directory.remove() }
        try await fixture.ledger.customer("user_1", tokens: 3)
        let before = fixture.counter.commits
        let database = fixture.database
        var writes: [@Sendable () async throws -> Int] = (0..<5).map { index in
            { try await database.ledger.consume(userId: "user_1", idempotencyKey: "c\(index)", actor: "test").balance.tokens }
        }
        // A write that changes rows, then throws: none of its changes may survive the batch.
        writes.insert(
            {
                try await database.writeRawForTests { db -> Int in
                    try db.execute(sql: "INSERT INTO customers (user_id, created_at) VALUES ('ghost', '2026-01-01 00:00:00.000')")
                    throw Refused()
                }
            },
            at: 2
        )
        let results = try await fixture.inOneBatch(writes)
        #expect(fixture.counter.commits - before == 1, "the batch should be one transaction")
        let succeeded = results.compactMap { try? $0.get() }
        #expect(succeeded == [2, 1, 0], "the first three consumes in queue order succeed")
        for result in results[4...] {
            #expect(throws: LedgerError.self) { try result.get() }
        }
        #expect(throws: Refused.self) { try results[2].get() }
        #expect(try await fixture.count("SELECT COUNT(*) FROM customers WHERE user_id = 'ghost'") == 0)
        #expect(try await fixture.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'consume'") == 3)
        #expect(try await fixture.database.ledger.balance(userId: "user_1")?.tokens == 0)
        #expect(try await fixture.database.ledger.verify().isClean)
    }

    @Test("after-commit actions run for the writes that committed, never for one rolled back to its savepoint")
    func afterCommitActions() async throws {
        let fixture = try GroupCommitFixture()
        defer { fixture.ledger.directory.remove() }
        let ran = Mutex<[String]>([])
        let database = fixture.database
        let write = { @Sendable (name: String, fails: Bool) -> (@Sendable () async throws -> Void) in
            {
                try await database.write { tx in
                    tx.afterCommit { ran.withLock { $0.append(name) } }
                    if fails { throw Refused() }
                }
            }
        }
        let results = try await fixture.inOneBatch([write("a", false), write("b", true), write("c", false)])
        #expect(results.map { (try? $0.get()) != nil } == [true, false, true])
        #expect(ran.withLock { $0 } == ["a", "c"])
    }

    @Test("when SQLite abandons the whole transaction, the writes before the failing one run again and commit once")
    func abandonedTransactionIsRetried() async throws {
        let fixture = try GroupCommitFixture()
        defer { fixture.ledger.directory.remove() }
        try await fixture.ledger.customer("user_1", tokens: 0)
        let ran = Mutex<[String]>([])
        let database = fixture.database
        let grant = { @Sendable (key: String) -> (@Sendable () async throws -> Int) in
            {
                try await database.write { tx -> Int in
                    tx.afterCommit { ran.withLock { $0.append(key) } }
                    return try Ledger.post(
                        LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: key, actor: "test", reason: "group commit"),
                        now: Date(),
                        in: tx
                    ).balance.tokens
                }
            }
        }
        // What a full disk or an I/O error does: SQLite rolls back the whole transaction.
        let abandon: @Sendable () async throws -> Int = {
            try await database.writeRawForTests { db -> Int in
                try db.execute(sql: "ROLLBACK TRANSACTION")
                throw Refused()
            }
        }
        let results = try await fixture.inOneBatch([grant("g1"), grant("g2"), abandon, grant("g3")])
        #expect(try results[0].get() == 1)
        #expect(try results[1].get() == 2)
        #expect(throws: Refused.self) { try results[2].get() }
        #expect(try results[3].get() == 3)
        #expect(try await fixture.count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'adjust' AND idempotency_key LIKE 'g%'") == 3)
        #expect(try await fixture.database.ledger.balance(userId: "user_1")?.tokens == 3)
        #expect(ran.withLock { $0 } == ["g1", "g2", "g3"], "each action once, after the commit that kept its write")
        #expect(try await fixture.database.ledger.verify().isClean)
    }

    @Test("a batch that cannot get the write lock fails every write in it and changes nothing; the next batch commits")
    func lockHeldElsewhere() async throws {
        let directory = try TemporaryDirectory("myba-group-lock")
        defer { directory.remove() }
        let path = directory.file("myba.sqlite")
        let database = try AppDatabase.openFile(at: path, options: .init(busyTimeout: 0.2))
        try await database.ledger.createCustomer(userId: "user_1")
        // Another process's writer, holding the lock.
        let other = try DatabaseQueue(path: path)
        let locked = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        other.asyncWriteWithoutTransaction { db in
            try? db.execute(sql: "BEGIN IMMEDIATE TRANSACTION")
            locked.signal()
            release.wait()
            try? db.execute(sql: "ROLLBACK TRANSACTION")
            locked.signal()
        }
        locked.wait()
        let refused = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<8 {
                group.addTask {
                    do {
                        _ = try await database.ledger.post(
                            LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: "a\(index)", actor: "test", reason: "lock")
                        )
                        return false
                    } catch let error as DatabaseError {
                        return error.resultCode == .SQLITE_BUSY
                    } catch {
                        return false
                    }
                }
            }
            var all: [Bool] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        #expect(refused == Array(repeating: true, count: 8))
        release.signal()
        locked.wait()
        #expect(try await database.ledger.balance(userId: "user_1")?.tokens == 0)
        let later = try await database.ledger.post(
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 1, idempotencyKey: "a0", actor: "test", reason: "lock")
        )
        #expect(later.balance.tokens == 1 && !later.replayed)
    }
}
