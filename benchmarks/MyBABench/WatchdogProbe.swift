import ArgumentParser
import Foundation
import Logging
import MyBAOps
import Synchronization

/// A process of its own for the watchdog's executor test: it blocks every thread of its own
/// cooperative pool, as a blocking call inside a task would, and prints what the watchdog saw.
/// In the test process itself the other suites' tasks would share the pool and blur the stall.
struct WatchdogProbe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watchdog-probe",
        abstract: "Block the cooperative pool for a while; print the watchdog's log lines and reports as JSON."
    )

    @Option(help: "How long the pool stays blocked, in milliseconds.")
    var blockMs = 1500

    @Option(help: "The watchdog's stall threshold, in milliseconds.")
    var thresholdMs = 300

    func run() async throws {
        let lines = Mutex<[String]>([])
        let destination = LogDestination { line in lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) } }
        let logger = Logger(label: "myba.probe") { label in JSONLogHandler(label: label, level: .debug, destination: destination) }
        let watchdog = ProgressWatchdog(threshold: .milliseconds(thresholdMs), beat: .milliseconds(50), logger: logger) { .zero }
        watchdog.start()
        try await Task.sleep(for: .milliseconds(thresholdMs * 2))
        let before = watchdog.report()
        // The report is read from a thread outside the pool while the pool is blocked.
        let during = Mutex<ProgressWatchdog.Report?>(nil)
        let blockMs = self.blockMs
        let observer = Thread {
            // The blocking tasks may start late on a loaded machine: watch for twice their span.
            let deadline = Date().addingTimeInterval(Double(blockMs) / 250 + 1)
            while Date() < deadline {
                Thread.sleep(forTimeInterval: 0.02)
                let report = watchdog.report()
                if !report.isHealthy {
                    during.withLock { $0 = report }
                    return
                }
            }
        }
        observer.start()
        await withTaskGroup(of: Void.self) { group in
            // At the heartbeat's priority, more tasks than the pool has threads.
            for _ in 0..<max(2, ProcessInfo.processInfo.activeProcessorCount) * 2 {
                group.addTask(priority: .medium) { usleep(useconds_t(blockMs * 1000)) }
            }
        }
        var after = watchdog.report()
        for _ in 0..<100 where !after.isHealthy {
            try await Task.sleep(for: .milliseconds(20))
            after = watchdog.report()
        }
        watchdog.stop()
        let document: [String: Any] = [
            "healthyBefore": before.isHealthy,
            "stalledDuring": during.withLock { $0 }?.stalled ?? [],
            "healthyAfter": after.isHealthy,
            "log": lines.withLock { $0 },
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: document), as: UTF8.self))
    }
}
