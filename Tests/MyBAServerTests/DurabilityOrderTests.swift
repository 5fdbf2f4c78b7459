import Foundation
import HTTPTypes
import MyBATestSupport
import Testing

@testable import MyBAOps

/// Issue 23: "nothing is answered before its commit is durable", shown on the real binary rather
/// than inferred from `PRAGMA synchronous`. The server runs under `strace`; for every generation
/// answered 200, the WAL's `fdatasync` must have started after the request was read and returned
/// before the first byte of the answer was written, with many requests sharing group commits.
@Suite("Durability order", .serialized)
struct DurabilityOrderTests {
    /// One system call from `strace -f -tt -T -yy`.
    struct Call {
        var start: Double
        var end: Double
        var name: String
        var descriptor: String
        var text: Substring
    }

    @Test("under concurrent generations, every answered write's WAL fdatasync returns before its response is written, and batches share syncs")
    func syncBeforeAnswer() async throws {
        let directory = try TemporaryDirectory("myba-durability")
        defer { directory.remove() }
        let trace = directory.file("trace.txt")
        let database = directory.file("myba.sqlite")
        let process = try ChildProcess.start(
            "/usr/bin/env",
            [
                "strace", "-f", "-tt", "-T", "-yy", "-s", "48", "-o", trace,
                "-e", "trace=fdatasync,fsync,read,recvfrom,write,writev,sendmsg,sendto",
                BuiltProduct.path("myba-server"),
            ],
            environment: [
                "PATH": "/usr/bin:/bin", "PORT": "0", "MYBA_DATABASE": database, "MYBA_LOG_FILE": directory.file("myba.jsonl"),
            ]
        )
        defer { process.send(SIGKILL) }
        let output = try await process.waitForOutput("\"server listening\"", timeout: .seconds(60))
        let port = try #require(
            output.split(separator: "\n").compactMap { try? jsonObject(String($0)) }.first { $0["msg"] as? String == "server listening" }?[
                "http.port"
            ]
                as? Int
        )

        let client = DrillClient(port: port, connections: 40)
        let statuses = await withTaskGroup(of: Int.self) { group in
            for index in 0..<120 {
                group.addTask {
                    await client.send(
                        "POST",
                        "/api/generate",
                        body: #"{"input":"Durable task \#(index)"}"#,
                        headers: [.authorization: "Bearer dev:user_durable_\(index)", .contentType: "application/json"]
                    )?.status ?? -1
                }
            }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        client.close()
        #expect(statuses.filter { $0 == 200 }.count == 120, "\(statuses)")
        // The server (the traced process, whose pid opens the trace) stops; strace ends with it
        // and has written every call.
        let serverPid = try #require(
            try String(contentsOfFile: trace, encoding: .utf8).split(separator: " ", maxSplits: 1).first.flatMap { pid_t(String($0)) }
        )
        kill(serverPid, SIGTERM)
        _ = try await process.wait(timeout: .seconds(30))

        let calls = try Self.parse(String(contentsOfFile: trace, encoding: .utf8))
        let syncs = calls.filter { ($0.name == "fdatasync" || $0.name == "fsync") && $0.descriptor.hasSuffix("-wal") }
        // Requests and answers by connection, in order.
        var requests: [String: [Double]] = [:]
        var answers: [String: [Double]] = [:]
        for call in calls where call.descriptor.hasPrefix("TCP:") {
            if ["read", "recvfrom"].contains(call.name), call.text.contains("\"POST /api/generate") {
                requests[call.descriptor, default: []].append(call.start)
            } else if ["write", "writev", "sendmsg", "sendto"].contains(call.name), call.text.contains("HTTP/1.1 200") {
                answers[call.descriptor, default: []].append(call.start)
            }
        }
        var checked = 0
        var early: [String] = []
        var usedSyncs = Set<Double>()
        for (connection, times) in answers {
            let received = requests[connection] ?? []
            for (index, answeredAt) in times.enumerated() where index < received.count {
                checked += 1
                let durable = syncs.first { $0.start > received[index] && $0.end <= answeredAt }
                if let durable { usedSyncs.insert(durable.start) } else { early.append("\(connection) #\(index)") }
            }
        }
        #expect(checked == 120, "matched \(checked) answers to their requests in the trace")
        #expect(early.isEmpty, "answered with no WAL sync between the request and the answer: \(early.prefix(5))")
        // Group commit: the 120 answers did not need 120 syncs of their own.
        #expect(!syncs.isEmpty && syncs.count < 120 * 2, "\(syncs.count) WAL syncs for 120 generations")
    }

    /// `PID HH:MM:SS.ffffff name(fd<desc>, …) = ret <dur>`, with `<unfinished …>` / `<… resumed>`
    /// pairs joined (the start from the first, the end from the second).
    static func parse(_ text: String) throws -> [Call] {
        var calls: [Call] = []
        var pending: [String: (start: Double, name: String, descriptor: String, text: Substring)] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count == 3, let time = seconds(parts[1]) else { continue }
            let pid = String(parts[0])
            let rest = parts[2]
            if rest.hasPrefix("<... ") {
                // `<... fdatasync resumed>) = 0 <0.001>`
                guard let opened = pending.removeValue(forKey: pid) else { continue }
                // A read's data shows in the resumed half, a write's in the first: keep both.
                calls.append(
                    Call(start: opened.start, end: time + duration(rest), name: opened.name, descriptor: opened.descriptor, text: opened.text + rest)
                )
                continue
            }
            guard let paren = rest.firstIndex(of: "(") else { continue }
            let name = String(rest[..<paren])
            var descriptor = ""
            // `26<TCP:[127.0.0.1:3001->127.0.0.1:40000]>` (a socket's "->" is inside its brackets)
            // or `9</path/myba.sqlite-wal>`.
            if let open = rest[paren...].firstIndex(of: "<") {
                let inside = rest[rest.index(after: open)...]
                let end = inside.hasPrefix("TCP:[") ? inside.firstIndex(of: "]").map { inside.index(after: $0) } : inside.firstIndex(of: ">")
                descriptor = String(inside[..<(end ?? inside.endIndex)])
            }
            if rest.hasSuffix("<unfinished ...>") {
                pending[pid] = (time, name, descriptor, rest)
            } else {
                calls.append(Call(start: time, end: time + duration(rest), name: name, descriptor: descriptor, text: rest))
            }
        }
        return calls
    }

    /// `05:11:17.487794` as seconds since midnight.
    static func seconds(_ text: Substring) -> Double? {
        let fields = text.split(separator: ":")
        guard fields.count == 3, let h = Double(fields[0]), let m = Double(fields[1]), let s = Double(fields[2]) else { return nil }
        return h * 3600 + m * 60 + s
    }

    /// The `<0.000123>` at the end of a finished call; 0 when absent.
    static func duration(_ text: Substring) -> Double {
        guard text.hasSuffix(">"), let open = text.lastIndex(of: "<") else { return 0 }
        return Double(text[text.index(after: open)..<text.index(before: text.endIndex)]) ?? 0
    }
}
