import CTestSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A program the tests start, whose end and output are observed without Foundation's `Process`.
///
/// Two defects of `Process` on Linux made tests hang or crash: it learns that a child ended when a
/// socket inherited by the child reaches end-of-file, and when tests spawn processes from several
/// threads at once that socket (or a pipe's write end) can leak into a sibling that lives much
/// longer, a tmux server for example, so `waitUntilExit()` never returns; and `run()` itself
/// crashes now and then (a 256-byte over-read of `/proc/self/fd` entries,
/// swift-corelibs-foundation #5472, in Swift 6.3.1). Here the child is started with
/// `posix_spawn` (every descriptor but its three pipes closed, signal mask and handlers reset),
/// its end is read with `waitid`, output is drained without waiting for an end-of-file that may
/// never come, and every wait has a deadline after which the child is killed and the test fails
/// with what it printed.
public final class ChildProcess: @unchecked Sendable {
    /// How a child ended.
    public struct Termination: Sendable, Equatable {
        public var status: Int32
        public var bySignal: Bool
    }

    public let pid: Int32
    public let command: String
    private let output = Mutex<(stdout: Data, stderr: Data)>((Data(), Data()))
    private let ended = Mutex<Termination?>(nil)
    private let readerFinished = Mutex(false)

    private init(pid: Int32, command: String) {
        self.pid = pid
        self.command = command
    }

    /// Starts `executable` with exactly `environment` (nil: this process's environment).
    public static func start(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        stdin: String? = nil,
        currentDirectory: String? = nil
    ) throws -> ChildProcess {
        // [read, write] of each pipe, close-on-exec: the child gets only the dup2'd copies.
        var input: [Int32] = [0, 0]
        var out: [Int32] = [0, 0]
        var err: [Int32] = [0, 0]
        guard pipe2(&input, O_CLOEXEC) == 0, pipe2(&out, O_CLOEXEC) == 0, pipe2(&err, O_CLOEXEC) == 0 else {
            throw TestSupportError("pipe2 failed: errno \(errno)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        if let currentDirectory { posix_spawn_file_actions_addchdir_np(&actions, currentDirectory) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The spawning thread may block signals (dispatch's threads do) and the test process may
        // ignore some: the child starts with none blocked and every handler at its default, or a
        // server would never see SIGTERM.
        var empty = sigset_t()
        var defaults = sigset_t()
        sigemptyset(&empty)
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let variables = environment ?? ProcessInfo.processInfo.environment
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        for fd in [input[0], out[1], err[1]] { close(fd) }
        guard spawned == 0 else {
            for fd in [input[1], out[0], err[0]] { close(fd) }
            throw TestSupportError("cannot start \(executable): \(String(cString: strerror(spawned)))")
        }
        let child = ChildProcess(pid: pid, command: ([executable] + arguments).joined(separator: " "))
        child.startReading(stdout: out[0], stderr: err[0])
        let writeEnd = input[1]
        if let stdin {
            // A child that never reads its input must not block the test: write from a thread.
            Thread.detachNewThread {
                var bytes = Array(stdin.utf8)[...]
                while !bytes.isEmpty {
                    let written = bytes.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
                    if written > 0 { bytes = bytes.dropFirst(written) } else if written < 0, errno == EINTR { continue } else { break }
                }
                close(writeEnd)
            }
        } else {
            close(writeEnd)
        }
        return child
    }

    /// What the child printed on standard output so far.
    public var stdoutSoFar: String { output.withLock { String(decoding: $0.stdout, as: UTF8.self) } }
    /// What the child printed on standard error so far.
    public var stderrSoFar: String { output.withLock { String(decoding: $0.stderr, as: UTF8.self) } }

    /// The child's end, or nil while it runs. Never blocks; reaps the child once it ended.
    public var termination: Termination? {
        ended.withLock { known in
            if let known { return known }
            var info = siginfo_t()
            guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG) == 0, info._sifields._sigchld.si_pid != 0 else { return nil }
            known = Termination(status: info._sifields._sigchld.si_status, bySignal: info.si_code != CLD_EXITED)
            return known
        }
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
        let stdout = String(decoding: out, as: UTF8.self)
        let stderr = String(decoding: err, as: UTF8.self)
        guard !timedOut, let end = termination else {
            throw TestSupportError("\(command) did not end within \(timeout) and was killed; stdout:\n\(stdout)\nstderr:\n\(stderr)")
        }
        return ProcessResult(status: end.status, stdout: stdout, stderr: stderr, bySignal: end.bySignal)
    }

    /// Drains both pipes on a thread of its own. After the child ended, whatever is buffered is
    /// read and the reader stops, even if a leaked copy of a write end keeps end-of-file away.
    private func startReading(stdout: Int32, stderr: Int32) {
        for fd in [stdout, stderr] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        Thread.detachNewThread { [self] in
            defer {
                close(stdout)
                close(stderr)
            }
            do {
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
