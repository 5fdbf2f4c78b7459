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

    @Test(
        "trace finds a line by its request.id however the line's JSON is spaced (re-encoded by a shipper), and not a line that only mentions the id elsewhere"
    )
    func traceReencodedLines() async throws {
        let directory = try TemporaryDirectory("myba-logs-spaced")
        defer { directory.remove() }
        let path = directory.file("myba.jsonl")
        let lines = [
            #"{"ts":"2026-12-05T01:00:00.000Z","level":"info","msg":"ours","request.id":"req_spaced"}"#,
            #"{"ts": "2026-12-05T01:00:01.000Z", "level": "info", "msg": "shipped", "request.id": "req_spaced"}"#,
            #"{ "request.id" : "req_spaced" , "msg" : "pretty" , "level" : "warning" , "ts" : "2026-12-05T01:00:02.000Z" }"#,
            #"{"ts":"2026-12-05T01:00:03.000Z","level":"info","msg":"mentions","note":"req_spaced","request.id":"req_other"}"#,
        ]
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let trace = try await BuiltProduct.run("myba-admin", ["logs", "trace", "req_spaced", "--file", path, "--json"])
        #expect(trace.status == 0, "\(trace.stderr)")
        let messages = try trace.stdout.split(separator: "\n").map { try jsonObject(String($0))["msg"] as? String }
        #expect(messages == ["ours", "shipped", "pretty"])
    }

    @Test("tail --follow keeps printing through a rotation")
    func follow() async throws {
        let directory = try TemporaryDirectory("myba-logs-follow")
        defer { directory.remove() }
        let path = directory.file("myba.jsonl")
        let writer = try RotatingFileWriter(path: path, maxBytes: 4096, maxFiles: 3)
        let logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, destination: .file(writer)) }
        logger.info("before")
        let process = try BuiltProduct.start(
            "myba-admin",
            ["logs", "tail", "--follow", "--lines", "0", "--grep", "marker", "--file", path, "--json"]
        )
        defer { process.send(SIGKILL) }
        try await Task.sleep(for: .milliseconds(500))
        // Enough lines to rotate the file more than once while it is followed.
        for index in 0..<120 {
            logger.info(index % 20 == 0 ? "marker" : "filler", metadata: ["n": .stringConvertible(index)])
            if index % 10 == 0 { try await Task.sleep(for: .milliseconds(60)) }
        }
        try await Task.sleep(for: .milliseconds(800))
        process.send(SIGTERM)
        let text = try await process.wait(timeout: .seconds(30)).stdout
        let seen = text.split(separator: "\n").compactMap { (try? jsonObject(String($0)))?["n"] as? Int }
        #expect(seen == [0, 20, 40, 60, 80, 100])
    }
}

@Suite("myba-admin timeline")
struct TimelineCommandTests {
    @Test("a request's timeline merges its log lines and ledger entries in time order; a customer's adds webhooks and audit rows")
    func timeline() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let logPath = fixture.directory.file("myba.jsonl")
        let writer = try RotatingFileWriter(path: logPath, maxBytes: 1 << 20, maxFiles: 2)
        var logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, destination: .file(writer)) }
        logger[metadataKey: "request.id"] = "req_2"
        logger[metadataKey: "user.id"] = "user_alice"
        logger.info("request", metadata: ["http.path": "/api/generate", "http.status": .stringConvertible(200)])
        let adjust = try await fixture.admin(["tokens", "adjust", "user_alice", "+1", "--reason", "goodwill", "--yes", "--db", fixture.path])
        #expect(adjust.status == 0)

        let request = try await fixture.admin(["timeline", "req_2", "--file", logPath, "--json", "--db", fixture.path])
        #expect(request.status == 0, "\(request.stderr)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(request.stdout.utf8)) as? [[String: Any]])
        #expect(items.map { $0["source"] as? String } == ["ledger", "log"])
        #expect((items.first?["summary"] as? String)?.contains("consume -2") == true)

        let customer = try await fixture.admin(["timeline", "alice@example.com", "--file", logPath, "--json", "--db", fixture.path])
        let all = try #require(try JSONSerialization.jsonObject(with: Data(customer.stdout.utf8)) as? [[String: Any]])
        let sources = all.compactMap { $0["source"] as? String }
        #expect(sources.filter { $0 == "ledger" }.count == 4)
        #expect(sources.contains("audit") && sources.contains("log"))
        let times = all.compactMap { ($0["at"] as? String).flatMap(Timestamps.parse) }
        #expect(times == times.sorted())
        #expect(try await fixture.admin(["timeline", "req_nothing", "--file", logPath, "--db", fixture.path]).status == 1)
    }

    @Test(
        "a field holding a newline, an escape sequence or a bidi override cannot start a line of its own or drive the terminal in plain output; --json keeps the line as written"
    )
    func hostileFieldsStayOnTheirLine() async throws {
        let directory = try TemporaryDirectory("myba-logs-hostile")
        defer { directory.remove() }
        let path = directory.file("myba.jsonl")
        let writer = try RotatingFileWriter(path: path, maxBytes: 1 << 20, maxFiles: 2)
        let logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, level: .debug, destination: .file(writer)) }
        let fake = "\n2026-12-04T23:59:59.000Z critical FAKE server compromised \u{1B}[2J\u{202E}gnp.exe"
        logger.notice("authentication failed", metadata: ["auth.error": .string(fake), "request.id": "req_hostile"])
        logger.info("next line", metadata: ["request.id": "req_next"])
        let plain = try await BuiltProduct.run("myba-admin", ["logs", "tail", "--lines", "10", "--file", path])
        #expect(plain.status == 0, "\(plain.stderr)")
        let lines = plain.stdout.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(lines.count == 2, "\(plain.stdout)")
        #expect(!lines.contains { $0.hasPrefix("2026-12-04T23:59:59") })
        #expect(!plain.stdout.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x202E })
        #expect(
            plain.stdout.contains("\\n2026-12-04T23:59:59.000Z critical FAKE") && plain.stdout.contains("\\x1b[2J")
                && plain.stdout.contains("\\u202e")
        )
        let raw = try await BuiltProduct.run("myba-admin", ["logs", "tail", "--lines", "10", "--file", path, "--json"])
        #expect(try raw.stdout.split(separator: "\n").map { try jsonObject(String($0))["auth.error"] as? String }.first == fake)
    }
}

