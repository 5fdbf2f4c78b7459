import Foundation
import MyBATestSupport
import Testing

/// The tests' own process runner: a hang here once stalled CI for 90 minutes.
@Suite("Child processes in tests")
struct ChildProcessTests {
    @Test("exit code, both outputs and a signal are reported as they happened")
    func endings() async throws {
        let exited = try await ChildProcess.start("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"]).wait(timeout: .seconds(30))
        #expect(exited.status == 3 && !exited.bySignal)
        #expect(exited.stdout == "out\n" && exited.stderr == "err\n")

        let sleeper = try ChildProcess.start("/bin/sleep", ["30"])
        sleeper.send(SIGKILL)
        let killed = try await sleeper.wait(timeout: .seconds(30))
        #expect(killed.bySignal && killed.status == SIGKILL)
    }

    @Test("a child that outlives its time limit is killed and the wait fails with what it printed")
    func timeLimit() async throws {
        let started = ContinuousClock.now
        let child = try ChildProcess.start("/bin/sh", ["-c", "echo before-the-hang; exec sleep 60"])
        await #expect(throws: TestSupportError.self) { try await child.wait(timeout: .milliseconds(500)) }
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(!child.isRunning)
        #expect(child.stdoutSoFar == "before-the-hang\n")
    }

    @Test("output is collected even when a grandchild keeps the pipe open after the child ended")
    func leakedPipe() async throws {
        // The background sleep inherits stdout and holds it open for 30 s after sh exits.
        let started = ContinuousClock.now
        let result = try await ChildProcess.start("/bin/sh", ["-c", "echo done; sleep 30 & exit 0"]).wait(timeout: .seconds(20))
        #expect(result.status == 0 && result.stdout == "done\n")
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
