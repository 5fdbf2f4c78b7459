import Foundation
import GRDB
import Synchronization

/// Group commit: the writes of this process share durable commits.
///
/// Every MyBA write is a short IMMEDIATE transaction, and with `synchronous = FULL` each commit
/// waits for an `fdatasync` of the WAL. One at a time, the disk's sync rate caps every write path
/// (about 4000 commits/s here, see BENCHMARKS.md). Here the writes that arrive while a commit is
/// being made durable wait together, and the next transaction carries them all, each inside a
/// savepoint of its own, with one `fdatasync` for the lot. Nothing is answered before its commit
/// is durable, so a crash at any moment loses only writes that nobody was told about.
///
/// Each write keeps the meaning it had alone:
/// - it sees the writes before it in the batch, exactly as it would after their commits;
/// - when it throws, only its own savepoint is rolled back and only it gets the error;
/// - what it asked to run after commit (``Database/afterCommit(_:)``) runs only when its own
///   changes commit;
/// - when SQLite abandons the whole transaction (a full disk, an I/O error), the failing write
///   gets the error and the writes before it run again in a fresh transaction, since none of
///   their work was kept and nobody has been answered.
///
/// An idle database commits a lone write at once: batching never waits on purpose, it only
/// collects what arrived during the previous commit.
final class GroupCommitQueue: Sendable {
    /// Writes per transaction at most, so that one transaction keeps the write lock (which other
    /// processes on the file, such as the console, wait for) only briefly.
    static let maxBatch = 64

    private let writer: any DatabaseWriter
    private let state = Mutex(State())

    private struct State {
        var pending: [any GroupedWrite] = []
        /// Whether a batch is queued on or running in the writer's queue.
        var draining = false
        /// When the writer last showed progress: draining started or a batch finished.
        var lastProgress = ContinuousClock.now
    }

    init(writer: any DatabaseWriter) {
        self.writer = writer
    }

    /// Runs `body` inside an IMMEDIATE transaction shared with the writes queued beside it, and
    /// returns once that transaction has committed.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(PendingWrite(body: body, continuation: continuation))
        }
    }

    /// Writes waiting for their batch to start (tests use it to know a batch is complete).
    var waitingCount: Int { state.withLock { $0.pending.count } }

    /// How long writes have been waiting on a writer that finished no batch meanwhile; zero
    /// when nothing waits. What the server's watchdog reads.
    func stalledFor(now: ContinuousClock.Instant = .now) -> Duration {
        state.withLock { $0.draining ? now - $0.lastProgress : .zero }
    }

    private func enqueue(_ write: any GroupedWrite) {
        let startDrain = state.withLock { state -> Bool in
            state.pending.append(write)
            if state.draining { return false }
            state.draining = true
            state.lastProgress = .now
            return true
        }
        if startDrain { scheduleBatch() }
    }

    /// Queues one batch on the writer; the batch schedules the next while writes are waiting, so
    /// other users of the same writer get their turn between batches.
    private func scheduleBatch() {
        writer.asyncWriteWithoutTransaction { [self] db in
            let batch = state.withLock { state -> [any GroupedWrite] in
                let taken = Array(state.pending.prefix(Self.maxBatch))
                state.pending.removeFirst(taken.count)
                return taken
            }
            Self.commit(batch, in: db)
            let more = state.withLock { state -> Bool in
                state.lastProgress = .now
                if state.pending.isEmpty { state.draining = false }
                return state.draining
            }
            if more { scheduleBatch() }
        }
    }

    /// Commits `batch` and answers each write: with its value once the transaction is durable, or
    /// with its own error.
    static func commit(_ batch: [any GroupedWrite], in db: Database) {
        var remaining = batch[...]
        while !remaining.isEmpty {
            do {
                try db.execute(sql: "BEGIN IMMEDIATE TRANSACTION")
            } catch {
                // The write lock stayed with another process past the busy timeout: every write
                // of the batch would have met the same refusal alone.
                for write in remaining { write.fail(error) }
                return
            }
            var done: [any GroupedWrite] = []
            var transactionLost = false
            while let write = remaining.popFirst() {
                if perform(write, in: db) {
                    done.append(write)
                } else if !db.isInsideTransaction {
                    transactionLost = true
                    break
                }
            }
            if transactionLost {
                // SQLite rolled the whole transaction back: the writes done so far lost their
                // changes; they run again, with the ones not yet started, in a new transaction.
                remaining = (done + remaining)[...]
                continue
            }
            do {
                try db.execute(sql: "COMMIT TRANSACTION")
            } catch {
                if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK TRANSACTION") }
                for write in done { write.fail(error) }
                return
            }
            for write in done { write.succeed() }
        }
    }

    /// Runs one write in a savepoint; returns whether it succeeded. A write that threw has been
    /// answered with its error, and its changes are gone.
    private static func perform(_ write: any GroupedWrite, in db: Database) -> Bool {
        do {
            try db.execute(sql: "SAVEPOINT myba_write")
        } catch {
            write.fail(error)
            return false
        }
        if let error = write.perform(db) {
            if db.isInsideTransaction {
                do {
                    try db.execute(sql: "ROLLBACK TRANSACTION TO SAVEPOINT myba_write")
                    try db.execute(sql: "RELEASE SAVEPOINT myba_write")
                } catch {
                    // A savepoint that cannot be rolled back leaves the transaction in doubt:
                    // abandon it all, and the others run again.
                    try? db.execute(sql: "ROLLBACK TRANSACTION")
                }
            }
            write.fail(error)
            return false
        }
        do {
            try db.execute(sql: "RELEASE SAVEPOINT myba_write")
            return true
        } catch {
            write.fail(error)
            if db.isInsideTransaction { try? db.execute(sql: "ROLLBACK TRANSACTION") }
            return false
        }
    }
}

