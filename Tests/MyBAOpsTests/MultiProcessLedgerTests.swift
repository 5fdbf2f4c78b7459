import Foundation
import MyBATestSupport
import Testing

@testable import MyBAOps

/// The console and the server share one SQLite file; these tests share it between real
/// processes running the ledger's own consume code (`myba-bench consume-worker`).
@Suite("Ledger across processes", .serialized)
struct MultiProcessLedgerTests {
    @Test("two processes racing for 120 tokens with 200 consumes spend exactly 120")
    func twoProcesses() async throws {
        let directory = try TemporaryDirectory("myba-mp")
        defer { directory.remove() }
        let path = directory.file("shared.sqlite")
        let database = try AppDatabase.openFile(at: path)
        try await database.ledger.createCustomer(userId: "user_1")
        _ = try await database.ledger.post(
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 120, idempotencyKey: "fund", actor: "test", reason: "fixture")
        )

        let workers = try (0..<2).map { index in
            try WorkerProcess.start([
                "consume-worker", "--db", path, "--user", "user_1", "--attempts", "100", "--key-prefix", "p\(index)", "--concurrency", "4",
            ])
        }
        // Open the gate only when both have opened the database, so their consumes overlap.
        for worker in workers { _ = try await worker.waitForOutput("ready") }
        _ = FileManager.default.createFile(atPath: path + ".go", contents: nil)
        var lines: [String] = []
        var windows: [(started: Int, finished: Int)] = []
        for worker in workers {
            let result = try await worker.wait()
            #expect(result.status == 0, "worker failed: \(result.stderr)")
            let output = result.stdout.split(separator: "\n").map(String.init)
            func time(_ label: String) -> Int? { output.first { $0.hasPrefix(label + " ") }.flatMap { Int($0.dropFirst(label.count + 1)) } }
            windows.append((try #require(time("started")), try #require(time("finished"))))
            lines += output.filter { $0.hasPrefix("ok ") || $0.hasPrefix("insufficient ") || $0.hasPrefix("error ") }
        }
        // The race was a race: each worker began consuming before the other had finished.
        #expect(windows.allSatisfy { window in windows.allSatisfy { window.started < $0.finished } }, "\(windows)")
        #expect(lines.count == 200)
        #expect(lines.filter { $0.hasPrefix("error") }.isEmpty, "\(lines.filter { $0.hasPrefix("error") })")
        #expect(lines.filter { $0.hasPrefix("ok ") }.count == 120)
        #expect(lines.filter { $0.hasPrefix("insufficient ") }.count == 80)
        let balance = try #require(try await database.ledger.balance(userId: "user_1"))
        #expect(balance.tokens == 0)
        #expect(balance.tokensUsed == 120)
        #expect(try await database.ledger.verify().isClean)
        // Both won tokens. (Commit order need not alternate: a writer committing back to back can
        // keep the lock for several batches, which is why the windows are what is checked.)
        let order = try await database.writerForTests.read { db in
            try String.fetchAll(db, sql: "SELECT idempotency_key FROM ledger_entries WHERE kind = 'consume' ORDER BY id")
        }.map { $0.contains("p0") ? "0" : "1" }
        #expect(Set(order) == ["0", "1"], "commit order by process: \(order.joined())")
    }

    @Test("eight processes opening a brand-new file at the same moment all migrate it without error")
    func concurrentFirstOpen() async throws {
        let directory = try TemporaryDirectory("myba-open")
        defer { directory.remove() }
        let path = directory.file("nested/new.sqlite")
        _ = try FileManager.default.createDirectory(atPath: directory.file("nested"), withIntermediateDirectories: true)
        let workers = try (0..<8).map { index in
            try WorkerProcess.start(["consume-worker", "--db", path, "--user", "user_1", "--attempts", "0", "--key-prefix", "o\(index)", "--create"])
        }
        try await Task.sleep(for: .milliseconds(300))
        _ = FileManager.default.createFile(atPath: path + ".go", contents: nil)
        for worker in workers {
            let result = try await worker.wait()
            #expect(result.status == 0, "\(result.stderr)")
        }
        let database = try AppDatabase.openFile(at: path, options: .init(createIfMissing: false))
        #expect(try await database.ledger.verify().isClean)
        let applied = try await database.writerForTests.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(applied == AppDatabase.migrator.migrations)
    }

    @Test("a process killed with SIGKILL mid-consume leaves every acknowledged consume committed and the ledger clean")
    func crashMidConsume() async throws {
        let directory = try TemporaryDirectory("myba-crash")
        defer { directory.remove() }
        let path = directory.file("crash.sqlite")
        let database = try AppDatabase.openFile(at: path)
        try await database.ledger.createCustomer(userId: "user_1")
        _ = try await database.ledger.post(
            LedgerPosting(userId: "user_1", kind: .adjust, delta: 100_000, idempotencyKey: "fund", actor: "test", reason: "fixture")
        )
        _ = FileManager.default.createFile(atPath: path + ".go", contents: nil)

        var acknowledgedTotal = 0
        for round in 0..<3 {
            let worker = try WorkerProcess.start([
                "consume-worker", "--db", path, "--user", "user_1", "--attempts", "100000", "--key-prefix", "crash\(round)", "--concurrency", "3",
            ])
            // Kill it at a random moment once it is consuming (a slow start under load must
            // not turn the drill into a kill before the first consume).
            _ = try await worker.waitForOutput("ok ")
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...200)))
            worker.send(SIGKILL)
            let result = try await worker.wait()
            #expect(result.bySignal && result.status == SIGKILL, "worker ended on its own: \(result.stderr)")
            let acknowledged = Set(result.stdout.split(separator: "\n").filter { $0.hasPrefix("ok ") }.map { String($0.dropFirst(3)) })
            #expect(!acknowledged.isEmpty, "the worker was killed before it consumed anything; raise the sleep")
            let committed = Set(
                try await database.writerForTests.read { db in
                    try String.fetchAll(
                        db,
                        sql: "SELECT idempotency_key FROM ledger_entries WHERE idempotency_key LIKE ?",
                        arguments: ["crash\(round):%"]
                    )
                }
            )
            // Every acknowledged consume is in the ledger; at most the in-flight ones (one per lane)
            // committed without their acknowledgement reaching us.
            #expect(acknowledged.isSubset(of: committed))
            #expect(committed.count - acknowledged.count <= 3)
            acknowledgedTotal += committed.count
        }
        let report = try await database.ledger.verify()
        #expect(report.isClean, "\(report.violations)")
        #expect(try await database.ledger.balance(userId: "user_1")?.tokens == 100_000 - acknowledgedTotal)
        // The file is still writable after the crashes.
        _ = try await database.ledger.consume(userId: "user_1", idempotencyKey: "after-crash", actor: "test")
    }
}

