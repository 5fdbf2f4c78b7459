import Foundation
import HTTPTypes
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps
@testable import MyBAServer

/// Three `myba-server` processes on one PostgreSQL database (the test cluster `scripts/test.sh`
/// starts), each with its own log file: what a deployment behind a load balancer runs.
struct ServerTrio {
    let servers: [RunningServer]
    let directory: TemporaryDirectory

    static func start(count: Int = 3, url: String, environment: [String: String] = [:]) async throws -> ServerTrio {
        let directory = try TemporaryDirectory("myba-several")
        var servers: [RunningServer] = []
        do {
            for index in 0..<count {
                servers.append(try await start(index: index, url: url, directory: directory, environment: environment))
            }
        } catch {
            for server in servers { server.process.send(SIGKILL) }
            directory.remove()
            throw error
        }
        return ServerTrio(servers: servers, directory: directory)
    }

    static func start(index: Int, url: String, directory: TemporaryDirectory, environment: [String: String]) async throws -> RunningServer {
        try await RunningServer.start(
            environment: ["PORT": "0", "MYBA_DATABASE": url, "MYBA_LOG_FILE": directory.file("server-\(index)-\(UUID().uuidString.prefix(4)).jsonl")]
                .merging(environment) { $1 }
        )
    }

    func stop() {
        for server in servers { server.process.send(SIGKILL) }
        directory.remove()
    }
}

/// A fresh database on the test cluster and the test's own connection to it; with `account`, that
/// account opened (its welcome grant) and topped up to `tokens`.
private func drillDatabase(account: String? = nil, tokens: Int = 0, connections: Int = 4) async throws -> (PostgresFixture, AppDatabase) {
    let fixture = try await PostgresFixture.make()
    let database = try await fixture.database(maxConnections: connections)
    if let account {
        _ = try await database.ledger.openAccount(userId: account, email: nil, actor: "test")
        _ = try await database.ledger.post(
            LedgerPosting(
                userId: account,
                kind: .adjust,
                delta: tokens - welcomeGrantTokens,
                idempotencyKey: "fund",
                actor: "test",
                reason: "fixture"
            )
        )
    }
    return (fixture, database)
}

/// Closes the test's connection and drops the database (in the background: called from `defer`).
private func dropDrillDatabase(_ fixture: PostgresFixture, _ database: AppDatabase) {
    Task {
        await database.close()
        await fixture.remove()
    }
}