/// One queued write, its result kept until its transaction's fate is known.
protocol GroupedWrite: AnyObject, Sendable {
    /// Runs the write's body; returns its error, or nil when it succeeded (its value is kept).
    func perform(_ db: Database) -> (any Error)?
    /// Its transaction committed: runs its after-commit actions and answers with its value.
    func succeed()
    /// Answers with `error`; the write's changes were not committed.
    func fail(_ error: any Error)
}

/// A write and its caller's continuation. Its mutable state is touched only on the writer's
/// queue, one batch at a time, and read once when the caller is answered.
private final class PendingWrite<T: Sendable>: GroupedWrite, @unchecked Sendable {
    let body: @Sendable (Database) throws -> T
    let continuation: CheckedContinuation<T, any Error>
    private var value: T?
    private var afterCommit = AfterCommitActions()

    init(body: @escaping @Sendable (Database) throws -> T, continuation: CheckedContinuation<T, any Error>) {
        self.body = body
        self.continuation = continuation
    }

    func perform(_ db: Database) -> (any Error)? {
        let actions = AfterCommitActions()
        afterCommit = actions
        do {
            value = try AfterCommitActions.$current.withValue(actions) { try body(db) }
            return nil
        } catch {
            value = nil
            return error
        }
    }

    func succeed() {
        afterCommit.run()
        continuation.resume(returning: value!)
    }

    func fail(_ error: any Error) {
        continuation.resume(throwing: error)
    }
}

/// What one write asked to run once its changes commit.
final class AfterCommitActions: @unchecked Sendable {
    /// The actions of the write running now in a group commit, on the writer's queue.
    @TaskLocal static var current: AfterCommitActions?

    private var actions: [@Sendable () -> Void] = []

    func append(_ action: @escaping @Sendable () -> Void) { actions.append(action) }

    func run() {
        for action in actions { action() }
    }
}

extension Database {
    /// Runs `action` once the current write's changes commit, never when they are rolled back:
    /// in a group commit that is the write's own savepoint, which GRDB's `afterNextTransaction`
    /// cannot see (it would run the action for a write whose savepoint was rolled back).
    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        if let actions = AfterCommitActions.current {
            actions.append(action)
        } else {
            afterNextTransaction { _ in action() }
        }
    }
}
