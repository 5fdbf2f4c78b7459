import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A program the tests start, whose end and output are observed without trusting Foundation's
/// exit notification.
///
/// On Linux, `Process` learns that a child ended when a socket inherited by the child reaches
/// end-of-file. When tests spawn processes from several threads at once, that socket (or a pipe's
/// write end) can leak into a sibling that lives much longer, a tmux server for example, and
/// `waitUntilExit()` then never returns: a CI run hung that way. Here the end is read with
/// `waitid(WNOWAIT)`, which leaves the reaping to Foundation, output is drained without waiting
/// for an end-of-file that may never come, and every wait has a deadline after which the child
/// is killed and the test fails with what it printed.
public final class ChildProcess: @unchecked Sendable {
    /// How a child ended.
    public struct Termination: Sendable, Equatable {
        public var status: Int32
        public var bySignal: Bool
    }

    public let pid: Int32
    public let command: String
    // Process is not Sendable; it is only read for its status after it ended.
    private let process: Process
    private let output = Mutex<(stdout: Data, stderr: Data)>((Data(), Data()))
    private let ended = Mutex<Termination?>(nil)
    private let readerFinished = Mutex(false)

    private init(process: Process, command: String) {
        self.process = process
        self.pid = process.processIdentifier
        self.command = command
    }