@Suite("Escape codes from outside never reach the operator's terminal")
struct TerminalEscapeTests {
    /// ESC, BEL, a right-to-left override: what a hostile token header, webhook or log field carries.
    static let hostile = "{\"alg\":\"\u{1B}]0;x\u{07}\u{1B}[2J\"} \u{202E}evil"

    /// The server's log of the fixture with one line carrying `hostile` (request `req_hostile`,
    /// user `user_alice`); returns its path.
    static func writeHostileLog(in fixture: AdminFixture) throws -> String {
        let logPath = fixture.directory.file("logs/myba.jsonl")
        let writer = try RotatingFileWriter(path: logPath, maxBytes: 1 << 20, maxFiles: 1)
        var logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, level: .info, destination: .file(writer)) }
        logger[metadataKey: "request.id"] = "req_hostile"
        logger[metadataKey: "user.id"] = "user_alice"
        logger.notice("authentication failed", metadata: ["auth.header": .string(hostile)])
        return logPath
    }

    static func clean(_ output: String) -> Bool {
        !output.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x202E }
    }

    @Test("logs tail, logs trace, timeline and webhooks show print hostile field values escaped")
    func hostileTextEscaped() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let logPath = try Self.writeHostileLog(in: fixture)
        _ = try await fixture.database.inbox.store(
            WebhookDelivery(
                source: .stripe,
                eventId: "evt_hostile",
                type: "charge.refunded",
                body: "not json \(Self.hostile)",
                headers: ["stripe-signature": Self.hostile],
                requestId: "req_hostile"
            )
        )
        let environment = ["MYBA_LOG_FILE": logPath, "NO_COLOR": "1"]
        for arguments in [
            ["logs", "tail", "--file", logPath], ["logs", "trace", "req_hostile", "--file", logPath],
            ["timeline", "req_hostile", "--db", fixture.path], ["timeline", "user_alice", "--db", fixture.path],
            ["webhooks", "show", "evt_hostile", "--db", fixture.path],
        ] {
            let result = try await fixture.admin(arguments, environment: environment)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            #expect(Self.clean(result.stdout) && Self.clean(result.stderr), "\(arguments) printed a raw control character")
            #expect(result.stdout.contains("\\x1b"), "\(arguments) did not show the escape at all")
        }
    }

    @Test("under a terminal (tmux), with colour on: the hostile header shows as text, the screen is not cleared and the pane's title is not set")
    func underATerminal() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let logPath = try Self.writeHostileLog(in: fixture)
        let terminal = TerminalSession()
        try await terminal.start("env MYBA_LOG_FILE=\(logPath) \(BuiltProduct.path("myba-admin")) --db \(fixture.path)")
        defer { terminal.stop() }
        _ = try await terminal.waitFor("myba.sqlite>")
        try await terminal.type("customer show user_alice", "Enter")
        _ = try await terminal.waitFor("alice@example.com")
        try await terminal.type("logs trace req_hostile --file \(logPath)", "Enter")
        let screen = try await terminal.waitFor("\\x1b]0;x\\x07\\x1b[2J")
        // ESC[2J would have wiped what the first command printed.
        #expect(screen.contains("alice@example.com"))
        let title = try await TerminalSession.tmux(["display-message", "-p", "-t", terminal.name, "#{pane_title}"]).stdout
        #expect(!title.contains("x\n") && title.trimmingCharacters(in: .whitespacesAndNewlines) != "x", "the pane title was set: \(title)")
    }
}
