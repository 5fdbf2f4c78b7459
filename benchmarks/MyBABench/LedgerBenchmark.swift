import ArgumentParser
import Foundation
import GRDB
import MyBAOps

/// Consumes per second through the ledger against bare single-row UPDATE transactions on the
/// same SQLite file with the same connection settings, alternating rounds so drift on a noisy
/// machine hits both sides alike.
struct LedgerBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Ledger consumes/s vs bare UPDATE transactions; prints a Markdown table."
    )

    @Option(help: "Operations per round and side.")
    var operations = 1000

    @Option(help: "Rounds; each runs both sides once, in alternating order.")
    var rounds = 5

    @Option(help: "Concurrent callers on the async side.")
    var concurrency = 16

    @Option(help: "Directory for the benchmark's SQLite file (a fresh file is made inside).")
    var directory = NSTemporaryDirectory()

    func validate() throws {
        guard operations > 0, rounds > 0 else { throw ValidationError("--operations and --rounds must be positive") }
    }

    func run() async throws {
        let path = (directory as NSString).appendingPathComponent("myba-bench-\(getpid()).sqlite")
        defer { for suffix in ["", "-wal", "-shm", ".lock"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let database = try AppDatabase.openFile(at: path)
        let userId = "user_bench"
        try await database.ledger.createCustomer(userId: userId)
        let total = operations * rounds * 2
        _ = try await database.ledger.post(
            LedgerPosting(userId: userId, kind: .adjust, delta: total, idempotencyKey: "bench:seed", actor: "bench", reason: "benchmark balance")
        )
        // The baseline's own connection to the same file: storage keeps its writer to itself.
        let bareWriter = try DatabasePool(path: path, configuration: AppDatabase.makeConfiguration(busyTimeout: 5))
        // As durable as the ledger's writer (GRDB lowers it to NORMAL when it enables WAL).
        try await bareWriter.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
        try await bareWriter.write { db in
            try db.execute(sql: "CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
            try db.execute(sql: "INSERT INTO bench_counter (id, value) VALUES (1, ?)", arguments: [total])
        }

        var bare: [Double] = []
        var ledgerSync: [Double] = []
        var ledgerAsync: [Double] = []
        var keyCounter = 0
        for round in 0..<rounds {
            var sides: [() async throws -> Double] = [
                { try timeIt { try bareUpdates(bareWriter, count: operations) } },
                {
                    try timeIt {
                        for _ in 0..<operations {
                            keyCounter += 1
                            _ = try database.ledger.consumeSync(
                                userId: userId,
                                idempotencyKey: "gen:req_\(keyCounter)",
                                actor: "api",
                                requestId: "req_\(keyCounter)"
                            )
                        }
                    }
                },
                {
                    // As under server load: many requests waiting on the one writer at once.
                    let base = keyCounter
                    keyCounter += operations
                    let start = ContinuousClock.now
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for lane in 0..<concurrency {
                            group.addTask {
                                for index in stride(from: lane, to: operations, by: concurrency) {
                                    let key = base + index + 1
                                    _ = try await database.ledger.consume(
                                        userId: userId,
                                        idempotencyKey: "gen:req_\(key)",
                                        actor: "api",
                                        requestId: "req_\(key)"
                                    )
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    return seconds(ContinuousClock.now - start)
                },
            ]
            if round % 2 == 1 { sides.reverse() }
            var results: [Double] = []
            for side in sides { results.append(try await side()) }
            if round % 2 == 1 { results.reverse() }
            bare.append(results[0])
            ledgerSync.append(results[1])
            ledgerAsync.append(results[2])
        }
        let verification = try await database.ledger.verify()

        let bareRate = Double(operations) / median(bare)
        let syncRate = Double(operations) / median(ledgerSync)
        let asyncRate = Double(operations) / median(ledgerAsync)
        print("| measure | median ops/s | ratio to bare |")
        print("| --- | ---: | ---: |")
        print("| bare `UPDATE` transaction (BEGIN IMMEDIATE; UPDATE one row; COMMIT) | \(format(bareRate)) | 1.00 |")
        print("| ledger consume, synchronous, one caller | \(format(syncRate)) | \(String(format: "%.2f", syncRate / bareRate)) |")
        print(
            "| ledger consume, async, \(concurrency) concurrent callers (as the server makes it) | \(format(asyncRate)) | \(String(format: "%.2f", asyncRate / bareRate)) |"
        )
        print("")
        print(
            "\(rounds) rounds × \(operations) operations per side, WAL, synchronous=FULL, one file; goal: ledger ≥ 0.50 × bare. Ledger verify after the run: \(verification.isClean ? "clean" : "\(verification.violations.count) violations") over \(verification.checkedEntries) entries."
        )
    }
}

private func bareUpdates(_ writer: any DatabaseWriter, count: Int) throws {
    for _ in 0..<count {
        try writer.writeWithoutTransaction { db in
            try db.inTransaction(.immediate) {
                try db.cachedStatement(sql: "UPDATE bench_counter SET value = value - 1 WHERE id = 1").execute()
                return .commit
            }
        }
    }
}

private func timeIt(_ body: () throws -> Void) throws -> Double {
    let start = ContinuousClock.now
    try body()
    return seconds(ContinuousClock.now - start)
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

private func format(_ rate: Double) -> String { String(format: "%.0f", rate) }
