import Foundation
import Logging
import MyBATestSupport
import Testing
@testable import MyBAOps

@Suite("myba-admin logs")
struct LogsCommandTests {
    @Test("trace finds every line of a request across rotated files, in order; tail filters by user, level and text")
    func traceAndTail() async throws {
        let directory = try TemporaryDirectory("myba-logs-cmd")
        defer { directory.remove() }
        let path = directory.file("myba.jsonl")
        let writer = try RotatingFileWriter(path: path, maxBytes: 4096, maxFiles: 10)
        let logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, level: .debug, destination: .file(writer)) }
        for index in 0..<200 {
            var requestLogger = logger
            requestLogger[metadataKey: "request.id"] = .string(index % 50 == 7 ? "req_traced" : "req_\(index)")
            requestLogger[metadataKey: "user.id"] = .string(index % 2 == 0 ? "user_even" : "user_odd")
            requestLogger.info("step", metadata: ["n": .stringConvertible(index)])
            if index % 40 == 0 { requestLogger.error("boom", metadata: ["n": .stringConvertible(index)]) }
        }
        #expect(RotatingFileWriter.existingFiles(forLog: path).count > 3)
        let trace = try await BuiltProduct.run("myba-admin", ["logs", "trace", "req_traced", "--file", path, "--json"])
        #expect(trace.status == 0, "\(trace.stderr)")
        let numbers = try trace.stdout.split(separator: "\n").map { try jsonObject(String($0))["n"] as? Int }
        #expect(numbers == [7, 57, 107, 157])

        let errors = try await BuiltProduct.run("myba-admin", ["logs", "tail", "--level", "error", "--lines", "100", "--file", path, "--json"])
        #expect(try errors.stdout.split(separator: "\n").map { try jsonObject(String($0))["msg"] as? String }.allSatisfy { $0 == "boom" })
        #expect(errors.stdout.split(separator: "\n").count == 5)
        let user = try await BuiltProduct.run("myba-admin", ["logs", "tail", "--user", "user_odd", "--lines", "3", "--file", path, "--json"])
        #expect(try user.stdout.split(separator: "\n").map { try jsonObject(String($0))["n"] as? Int } == [195, 197, 199])
        let missing = try await BuiltProduct.run("myba-admin", ["logs", "trace", "req_never", "--file", path])
        #expect(missing.status == 1)
        let human = try await BuiltProduct.run("myba-admin", ["logs", "trace", "req_traced", "--file", path])
        #expect(human.stdout.contains(" info step ") && human.stdout.contains("request.id=req_traced"))
    }

    @Test("tail --follow keeps printing through a rotation")
    func follow() async throws {
        let directory = try TemporaryDirectory("myba-logs-follow")
        defer { directory.remove() }
        let path = directory.file("myba.jsonl")
        let writer = try RotatingFileWriter(path: path, maxBytes: 4096, maxFiles: 3)
        let logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, destination: .file(writer)) }
        logger.info("before")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProduct.path("myba-admin"))
        process.arguments = ["logs", "tail", "--follow", "--lines", "0", "--grep", "marker", "--file", path, "--json"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        try await Task.sleep(for: .milliseconds(500))
        // Enough lines to rotate the file more than once while it is followed.
        for index in 0..<120 {
            logger.info(index % 20 == 0 ? "marker" : "filler", metadata: ["n": .stringConvertible(index)])
            if index % 10 == 0 { try await Task.sleep(for: .milliseconds(60)) }
        }
        try await Task.sleep(for: .milliseconds(800))
        process.terminate()
        let handle = output.fileHandleForReading
        let seen = try await offloaded { () -> [Int] in
            let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
            return text.split(separator: "\n").compactMap { (try? jsonObject(String($0)))?["n"] as? Int }
        }
        #expect(seen == [0, 20, 40, 60, 80, 100])
    }
}
