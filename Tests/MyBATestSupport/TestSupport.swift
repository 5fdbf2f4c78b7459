import Foundation
import MyBAOps
import Synchronization

/// A fresh directory under the system temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(_ label: String = "myba-test") throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The result of running a program to its end.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// `status` is the signal that ended the program rather than its exit code.
    public var bySignal: Bool

    public init(status: Int32, stdout: String, stderr: String, bySignal: Bool = false) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.bySignal = bySignal
    }
}

/// The package's built executables (`swift test` builds them beside the test bundle).
public enum BuiltProduct {
    public static func path(_ name: String) -> String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // On Linux the bundle is a file in the products directory; on macOS a directory inside it.
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        let fallback = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug/\(name)").path
        return fallback
    }

    /// Runs `name` to its end without holding a thread of Swift's cooperative pool (2 threads on
    /// these machines): in-process servers of other tests need them to answer.
    public static func run(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        stdin: String? = nil,
        currentDirectory: String? = nil,
        timeout: Duration = .seconds(120)
    ) async throws -> ProcessResult {
        try await start(name, arguments, environment: environment, stdin: stdin, currentDirectory: currentDirectory).wait(timeout: timeout)
    }

    /// Starts `name` with `environment` added to a minimal environment (so the caller's MYBA_*
    /// variables never leak into a test).
    public static func start(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        stdin: String? = nil,
        currentDirectory: String? = nil
    ) throws -> ChildProcess {
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        if let home = ProcessInfo.processInfo.environment["HOME"] { env["HOME"] = home }
        env.merge(environment) { _, new in new }
        return try ChildProcess.start(path(name), arguments, environment: env, stdin: stdin, currentDirectory: currentDirectory)
    }

    /// `run` for callers already on a thread of their own. Blocks the thread.
    public static func runBlocking(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        stdin: String? = nil,
        currentDirectory: String? = nil,
        timeout: Duration = .seconds(120)
    ) throws -> ProcessResult {
        try start(name, arguments, environment: environment, stdin: stdin, currentDirectory: currentDirectory).waitBlocking(timeout: timeout)
    }
}

/// Parses one JSON document into a dictionary, or fails with the text.
public func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw TestSupportError("not a JSON object: \(text)")
    }
    return object
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Collects rendered log lines in memory.
public final class CapturedLines: Sendable {
    private let lines = Mutex<[String]>([])
    public init() {}
    public var all: [String] { lines.withLock { $0 } }
    public var destination: LogDestination {
        LogDestination { line in self.lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) } }
    }
}

/// Runs blocking work (sockets, `poll`, waits) on a thread of its own: on the cooperative pool,
/// which has a thread per core, it would stall every other test's tasks meanwhile.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}
