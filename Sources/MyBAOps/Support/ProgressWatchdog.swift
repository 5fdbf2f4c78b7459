import Foundation
import Logging
import Synchronization

/// Notices a server that stopped making progress: Swift's executor (a task that should wake
/// every `beat` and does not) or the database writer (writes waiting on a batch that never
/// finishes). A wedged cooperative pool cannot report on itself, so the checks run on a thread
/// of their own, which logs at error level when a stall starts and at notice level when it ends;
/// `/api/health` reads `report()` and answers `degraded` while a stall lasts.
public final class ProgressWatchdog: Sendable {
    /// What is stalled now, and for how long.
    public struct Report: Sendable, Equatable {
        public var executorStalledSeconds: Double?
        public var writerStalledSeconds: Double?
        public var isHealthy: Bool { executorStalledSeconds == nil && writerStalledSeconds == nil }
        /// The names of what is stalled: `executor`, `database_writer`.
        public var stalled: [String] {
            (executorStalledSeconds == nil ? [] : ["executor"]) + (writerStalledSeconds == nil ? [] : ["database_writer"])
        }
    }

    private let threshold: Duration
    private let beat: Duration
    private let writerStall: @Sendable () -> Duration
    private let logger: Logger
    private let origin = ContinuousClock.now
    /// Milliseconds since `origin` of the executor's last heartbeat.
    private let lastBeat = Atomic<Int64>(0)
    private let state = Mutex<(report: Report, running: Bool)>((Report(), false))

    /// - Parameters:
    ///   - threshold: no progress for this long is a stall.
    ///   - writerStall: how long writes have waited on the writer (`AppDatabase.writerStalledFor`).
    public init(threshold: Duration, beat: Duration = .milliseconds(100), logger: Logger, writerStall: @escaping @Sendable () -> Duration) {
        self.threshold = threshold
        self.beat = beat
        self.logger = logger
        self.writerStall = writerStall
    }

    /// Starts the heartbeat task and the checking thread; runs until `stop()`.
    public func start() {
        let first = state.withLock { state -> Bool in
            defer { state.running = true }
            return !state.running
        }
        guard first else { return }
        lastBeat.store(elapsedMilliseconds(), ordering: .relaxed)
        // At the priority request handlers run at: a higher one may be served by threads of
        // its own and keep beating while the handlers' threads are stuck.
        Task.detached(priority: .medium) { [self] in
            while isRunning {
                lastBeat.store(elapsedMilliseconds(), ordering: .relaxed)
                try? await Task.sleep(for: beat)
            }
        }
        let thread = Thread { [self] in
            while isRunning {
                check()
                Thread.sleep(forTimeInterval: beat.timeInterval)
            }
        }
        thread.name = "myba-watchdog"
        thread.start()
    }

    public func stop() {
        state.withLock { $0.running = false }
    }

    /// What is stalled now.
    public func report() -> Report {
        state.withLock { $0.report }
    }

    private var isRunning: Bool { state.withLock { $0.running } }

    private func elapsedMilliseconds() -> Int64 {
        let elapsed = ContinuousClock.now - origin
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    /// One look at both clocks; logs the transitions.
    func check() {
        let executorSilence = Double(elapsedMilliseconds() - lastBeat.load(ordering: .relaxed)) / 1000
        let writerSilence = writerStall()
        let limit = threshold.timeInterval
        let writerSeconds = writerSilence.timeInterval
        let now = Report(
            executorStalledSeconds: executorSilence >= limit ? executorSilence : nil,
            writerStalledSeconds: writerSeconds >= limit ? writerSeconds : nil
        )
        let before = state.withLock { state -> Report in
            defer { state.report = now }
            return state.report
        }
        if before.executorStalledSeconds == nil, let seconds = now.executorStalledSeconds {
            logger.error(
                "watchdog: the executor has made no progress",
                metadata: ["watchdog.stalled": "executor", "stall.seconds": .stringConvertible(seconds)]
            )
        } else if let seconds = before.executorStalledSeconds, now.executorStalledSeconds == nil {
            logger.notice(
                "watchdog: the executor is making progress again",
                metadata: ["watchdog.recovered": "executor", "stall.seconds": .stringConvertible(seconds)]
            )
        }
        if before.writerStalledSeconds == nil, let seconds = now.writerStalledSeconds {
            logger.error(
                "watchdog: the database writer has made no progress",
                metadata: ["watchdog.stalled": "database_writer", "stall.seconds": .stringConvertible(seconds)]
            )
        } else if let seconds = before.writerStalledSeconds, now.writerStalledSeconds == nil {
            logger.notice(
                "watchdog: the database writer is making progress again",
                metadata: ["watchdog.recovered": "database_writer", "stall.seconds": .stringConvertible(seconds)]
            )
        }
    }
}