/// `myba-bench` workers: the ledger's own code in processes of their own.
enum WorkerProcess {
    static func start(_ arguments: [String]) throws -> ChildProcess {
        try BuiltProduct.start("myba-bench", arguments)
    }
}

@Suite("Opening a database another process is stuck opening")
struct DatabaseLockWaitTests {
    @Test("opening waits for the lock beside the file only so long, then fails naming the holder's pid; nothing is opened or changed")
    func boundedLockWait() async throws {
        let directory = try TemporaryDirectory("myba-lockwait")
        defer { directory.remove() }
        let path = directory.file("myba.sqlite")
        _ = try AppDatabase.openFile(at: path)
        // Another process (a separate open file description, as flock sees it) holds the lock.
        let fd = open(path + ".lock", O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX) == 0)
        _ = ftruncate(fd, 0)
        _ = "pid 4242 (myba-server)\n".withCString { pwrite(fd, $0, strlen($0), 0) }
        let started = ContinuousClock.now
        let error = try #require(throws: StorageError.self) {
            _ = try AppDatabase.openFile(at: path, options: .init(lockTimeout: .milliseconds(300)))
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect("\(error)".contains("pid 4242 (myba-server)"), "\(error)")
        flock(fd, LOCK_UN)
        _ = try AppDatabase.openFile(at: path, options: .init(lockTimeout: .milliseconds(300)))
    }
}
