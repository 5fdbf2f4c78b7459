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
        let badPlans = try await BuiltProduct.run(
            "myba-server",
            [],
            environment: ["PORT": "0", "MYBA_PLANS_FILE": directory.file("none.json")],
            currentDirectory: directory.path
        )
        #expect(badPlans.status == 1)
        #expect(badPlans.stderr.contains("none.json"))
    }
}

/// Production start-up (issue 15): a production setting never falls back to a development
/// default; the server refuses to start, naming what is missing, before it touches anything.
@Suite("myba-server in production", .serialized)
struct ProductionStartTests {
    static let complete = [
        "PORT": "0", "MYBA_ENV": "production", "CLERK_JWKS_URL": "http://127.0.0.1:9/jwks",
        "CLERK_WEBHOOK_SECRET": "whsec_" + String(repeating: "A", count: 32), "CLERK_PUBLISHABLE_KEY": "pk_live_Y2xlcmsuYXBwLmV4YW1wbGUk",
        "MYBA_FINGERPRINT_SECRET": "a-long-private-fingerprint-secret", "OPENROUTER_API_KEY": "sk-or-test", "MYBA_PUBLIC_URL": "https://app.example",
        "STRIPE_SECRET_KEY": "sk_live_production_key", "STRIPE_WEBHOOK_SECRET": "whsec_live", "STRIPE_API_BASE": "http://127.0.0.1:9",
    ]

    @Test(
        "MYBA_ENV=production, or a live Stripe key alone, with development defaults: exit 1, one message naming each missing setting, no file created"
    )
    func refusesUnsafeProduction() async throws {
        let directory = try TemporaryDirectory("myba-prod")
        defer { directory.remove() }
        let bare = try await BuiltProduct.run(
            "myba-server",
            [],
            environment: ["PORT": "0", "MYBA_ENV": "production"],
            currentDirectory: directory.path
        )
        #expect(bare.status == 1)
        for name in ["CLERK_JWT_KEY", "MYBA_FINGERPRINT_SECRET", "OPENROUTER_API_KEY", "MYBA_PUBLIC_URL"] {
            #expect(bare.stderr.contains(name), "\(name) not named: \(bare.stderr)")
        }
        #expect(bare.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: directory.file("data")), "start-up created files before refusing")

        // The reproduction: a live key, development sign-in otherwise. It must not start.
        let live = try await BuiltProduct.run(
            "myba-server",
            [],
            environment: ["PORT": "0", "STRIPE_SECRET_KEY": "sk_live_abc"],
            currentDirectory: directory.path
        )
        #expect(live.status == 1)
        #expect(live.stderr.contains("STRIPE_WEBHOOK_SECRET") && live.stderr.contains("development sign-in"), "\(live.stderr)")

        for (name, value) in [
            ("MYBA_FAULT_INJECTION", "kill-after-webhook-store"), ("STRIPE_SECRET_KEY", "sk_test_in_production"),
            ("CLERK_PUBLISHABLE_KEY", "pk_live_bm90LWEta2V5"),
            // PostgreSQL across the network without TLS (libpq's `prefer` falls back to plain text).
            ("MYBA_DATABASE", "postgres://myba@db.internal/myba"), ("MYBA_DATABASE", "postgresql://myba@10.0.0.5/myba?sslmode=disable"),
        ] {
            var environment = Self.complete
            environment[name] = value
            let refused = try await BuiltProduct.run("myba-server", [], environment: environment, currentDirectory: directory.path)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains(name), "\(refused.stderr)")
        }
        // Clerk sign-in without the key the page needs to load Clerk's SDK.
        var withoutPublishableKey = Self.complete
        withoutPublishableKey["CLERK_PUBLISHABLE_KEY"] = nil
        let refused = try await BuiltProduct.run("myba-server", [], environment: withoutPublishableKey, currentDirectory: directory.path)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("CLERK_PUBLISHABLE_KEY is missing"), "\(refused.stderr)")
    }

    @Test("a complete production configuration starts; a development token is refused (401), and the files it makes are its owner's only")
    func completeProductionStarts() async throws {
        let directory = try TemporaryDirectory("myba-prod-ok")
        defer { directory.remove() }
        let server = try await RunningServer.start(environment: Self.complete, currentDirectory: directory.path)
        defer { server.process.send(SIGKILL) }
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(server.port)/api/user-tokens/user_x")!)
        request.setValue("Bearer dev:user_x", forHTTPHeaderField: "Authorization")
        let (_, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 401)
        for (path, mode) in [
            ("data", 0o700), ("data/myba.sqlite", 0o600), ("data/myba.sqlite-wal", 0o600), ("data/myba.sqlite.lock", 0o600), ("data/logs", 0o700),
            ("data/logs/myba.jsonl", 0o600),
        ] {
            let attributes = try FileManager.default.attributesOfItem(atPath: directory.file(path))
            #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o777 } == mode, "\(path)")
        }
    }
}