    /// Starts `executable` with exactly `environment` (nil: this process's environment).
    public static func start(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil,
        currentDirectory: String? = nil
    ) throws -> ChildProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        let child = ChildProcess(process: process, command: ([executable] + arguments).joined(separator: " "))
        child.startReading(stdout: out.fileHandleForReading.fileDescriptor, stderr: err.fileHandleForReading.fileDescriptor, keepAlive: [out, err])
        if let stdin {
            let handle = input.fileHandleForWriting
            // A child that never reads its input must not block the test: write from a thread.
            Thread.detachNewThread {
                try? handle.write(contentsOf: Data(stdin.utf8))
                try? handle.close()
            }
        } else {
            try input.fileHandleForWriting.close()
        }
        return child
    }

    /// What the child printed on standard output so far.
    public var stdoutSoFar: String { output.withLock { String(decoding: $0.stdout, as: UTF8.self) } }
    /// What the child printed on standard error so far.
    public var stderrSoFar: String { output.withLock { String(decoding: $0.stderr, as: UTF8.self) } }

    /// The child's end, or nil while it runs. Never blocks.
    public var termination: Termination? {
        if let known = ended.withLock({ $0 }) { return known }
        var info = siginfo_t()
        let found: Termination?
        if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 {
            let childPid = info._sifields._sigchld.si_pid
            found = childPid == 0 ? nil : Termination(status: info._sifields._sigchld.si_status, bySignal: info.si_code != CLD_EXITED)
        } else if errno == ECHILD, !process.isRunning {
            // Foundation reaped it first; its status is then known to Process.
            found = Termination(status: process.terminationStatus, bySignal: process.terminationReason == .uncaughtSignal)
        } else {
            found = nil
        }
        if let found { ended.withLock { $0 = found } }
        return found
    }

    public var isRunning: Bool { termination == nil }

    /// Sends `signal` unless the child already ended.
    public func send(_ signal: Int32) {
        if termination == nil { kill(pid, signal) }
    }

    /// Waits for the end without holding a thread; after `timeout` the child is killed and the
    /// wait fails with its output.
    @discardableResult
    public func wait(timeout: Duration = .seconds(120)) async throws -> ProcessResult {
        var waiting = Waiting(deadline: .now + timeout)
        while keepWaiting(&waiting) { try await Task.sleep(for: .milliseconds(5)) }
        let drained = ContinuousClock.now + .seconds(3)
        while !readerFinished.withLock({ $0 }), ContinuousClock.now < drained { try await Task.sleep(for: .milliseconds(5)) }
        return try result(timedOut: waiting.timedOut, timeout: timeout)
    }

    /// `wait(timeout:)` for callers that are already on their own thread.
    @discardableResult
    public func waitBlocking(timeout: Duration = .seconds(120)) throws -> ProcessResult {
        var waiting = Waiting(deadline: .now + timeout)
        while keepWaiting(&waiting) { usleep(5_000) }
        let drained = ContinuousClock.now + .seconds(3)
        while !readerFinished.withLock({ $0 }), ContinuousClock.now < drained { usleep(5_000) }
        return try result(timedOut: waiting.timedOut, timeout: timeout)
    }

    private struct Waiting {
        var deadline: ContinuousClock.Instant
        var timedOut = false
    }

    /// One step of a wait: false once the child ended, or once it was killed at the deadline
    /// and still has not ended 10 s later.
    private func keepWaiting(_ waiting: inout Waiting) -> Bool {
        guard termination == nil else { return false }
        if ContinuousClock.now > waiting.deadline, !waiting.timedOut {
            waiting.timedOut = true
            kill(pid, SIGKILL)
        }
        return !(waiting.timedOut && ContinuousClock.now > waiting.deadline + .seconds(10))
    }

    /// Waits until standard output contains `text`; fails if the child ends first or time runs out.
    public func waitForOutput(_ text: String, timeout: Duration = .seconds(30)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let sofar = stdoutSoFar
            if sofar.contains(text) { return sofar }
            if termination != nil, readerFinished.withLock({ $0 }) { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let sofar = stdoutSoFar
        if sofar.contains(text) { return sofar }
        send(SIGKILL)
        throw TestSupportError("\(command) never printed \(text); stdout:\n\(sofar)\nstderr:\n\(stderrSoFar)")
    }

    private func result(timedOut: Bool, timeout: Duration) throws -> ProcessResult {
        let (out, err) = output.withLock { $0 }
        let stdout = String(decoding: out, as: UTF8.self), stderr = String(decoding: err, as: UTF8.self)
        guard !timedOut, let end = termination else {
            throw TestSupportError("\(command) did not end within \(timeout) and was killed; stdout:\n\(stdout)\nstderr:\n\(stderr)")
        }
        return ProcessResult(status: end.status, stdout: stdout, stderr: stderr, bySignal: end.bySignal)
    }

    /// Drains both pipes on a thread of its own. After the child ended, whatever is buffered is
    /// read and the reader stops, even if a leaked copy of a write end keeps end-of-file away.
    private func startReading(stdout: Int32, stderr: Int32, keepAlive: [Pipe]) {
        for fd in [stdout, stderr] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        Thread.detachNewThread { [self] in
            withExtendedLifetime(keepAlive) {
                var open = [stdout: true, stderr: true]
                var buffer = [UInt8](repeating: 0, count: 65536)
                func drain(_ fd: Int32) {
                    while true {
                        let count = read(fd, &buffer, buffer.count)
                        if count > 0 {
                            let chunk = Data(buffer[0..<count])
                            output.withLock { fd == stdout ? $0.stdout.append(chunk) : $0.stderr.append(chunk) }
                        } else if count == 0 {
                            open[fd] = false
                            return
                        } else if errno == EINTR {
                            continue
                        } else {
                            if errno != EAGAIN && errno != EWOULDBLOCK { open[fd] = false }
                            return
                        }
                    }
                }
                var endedAt: ContinuousClock.Instant?
                while open.values.contains(true) {
                    var fds = open.filter(\.value).map { pollfd(fd: $0.key, events: Int16(POLLIN), revents: 0) }
                    _ = poll(&fds, nfds_t(fds.count), 50)
                    for fd in open.filter(\.value).keys { drain(fd) }
                    if endedAt == nil, termination != nil { endedAt = .now }
                    // Output written before the end is in the pipe by now; a little grace covers
                    // the kernel handing over the last bytes.
                    if let endedAt, ContinuousClock.now - endedAt > .milliseconds(200) { break }
                }
                readerFinished.withLock { $0 = true }
            }
        }
    }
}
