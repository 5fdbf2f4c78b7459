import Foundation
import Logging
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("JSON logs")
struct LoggingTests {
    @Test("a log line is one JSON object with ts, level, msg, label and dotted metadata")
    func lineShape() throws {
        let captured = CapturedLines()
        var logger = Logger(label: "myba.test") { label in JSONLogHandler(label: label, level: .debug, destination: captured.destination) }
        logger[metadataKey: "request.id"] = "req_1"
        logger.info(
            "charged \"quoted\"\nnext line",
            metadata: [
                "user.id": "user_1",
                "duration.ms": .stringConvertible(12.5),
                "http": .dictionary(["status": .stringConvertible(402), "path": "/api/generate"]),
                "tags": .array(["a", "b"]),
            ]
        )
        logger.debug("control \u{01} char")
        logger.trace("below the level")
        let lines = captured.all
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.hasSuffix("\n") && $0.dropLast().contains("\n") == false })
        let object = try jsonObject(lines[0])
        #expect(object["msg"] as? String == "charged \"quoted\"\nnext line")
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "myba.test")
        #expect(object["request.id"] as? String == "req_1")
        #expect(object["user.id"] as? String == "user_1")
        #expect(object["duration.ms"] as? Double == 12.5)
        #expect(object["http.status"] as? Int == 402)
        #expect(object["http.path"] as? String == "/api/generate")
        #expect(object["tags"] as? [String] == ["a", "b"])
        let timestamp = try #require(object["ts"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/) != nil)
        #expect(lines[0].hasPrefix("{\"ts\":"))
        #expect(try jsonObject(lines[1])["msg"] as? String == "control \u{01} char")
    }

    @Test("timestamps are UTC with milliseconds")
    func timestampFormat() {
        #expect(Timestamps.timestamp(Date(timeIntervalSince1970: 1_700_000_000.1234)) == "2023-11-14T22:13:20.123Z")
        #expect(Timestamps.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamps.day(Date(timeIntervalSince1970: 1_700_000_000)) == "2023-11-14")
    }

    @Test("the log file rotates by size into .1, .2 … keeping whole lines and the newest ones")
    func rotation() throws {
        let directory = try TemporaryDirectory("myba-logs")
        defer { directory.remove() }
        let path = directory.file("logs/myba.jsonl")
        let writer = try RotatingFileWriter(path: path, maxBytes: 4096, maxFiles: 3)
        let logger = Logger(label: "myba.test") { label in JSONLogHandler(label: label, destination: .file(writer)) }
        // Several threads at once: rotation must never split or lose a line in a kept file.
        DispatchQueue.concurrentPerform(iterations: 4) { lane in
            for index in 0..<250 { logger.info("line", metadata: ["lane": "\(lane)", "n": .stringConvertible(index)]) }
        }
        let files = RotatingFileWriter.existingFiles(forLog: path)
        #expect(files == [path, path + ".1", path + ".2", path + ".3"])
        var total = 0
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            #expect(text.utf8.count <= 4096)
            for line in text.split(separator: "\n") {
                let object = try jsonObject(String(line))
                #expect(object["msg"] as? String == "line")
                total += 1
            }
        }
        #expect(total > 100 && total < 1000)
        // Rotation drops the oldest lines and keeps the newest in the current file.
        logger.info("newest")
        let kept = try files.map { try String(contentsOfFile: $0, encoding: .utf8) }.joined()
        for lane in 0..<4 { #expect(!kept.contains("\"lane\":\"\(lane)\",\"n\":0}")) }
        let current = try String(contentsOfFile: path, encoding: .utf8)
        #expect(current.split(separator: "\n").last.map { try? jsonObject(String($0))["msg"] as? String } == "newest")
    }
}
