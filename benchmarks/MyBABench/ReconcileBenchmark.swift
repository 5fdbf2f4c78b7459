import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdTesting
import MyBAOps
import StripeEmulator

/// `reconcile` against the bare paginated listing it is built on, with N customers on the
/// emulator and the same N in the ledger, in one run.
struct ReconcileBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Reconcile vs bare listing of N Stripe customers; prints a Markdown table."
    )

    @Option(help: "Customers on the emulator and in the ledger.")
    var customers = 10_000

    @Option(help: "Rounds; each times both sides, alternating.")
    var rounds = 3

    func run() async throws {
        let directory = NSTemporaryDirectory() + "myba-reconcile-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try AppDatabase.openFile(at: directory + "/myba.sqlite")
        let emulator = StripeEmulator()
        let count = customers
        let rounds = self.rounds
        let (bare, reconcile) = try await emulator.application().test(.live) { client -> (Double, Double) in
            let stripe = try StripeClient(
                settings: StripeSettings(secretKey: "sk_bench", apiBase: URL(string: "http://127.0.0.1:\(client.port!)")!),
                http: CurlHTTPClient()
            )
            // Fill both sides: N customers with matching metadata.
            try await withThrowingTaskGroup(of: Void.self) { fill in
                for lane in 0..<8 {
                    fill.addTask {
                        for index in stride(from: lane, to: count, by: 8) {
                            let userId = "user_bench_\(index)"
                            let opened = try await database.ledger.openAccount(userId: userId, email: nil, actor: "bench")
                            _ = try await stripe.createCustomer(
                                email: nil,
                                metadata: StripeMetadataKeys.metadata(for: opened.balance).compactMapValues { $0 },
                                idempotencyKey: "bench-\(index)"
                            )
                        }
                    }
                }
                try await fill.waitForAll()
            }
            var bareTimes: [Double] = []
            var reconcileTimes: [Double] = []
            for round in 0..<rounds {
                for side in (round % 2 == 0 ? [0, 1] : [1, 0]) {
                    let start = ContinuousClock.now
                    if side == 0 {
                        _ = try await stripe.allCustomers()
                        bareTimes.append(seconds(ContinuousClock.now - start))
                    } else {
                        let report = try await database.stripeCustomers.reconcile(against: try await stripe.allCustomers())
                        reconcileTimes.append(seconds(ContinuousClock.now - start))
                        guard report.isClean else { throw ValidationError("reconcile found drift in a clean setup: \(report.drifts.count)") }
                    }
                }
            }
            return (bareTimes.sorted()[bareTimes.count / 2], reconcileTimes.sorted()[reconcileTimes.count / 2])
        }
        print("| measure | median seconds | ratio |")
        print("| --- | ---: | ---: |")
        print("| bare paginated listing of \(count) customers | \(String(format: "%.3f", bare)) | 1.00 |")
        print(
            "| reconcile (listing + comparison with the ledger) | \(String(format: "%.3f", reconcile)) | \(String(format: "%.2f", reconcile / bare)) |"
        )
        print("")
        print("\(rounds) rounds, alternating; goal: reconcile ≤ 1.5 × the bare listing.")
    }
}
