import ArgumentParser
import Foundation
import Logging
import MyBAOps

/// Writes a large JSON log in the server's exact format, for the `logs trace` benchmark: one
/// request id (`req_needle`) appears every `every` lines, the rest are distinct.
struct GenerateLog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate-log", abstract: "Write a JSON log of about --megabytes MB.")

    @Option(help: "Output file.")
    var out: String

    @Option(help: "Approximate size in megabytes.")
    var megabytes = 1024

    @Option(help: "The needle request id appears once every this many lines.")
    var every = 50_000

    func run() async throws {
        FileManager.default.createFile(atPath: out, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        defer { try? handle.close() }
        let target = megabytes * 1024 * 1024
        var written = 0
        var index = 0
        var chunk: [UInt8] = []
        chunk.reserveCapacity(1 << 22)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        while written < target {
            let requestId = index % every == 0 ? "req_needle" : "req_\(String(index, radix: 16))"
            let line = JSONLogHandler.render(
                date: start.addingTimeInterval(Double(index) / 1000),
                level: .info,
                message: "request",
                label: "myba.server",
                metadata: [
                    "request.id": .string(requestId), "user.id": .string("user_\(index % 997)"), "http.method": "POST",
                    "http.path": "/api/generate", "http.status": .stringConvertible(200), "duration.ms": .stringConvertible(1.234),
                ]
            )
            chunk += line
            written += line.count
            index += 1
            if chunk.count >= 1 << 22 {
                handle.write(Data(chunk))
                chunk.removeAll(keepingCapacity: true)
            }
        }
        handle.write(Data(chunk))
        print("\(index) lines, \(written / 1_048_576) MB, needle every \(every) lines")
    }
}