/// Counts on the shared database, read the way the servers wrote them.
private func count(_ sql: String, _ arguments: [any SQLBindable] = [], in database: AppDatabase) async throws -> Int {
    nonisolated(unsafe) let arguments = arguments
    return try await database.read { tx in try tx.sql.value(sql, arguments, as: Int.self) ?? 0 }
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes; returns whether it held.
private func eventually(within timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}

/// The drills of issue 20 on the real binaries: three servers, one PostgreSQL database.
@Suite("Several servers on one PostgreSQL", .serialized, .enabled(if: PostgresFixture.isAvailable))
struct SeveralServersTests {
    @Test(
        "1000 concurrent generations across three servers for one account with 10 tokens, through a provider answering after 3 s: exactly 10 tickets, 990 × 402, balance 0, ledger verify clean"
    )
    func thousandGenerationsAcrossServers() async throws {
        let (fixture, database) = try await drillDatabase(account: "user_many", tokens: 10, connections: 4)
        defer { dropDrillDatabase(fixture, database) }
        #expect(try await database.ledger.balance(userId: "user_many")?.tokens == 10)
        let limit = raiseOpenFileLimit(to: 4096)
        try await FakeUpstream().run { base in
            let trio = try await ServerTrio.start(
                url: fixture.url,
                environment: [
                    "OPENROUTER_API_KEY": "sk-or-drill", "OPENROUTER_API_BASE": base.absoluteString + "/api/v1", "MYBA_AI_MODELS": "slow",
                    "MYBA_AI_TIMEOUT_MS": "30000", "MYBA_MAX_GENERATIONS_PER_ACCOUNT": "1000", "MYBA_MAX_GENERATIONS_IN_FLIGHT": "2000",
                ]
            )
            defer { trio.stop() }
            let perServer = limit >= 2200 ? 340 : max(Int(limit) / 8, 50)
            let clients = trio.servers.map { DrillClient(port: $0.port, connections: perServer) }
            let statuses = await withTaskGroup(of: Int.self) { group in
                for index in 0..<1000 {
                    let client = clients[index % clients.count]
                    let headers: HTTPFields = [.authorization: "Bearer dev:user_many", .idempotencyKey: "many-\(index)"]
                    group.addTask {
                        await client.send("POST", "/api/generate", body: #"{"input":"Across servers \#(index)"}"#, headers: headers)?.status ?? -1
                    }
                }
                return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
            }
            for client in clients { client.close() }
            #expect(statuses == [200: 10, 402: 990], "\(statuses)")
        }
        let balance = try #require(try await database.ledger.balance(userId: "user_many"))
        #expect(balance.tokens == 0)
        #expect(balance.tokensUsed == 10)
        #expect(try await count("SELECT COUNT(*) FROM generations WHERE payer_id = 'user_many' AND status = 'completed'", in: database) == 10)
        #expect(try await count("SELECT COUNT(*) FROM generations WHERE status = 'reserved'", in: database) == 0)
        #expect(try await count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'consume'", in: database) == 10)
        let report = try await database.ledger.verify()
        #expect(report.isClean, "\(report.violations)")
    }

    @Test(
        "one Stripe purchase event delivered 10 times to random servers, five of them at once: answered 200 each time, tokens granted once, one metadata write at Stripe"
    )
    func webhookDeliveredTenTimes() async throws {
        let (fixture, database) = try await drillDatabase(connections: 4)
        defer { dropDrillDatabase(fixture, database) }
        try await withStripeEmulator { emulator, base in
            let trio = try await ServerTrio.start(
                url: fixture.url,
                environment: [
                    "STRIPE_SECRET_KEY": "sk_test_myba", "STRIPE_API_BASE": base.absoluteString, "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret,
                    // Every server drains the outbox every 50 ms: they compete for the one row.
                    "MYBA_MIRROR_INTERVAL_MS": "50",
                ]
            )
            defer { trio.stop() }
            let body = Deliveries.stripeEvent(
                id: "evt_several_1",
                type: "checkout.session.completed",
                object: [
                    "id": "cs_several_1", "object": "checkout.session", "amount_total": 500, "currency": "usd",
                    "client_reference_id": "user_buyer", "metadata": ["user_id": "user_buyer", "plan_id": "starter", "tokens": "10"],
                    "mode": "payment", "payment_intent": "pi_several_1", "payment_status": "paid", "status": "complete",
                ]
            )
            let clients = trio.servers.map { DrillClient(port: $0.port, connections: 8) }
            defer { for client in clients { client.close() } }
            let atOnce = await withTaskGroup(of: Int.self) { group in
                for _ in 0..<5 {
                    let client = clients.randomElement()!
                    group.addTask {
                        await client.send("POST", "/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body))?.status ?? -1
                    }
                }
                return await group.reduce(into: [Int]()) { $0.append($1) }
            }
            var oneByOne: [Int] = []
            for _ in 0..<5 {
                oneByOne.append(
                    await clients.randomElement()!.send("POST", "/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body))?.status
                        ?? -1
                )
            }
            #expect(atOnce + oneByOne == Array(repeating: 200, count: 10), "\(atOnce) then \(oneByOne)")
            #expect(try await eventually(within: .seconds(30)) { try await count("SELECT COUNT(*) FROM stripe_outbox", in: database) == 0 })
            // Stay a while: a server that would push again does it now.
            try await Task.sleep(for: .milliseconds(500))
            let balance = try #require(try await database.ledger.balance(userId: "user_buyer"))
            #expect(balance.tokensPurchased == 10)
            #expect(try await count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'purchase'", in: database) == 1)
            let metadataWrites = await emulator.recordedRequests().filter { request in
                request.method == "POST" && request.path.hasPrefix("/v1/customers/")
                    && request.parameters.contains { $0.hasPrefix("metadata[tokens]") }
            }
            #expect(metadataWrites.count == 1, "\(metadataWrites)")
            let customers = try await stripeClient(base).customersNaming(userId: "user_buyer")
            #expect(customers.count == 1)
            #expect(customers.first?.metadata?.values["tokens"] == String(balance.tokens))
        }
        #expect(try await database.ledger.verify().isClean)
    }

    @Test(
        "a server SIGKILLed while pushing to Stripe and another while generating: the others finish the push after its lease and release its reservations within the deadline; nothing lost, nothing done twice"
    )
    func killedServersLeaveTheirWorkToOthers() async throws {
        let (fixture, database) = try await drillDatabase(account: "user_kill", tokens: 100, connections: 4)
        defer { dropDrillDatabase(fixture, database) }
        try await FakeUpstream().run { upstream in
            try await withStripeEmulator { emulator, base in
                let environment = [
                    "STRIPE_SECRET_KEY": "sk_test_myba", "STRIPE_API_BASE": base.absoluteString, "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret,
                    "MYBA_MIRROR_INTERVAL_MS": "100", "MYBA_WORK_LEASE_SECONDS": "4", "MYBA_STRIPE_TIMEOUT_MS": "20000",
                    "OPENROUTER_API_KEY": "sk-or-drill", "OPENROUTER_API_BASE": upstream.absoluteString + "/api/v1", "MYBA_AI_MODELS": "slow",
                    "MYBA_AI_TIMEOUT_MS": "4000", "MYBA_MAX_GENERATIONS_PER_ACCOUNT": "100",
                ]
                // 1. One server alone, pushing the outbox row to a Stripe that answers after 2 s:
                // killed while its request is on the wire.
                await emulator.setFaults(StripeFaults(latencyMilliseconds: 2000))
                let directory = try TemporaryDirectory("myba-several-kill")
                defer { directory.remove() }
                let first = try await ServerTrio.start(index: 0, url: fixture.url, directory: directory, environment: environment)
                defer { first.process.send(SIGKILL) }
                #expect(try await eventually(within: .seconds(20)) { await emulator.requestCount() > 0 }, "the first server never called Stripe")
                first.process.send(SIGKILL)
                _ = try await first.process.wait(timeout: .seconds(10))
                let leased = try await count("SELECT COUNT(*) FROM stripe_outbox WHERE lease_until > now()", in: database)
                #expect(leased == 1, "the dead server's claim is not on its row")
                await emulator.setFaults(StripeFaults())

                // 2. Two others take over once the lease runs out.
                let others = try await (0..<2).asyncMap { index in
                    try await ServerTrio.start(index: index + 1, url: fixture.url, directory: directory, environment: environment)
                }
                defer { for server in others { server.process.send(SIGKILL) } }
                #expect(try await eventually(within: .seconds(30)) { try await count("SELECT COUNT(*) FROM stripe_outbox", in: database) == 0 })
                let customers = try await stripeClient(base).customersNaming(userId: "user_kill")
                #expect(customers.count == 1, "\(customers.map(\.id))")
                #expect(customers.first?.metadata?.values["tokens"] == "100")

                // 3. A third server killed with 20 generations waiting on the provider.
                let third = try await ServerTrio.start(index: 3, url: fixture.url, directory: directory, environment: environment)
                defer { third.process.send(SIGKILL) }
                let client = DrillClient(port: third.port, connections: 20)
                let requests = Task {
                    await withTaskGroup(of: Void.self) { group in
                        for index in 0..<20 {
                            let headers: HTTPFields = [.authorization: "Bearer dev:user_kill", .idempotencyKey: "kill-\(index)"]
                            group.addTask { _ = await client.send("POST", "/api/generate", body: #"{"input":"Killed \#(index)"}"#, headers: headers) }
                        }
                    }
                }
                #expect(
                    try await eventually(within: .seconds(20)) {
                        try await count("SELECT COUNT(*) FROM generations WHERE status = 'reserved'", in: database) == 20
                    }
                )
                third.process.send(SIGKILL)
                _ = try await third.process.wait(timeout: .seconds(10))
                await requests.value
                client.close()
                #expect(try await database.ledger.balance(userId: "user_kill")?.tokens == 80)
                // Deadline: 4 s of provider time, 5 s of busy timeout, 5 s more; the sweep runs every 3.5 s.
                let released = try await eventually(within: .seconds(40)) {
                    try await count("SELECT COUNT(*) FROM generations WHERE status = 'reserved'", in: database) == 0
                }
                #expect(released, "the reservations of the dead server were not released")
            }
        }
        #expect(try await database.ledger.balance(userId: "user_kill")?.tokens == 100)
        #expect(try await count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'consume'", in: database) == 20)
        #expect(try await count("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'release'", in: database) == 20)
        #expect(try await count("SELECT COUNT(*) FROM generations WHERE status = 'failed'", in: database) == 20)
        let report = try await database.ledger.verify()
        #expect(report.isClean, "\(report.violations)")
    }

    @Test(
        "a browser streaming balance events from one server sees a token spent through another within 3 s (LISTEN/NOTIFY), long before the stream's 10 s re-read"
    )
    func balanceStreamAcrossServers() async throws {
        let (fixture, database) = try await drillDatabase(connections: 2)
        defer { dropDrillDatabase(fixture, database) }
        let trio = try await ServerTrio.start(count: 2, url: fixture.url)
        defer { trio.stop() }
        // The account exists before the stream opens (its first request opens it, on server 0).
        let (opened, _) = try await trio.servers[0].get("/api/account", headers: bearer("dev:user_stream"))
        #expect(opened == 200)
        let stream = try #require(
            HostileClientTests.stalledConnection(
                port: trio.servers[1].port,
                sending: "GET /api/account/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer dev:user_stream\r\n\r\n"
            )
        )
        defer { close(stream) }
        let first = Self.read(stream, until: { $0.contains("\"tokens\":\(welcomeGrantTokens)") }, within: .seconds(10))
        #expect(first.contains("event: balance"), "\(first)")
        let started = ContinuousClock.now
        var headers = bearer("dev:user_stream")
        headers[.idempotencyKey] = "stream-1"
        let (generated, _) = try await trio.servers[0].post("/api/generate", body: #"{"input":"Spend one on the other server"}"#, headers: headers)
        #expect(generated == 200)
        let pushed = Self.read(stream, until: { $0.contains("\"tokens\":\(welcomeGrantTokens - 1)") }, within: .seconds(3))
        #expect(pushed.contains("\"tokens\":\(welcomeGrantTokens - 1)"), "no balance event within 3 s: \(pushed)")
        #expect(ContinuousClock.now - started < .seconds(3))
    }

    /// What arrives on `fd` until `done` holds for it or `timeout` passes.
    static func read(_ fd: Int32, until done: (String) -> Bool, within timeout: Duration) -> String {
        var received = Data()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !done(String(decoding: received, as: UTF8.self)) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: received, as: UTF8.self)
    }

    @Test("20 anonymous sessions opened from one address, spread over three servers: ten are made, the 11th and every later one refused")
    func anonymousSessionsFromOneAddress() async throws {
        let (fixture, database) = try await drillDatabase(connections: 2)
        defer { dropDrillDatabase(fixture, database) }
        let trio = try await ServerTrio.start(url: fixture.url, environment: ["MYBA_ANON_SESSIONS_PER_HOUR": "10"])
        defer { trio.stop() }
        var statuses: [Int] = []
        for index in 0..<20 {
            let (status, _) = try await trio.servers[index % 3].post(
                "/api/anonymous-session",
                body: #"{"fingerprint":"fp-several-\#(index)"}"#,
                headers: jsonHeaders
            )
            statuses.append(status)
        }
        #expect(statuses == Array(repeating: 200, count: 10) + Array(repeating: 429, count: 10), "\(statuses)")
        #expect(try await count("SELECT COUNT(*) FROM anonymous_sessions", in: database) == 10)
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
