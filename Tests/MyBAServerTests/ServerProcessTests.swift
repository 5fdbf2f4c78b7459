import Foundation
import MyBATestSupport
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The real `myba-server` binary: environment configuration, JSON logs to stdout and the log
/// file, and a clean stop on SIGTERM.
@Suite("myba-server process", .serialized)
struct ServerProcessTests {
    @Test("starts on PORT=0 with a fresh directory, serves, logs JSON lines and stops cleanly on SIGTERM")
    func lifecycle() async throws {
        let directory = try TemporaryDirectory("myba-process")
        defer { directory.remove() }
        let server = try await RunningServer.start(environment: ["PORT": "0"], currentDirectory: directory.path)
        let process = server.process
        defer { process.send(SIGKILL) }
        let boundPort = server.port

        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(boundPort)/api/health")!)
        request.setValue("proc-test-1", forHTTPHeaderField: "X-Request-ID")
        let (data, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        #expect(try jsonObject(String(decoding: data, as: UTF8.self))["status"] as? String == "ok")

        process.send(SIGTERM)
        let ending = try await process.wait(timeout: .seconds(30))
        #expect(!ending.bySignal && ending.status == 0, "\(ending.stderr)")

        // Defaults: data/myba.sqlite and data/logs/myba.jsonl under the working directory.
        #expect(FileManager.default.fileExists(atPath: directory.file("data/myba.sqlite")))
        let logText = try String(contentsOfFile: directory.file("data/logs/myba.jsonl"), encoding: .utf8)
        let lines = try logText.split(separator: "\n").map { try jsonObject(String($0)) }
        let access = try #require(lines.first { $0["request.id"] as? String == "proc-test-1" })
        #expect(access["http.status"] as? Int == 200)
        #expect(lines.contains { $0["msg"] as? String == "server stopped" })
    }

    @Test("a bad setting or plans file stops start-up with a message and exit code 1")
    func badConfiguration() async throws {
        let directory = try TemporaryDirectory("myba-badconf")
        defer { directory.remove() }
        let badPort = try await BuiltProduct.run("myba-server", [], environment: ["PORT": "http"], currentDirectory: directory.path)
        #expect(badPort.status == 1)
        #expect(badPort.stderr.contains("PORT"))
        let badPlans = try await BuiltProduct.run("myba-server", [], environment: ["PORT": "0", "MYBA_PLANS_FILE": directory.file("none.json")], currentDirectory: directory.path)
        #expect(badPlans.status == 1)
        #expect(badPlans.stderr.contains("none.json"))
    }
}