/// Hostile clients against the real binary (issue 15).
@Suite("myba-server under hostile clients", .serialized)
struct HostileClientTests {
    /// A TCP connection to loopback `port` that has sent `bytes` and then nothing.
    static func stalledConnection(port: Int, sending bytes: String) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        _ = bytes.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        return fd
    }

    /// How many of `fds` the server has closed (EOF or reset) by `timeout`, polling them together.
    static func closedByServer(_ fds: [Int32], timeout: Duration) -> Int {
        var open = Set(fds)
        let deadline = ContinuousClock.now + timeout
        // At least one pass, so a zero timeout asks "closed by now?".
        repeat {
            var pollers = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let left = deadline - ContinuousClock.now
            let wait = left > .zero ? Int32(min(200, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)) : 0
            if poll(&pollers, nfds_t(pollers.count), wait) > 0 {
                for poller in pollers where poller.revents != 0 {
                    var byte: UInt8 = 0
                    if recv(poller.fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0 { open.remove(poller.fd) }
                }
            }
        } while !open.isEmpty && ContinuousClock.now < deadline
        return fds.count - open.count
    }

    @Test(
        "a slowloris of 2000 connections that never finish their headers: other clients are served at once, and the server closes every stalled connection after MYBA_CONNECTION_IDLE_MS; oversized headers are refused"
    )
    func slowloris() async throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let directory = try TemporaryDirectory("myba-slowloris")
        defer { directory.remove() }
        let server = try await RunningServer.start(environment: ["PORT": "0", "MYBA_CONNECTION_IDLE_MS": "12000"], currentDirectory: directory.path)
        defer { server.process.send(SIGKILL) }
        let port = server.port
        let stalled = try await onOwnThread {
            (0..<2000).compactMap { _ in Self.stalledConnection(port: port, sending: "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ") }
        }
        defer { for fd in stalled { close(fd) } }
        #expect(stalled.count > 1900)

        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(server.port)/api/health")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        #expect(try jsonObject(String(decoding: data, as: UTF8.self))["status"] as? String == "ok")
        // Served while the slowloris still held its connections (none closed yet): not queued
        // behind them. Outcomes, not a stopwatch: a loaded machine only makes this slower.
        let closedWhileServed = try await onOwnThread { Self.closedByServer(stalled, timeout: .zero) }
        #expect(closedWhileServed < stalled.count / 2, "the answer came only after \(closedWhileServed) stalled connections were closed")

        let closed = try await onOwnThread { Self.closedByServer(stalled, timeout: .seconds(30)) }
        #expect(closed == stalled.count, "\(stalled.count - closed) stalled connections still open")

        var oversized = URLRequest(url: URL(string: "http://127.0.0.1:\(server.port)/api/health")!)
        oversized.setValue(String(repeating: "a", count: 40 * 1024), forHTTPHeaderField: "X-Big")
        let refused = try? await URLSession.shared.data(for: oversized)
        #expect((refused?.1 as? HTTPURLResponse)?.statusCode != 200)
    }
}

/// Claims the README makes that had no test (issue 23).
@Suite("myba-server claims")
struct ServerClaimTests {
    @Test("SIGINT stops the server gracefully (exit 0), as SIGTERM does; a publishable Stripe key stops start-up naming STRIPE_SECRET_KEY")
    func sigintAndPublishableKey() async throws {
        let directory = try TemporaryDirectory("myba-sigint")
        defer { directory.remove() }
        let server = try await RunningServer.start(environment: ["PORT": "0"], currentDirectory: directory.path)
        defer { server.process.send(SIGKILL) }
        server.process.send(SIGINT)
        let ending = try await server.process.wait(timeout: .seconds(30))
        #expect(!ending.bySignal && ending.status == 0, "\(ending.stderr)")
        let logText = try String(contentsOfFile: directory.file("data/logs/myba.jsonl"), encoding: .utf8)
        #expect(logText.contains("\"server stopped\""))

        let publishable = try await BuiltProduct.run(
            "myba-server",
            [],
            environment: ["PORT": "0", "STRIPE_SECRET_KEY": "pk_test_publishable"],
            currentDirectory: directory.path
        )
        #expect(publishable.status == 1)
        #expect(publishable.stderr.contains("STRIPE_SECRET_KEY"), "\(publishable.stderr)")
    }
}
