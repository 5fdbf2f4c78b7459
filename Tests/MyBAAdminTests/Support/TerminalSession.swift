import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps

/// The REPL in a real terminal: tmux runs it, `send-keys` types, `capture-pane` reads the screen.
struct TerminalSession {
    let name = "myba-test-\(UUID().uuidString.prefix(8))"

    static func tmux(_ arguments: [String]) async throws -> ProcessResult {
        try await ChildProcess.start("/usr/bin/env", ["tmux"] + arguments).wait(timeout: .seconds(30))
    }

    func start(_ command: String) async throws {
        let name = self.name
        let result = try await Self.tmux(["new-session", "-d", "-s", name, "-x", "200", "-y", "50", command])
        guard result.status == 0 else { throw TestSupportError("tmux could not start (is tmux installed?)") }
    }

    func type(_ keys: String...) async throws {
        let arguments = ["send-keys", "-t", name] + keys
        _ = try await Self.tmux(arguments)
    }

    /// The visible text; with `escapes`, the colours and attributes too (as SGR sequences).
    func screen(escapes: Bool = false) async throws -> String {
        let name = self.name
        return try await Self.tmux(["capture-pane", "-t", name, "-p"] + (escapes ? ["-e"] : [])).stdout
    }

    /// Waits until the screen contains `text`.
    func waitFor(_ text: String, timeout: TimeInterval = 10) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = try await screen()
            if last.contains(text) { return last }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("timed out waiting for \(text); screen:\n\(last)")
    }

    /// Called from `defer`, so it blocks briefly; tmux answers at once.
    func stop() { _ = try? ChildProcess.start("/usr/bin/env", ["tmux", "kill-session", "-t", name]).waitBlocking(timeout: .seconds(10)) }
}
