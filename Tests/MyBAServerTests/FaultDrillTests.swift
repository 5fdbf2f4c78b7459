import Foundation
import GRDB
import HTTPTypes
import MyBATestSupport
import StripeEmulator
import Synchronization
import Testing

@testable import MyBAOps
@testable import MyBAServer

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP client for drills: many connections at once, and a failed exchange (a killed server)
/// is an answer of its own (`nil`), never an error that ends the drill.
struct DrillClient: Sendable {
    let session: URLSession
    let port: Int

    init(port: Int, connections: Int) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = connections
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
        self.port = port
    }

    /// Lets the session's connections go once the drill is done with it.
    func close() { session.finishTasksAndInvalidate() }

    func send(_ method: String, _ path: String, body: String? = nil, headers: HTTPFields = [:]) async -> (status: Int, body: [String: Any])? {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        for field in headers { request.setValue(field.value, forHTTPHeaderField: field.name.rawName) }
        if let body {
            request.httpBody = Data(body.utf8)
            if headers[.contentType] == nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        }
        guard let (data, response) = try? await session.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        return (http.statusCode, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }
}

/// Opens each user's account (6 welcome tokens) and adds `tokens` more.
func fund(_ users: [String], with tokens: Int, in database: AppDatabase) async throws {
    for user in users {
        _ = try await database.ledger.openAccount(userId: user, email: nil, actor: "test")
        _ = try await database.ledger.post(
            LedgerPosting(userId: user, kind: .adjust, delta: tokens, idempotencyKey: "fund:\(user)", actor: "test", reason: "fixture")
        )
    }
}

/// Lets this process (and the server it starts, which inherits it) hold `wanted` descriptors.
func raiseOpenFileLimit(to wanted: rlim_t) -> rlim_t {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if limit.rlim_cur < wanted {
        limit.rlim_cur = min(wanted, limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return limit.rlim_cur
}

/// The drills of issue 7, each bounded in time and on loopback, against the real binary.
@Suite("Fault drills", .serialized)
struct FaultDrillTests {
    @Test(
        "1000 concurrent generate calls on a balance of 10, with mock tickets and through a provider answering after 3 s (reserve, call, complete): exactly 10 tickets, 990 × 402, balance 0, ledger verify clean",
        arguments: ["mock", "provider"]
    )
    func thousandGeneratesOnTen(path: String) async throws {
        guard path == "provider" else {
            try await Self.thousandGeneratesOnTen(environment: [:], expectedProvider: "mock")
            return
        }
        // The production path: every call reserves its token, waits on the provider, completes.
        try await FakeUpstream().run { base in
            try await Self.thousandGeneratesOnTen(
                environment: [
                    "OPENROUTER_API_KEY": "sk-or-drill", "OPENROUTER_API_BASE": base.absoluteString + "/api/v1", "MYBA_AI_MODELS": "slow",
                    "MYBA_AI_TIMEOUT_MS": "30000", "MYBA_MAX_GENERATIONS_PER_ACCOUNT": "1000", "MYBA_MAX_GENERATIONS_IN_FLIGHT": "2000",
                ],
                expectedProvider: "openrouter"
            )
        }
    }

    static func thousandGeneratesOnTen(environment: [String: String], expectedProvider: String) async throws {
        let directory = try TemporaryDirectory("myba-drill-generate")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let database = try AppDatabase.openFile(at: databasePath)
        _ = try await database.ledger.openAccount(userId: "user_drill", email: nil, actor: "test")
        _ = try await database.ledger.post(
            LedgerPosting(userId: "user_drill", kind: .adjust, delta: 4, idempotencyKey: "to-ten", actor: "test", reason: "fixture")
        )
        #expect(try await database.ledger.balance(userId: "user_drill")?.tokens == 10)

        // 1000 client sockets here and 1000 in the server, each within its own limit.
        let limit = raiseOpenFileLimit(to: 4096)
        let connections = limit >= 2200 ? 1000 : Int(limit) - 200
        let server = try await RunningServer.start(
            environment: ["PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": directory.file("myba.jsonl")].merging(environment) { $1 }
        )
        defer { server.stop() }
        let client = DrillClient(port: server.port, connections: connections)
        var headers: HTTPFields = [.authorization: "Bearer dev:user_drill"]
        let statuses = await withTaskGroup(of: Int.self) { group in
            for index in 0..<1000 {
                headers[.idempotencyKey] = "drill-\(index)"
                let requestHeaders = headers
                group.addTask {
                    await client.send("POST", "/api/generate", body: #"{"input":"Drill task \#(index)"}"#, headers: requestHeaders)?.status ?? -1
                }
            }
            return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        }
        client.close()
        #expect(statuses == [200: 10, 402: 990], "\(statuses) over \(connections) connections")
        let balance = try #require(try await database.ledger.balance(userId: "user_drill"))
        #expect(balance.tokens == 0)
        #expect(balance.tokensUsed == 10)
        let completed = try await database.writerForTests.read { db in
            try String.fetchAll(db, sql: "SELECT provider FROM generations WHERE payer_id = 'user_drill' AND status = 'completed'")
        }
        #expect(completed == Array(repeating: expectedProvider, count: 10), "\(completed)")
        let reserved = try await database.writerForTests.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM generations WHERE status = 'reserved'")
        }
        #expect(reserved == 0)
        let report = try await database.ledger.verify()
        #expect(report.isClean, "\(report.violations)")
    }

    @Test("100 checkout events each delivered 10 times at once: every delivery answered 200, each event applied once")
    func duplicateDeliveries() async throws {
        let directory = try TemporaryDirectory("myba-drill-webhooks")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        _ = raiseOpenFileLimit(to: 4096)
        let server = try await RunningServer.start(environment: [
            "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": directory.file("myba.jsonl"), "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret,
        ])
        defer { server.stop() }
        let client = DrillClient(port: server.port, connections: 200)
        let deliveries = (0..<100).flatMap { index in
            let body = Deliveries.checkoutCompleted(
                eventId: "evt_dup_\(index)",
                sessionId: "cs_dup_\(index)",
                userId: "user_dup_\(index % 20)",
                tokens: 10,
                amount: 500,
                paymentIntent: "pi_dup_\(index)"
            )
            return Array(repeating: body, count: 10)
        }.shuffled()
        let statuses = await withTaskGroup(of: Int.self) { group in
            for body in deliveries {
                let headers = Deliveries.stripeHeaders(body)
                group.addTask { await client.send("POST", "/api/webhook/stripe", body: body, headers: headers)?.status ?? -1 }
            }
            return await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        }
        client.close()
        #expect(statuses == [200: 1000], "\(statuses)")

        let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
        let (events, purchases, purchased) = try await database.writerForTests.read { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_events WHERE event_id LIKE 'evt_dup_%' AND status = 'processed'") ?? 0,
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'purchase'") ?? 0,
                try Int.fetchOne(db, sql: "SELECT SUM(tokens_purchased) FROM balances") ?? 0
            )
        }
        #expect(events == 100)
        #expect(purchases == 100)
        #expect(purchased == 1000)
        for user in 0..<20 {
            #expect(try await database.ledger.balance(userId: "user_dup_\(user)")?.tokensPurchased == 50)
        }
        #expect(try await database.ledger.verify().isClean)
    }

    @Test(
        "50 rounds of SIGKILL under generate, webhook and transfer load: every acknowledged webhook applied once, every 2xx generate charged once, every acknowledged transfer moved once"
    )
    func killedUnderLoad() async throws {
        let directory = try TemporaryDirectory("myba-drill-crash")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let database = try AppDatabase.openFile(at: databasePath)
        let users = (0..<4).map { "user_crash_\($0)" }
        try await fund(users, with: 1_000_000, in: database)
        let environment = [
            "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": directory.file("myba.jsonl"),
            "STRIPE_WEBHOOK_SECRET": stripeWebhookSecret, "MYBA_WEBHOOK_RETRY_SECONDS": "1", "MYBA_ANON_SESSIONS_PER_HOUR": "1000000",
            // The drill moves many sessions into few accounts; the per-account cap is another test's.
            "MYBA_MAX_SESSION_TRANSFERS": "1000",
        ]
        let record = Shared(DrillRecord())

        for round in 0..<50 {
            let server = try await RunningServer.start(environment: environment)
            let client = DrillClient(port: server.port, connections: 16)
            let stop = Shared(false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Whatever ends this round, the workers stop: they see the flag, not cancellation.
                defer { stop.withLock { $0 = true } }
                for worker in 0..<8 {
                    group.addTask {
                        var step = 0
                        while !stop.withLock({ $0 }), !Task.isCancelled {
                            step += 1
                            let user = users.randomElement()!
                            switch Int.random(in: 0..<10) {
                            case 0..<5:
                                let key = "g\(round)-\(worker)-\(step)"
                                let headers: HTTPFields = [.authorization: "Bearer dev:\(user)", .idempotencyKey: key]
                                if await client.send("POST", "/api/generate", body: #"{"input":"Crash drill \#(key)"}"#, headers: headers)?.status
                                    == 200
                                {
                                    record.withLock { _ = $0.acknowledgedGenerations.insert("\(user):\(key)") }
                                }
                            case 5..<8:
                                // Mostly new events; sometimes a redelivery, as Stripe retries.
                                let redelivery = Bool.random() ? record.withLock { $0.sentEvents.keys.randomElement() } : nil
                                let eventId = redelivery ?? "evt_crash_\(round)_\(worker)_\(step)"
                                let body = record.withLock { state in
                                    if state.sentEvents[eventId] == nil {
                                        state.sentEvents[eventId] = Deliveries.checkoutCompleted(
                                            eventId: eventId,
                                            sessionId: "cs_" + eventId,
                                            userId: user,
                                            tokens: 10,
                                            amount: 500,
                                            paymentIntent: "pi_" + eventId
                                        )
                                    }
                                    return state.sentEvents[eventId]!
                                }
                                if await client.send("POST", "/api/webhook/stripe", body: body, headers: Deliveries.stripeHeaders(body))?.status
                                    == 200
                                {
                                    record.withLock { _ = $0.acknowledgedEvents.insert(eventId) }
                                }
                            default:
                                let fingerprint = "fp-\(round)-\(worker)-\(step)"
                                guard let started = await client.send("POST", "/api/anonymous-session", body: #"{"fingerprint":"\#(fingerprint)"}"#),
                                    started.status == 200, let sessionId = started.body["sessionId"] as? String
                                else { continue }
                                let headers: HTTPFields = [.authorization: "Bearer dev:\(user)"]
                                if let moved = await client.send(
                                    "POST",
                                    "/api/transfer-anonymous-tokens",
                                    body: #"{"sessionId":"\#(sessionId)"}"#,
                                    headers: headers
                                ),
                                    moved.status == 200, let transferred = moved.body["transferred"] as? Int
                                {
                                    record.withLock { $0.acknowledgedTransfers[sessionId] = (user, transferred) }
                                }
                            }
                        }
                    }
                }
                // Kill at a random moment while the load runs.
                try await Task.sleep(for: .milliseconds(Int.random(in: 100...500)))
                server.process.send(SIGKILL)
                let ending = try await server.process.wait(timeout: .seconds(30))
                #expect(ending.bySignal && ending.status == SIGKILL, "round \(round): the server ended on its own: \(ending.stderr.suffix(2000))")
                stop.withLock { $0 = true }
                try await group.waitForAll()
            }
            client.close()
        }

        // A last start: what was stored but not processed is retried by the server itself.
        let server = try await RunningServer.start(environment: environment)
        defer { server.stop() }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let pending = try await database.writerForTests.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM webhook_events WHERE status IN ('received', 'failed')") ?? 0
            }
            if pending == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }

        let state = record.withLock { $0 }
        #expect(state.acknowledgedGenerations.count > 50, "the load barely ran: \(state.acknowledgedGenerations.count) generations")
        #expect(state.acknowledgedEvents.count > 20, "the load barely ran: \(state.acknowledgedEvents.count) events")
        #expect(state.acknowledgedTransfers.count > 50, "the load barely ran: \(state.acknowledgedTransfers.count) transfers")
        try await database.writerForTests.read { db in
            for eventId in state.acknowledgedEvents.sorted() {
                let status = try String.fetchOne(
                    db,
                    sql: "SELECT status FROM webhook_events WHERE source = 'stripe' AND event_id = ?",
                    arguments: [eventId]
                )
                #expect(status == "processed", "\(eventId) acknowledged but \(status ?? "not stored")")
            }
            // Every event ever sent, acknowledged or not, granted at most once.
            for eventId in state.sentEvents.keys.sorted() {
                let purchases =
                    try Int.fetchOne(
                        db,
                        sql: "SELECT COUNT(*) FROM ledger_entries WHERE kind = 'purchase' AND reference = ?",
                        arguments: ["cs_" + eventId]
                    ) ?? 0
                if state.acknowledgedEvents.contains(eventId) {
                    #expect(purchases == 1, "\(eventId) acknowledged, granted \(purchases) times")
                } else {
                    #expect(purchases <= 1, "\(eventId) granted \(purchases) times")
                }
            }
            for key in state.acknowledgedGenerations.sorted() {
                let kinds = try String.fetchAll(db, sql: "SELECT kind FROM ledger_entries WHERE reference = ?", arguments: [key])
                #expect(kinds == ["consume"], "\(key) answered 200 but its entries are \(kinds)")
                let status = try String.fetchOne(db, sql: "SELECT status FROM generations WHERE idempotency_key = ?", arguments: [key])
                #expect(status == "completed", "\(key): \(status ?? "no generation row")")
            }
            for (sessionId, (user, transferred)) in state.acknowledgedTransfers.sorted(by: { $0.key < $1.key }) {
                let entries = try Row.fetchAll(
                    db,
                    sql: "SELECT user_id, delta FROM ledger_entries WHERE kind = 'transfer' AND reference = ?",
                    arguments: [sessionId]
                )
                #expect(entries.count == (transferred > 0 ? 1 : 0), "\(sessionId): \(entries.count) transfer entries")
                if let entry = entries.first {
                    #expect(entry["user_id"] as String == user && entry["delta"] as Int == transferred)
                }
                #expect(try String.fetchOne(db, sql: "SELECT transferred_to FROM anonymous_sessions WHERE id = ?", arguments: [sessionId]) == user)
            }
        }
        let report = try await database.ledger.verify()
        #expect(report.isClean, "\(report.violations)")
    }

    @Test("Stripe answering 500, then 429, then too slowly: the API keeps answering, the mirror catches up afterwards, reconcile finds no drift")
    func stripeFaults() async throws {
        let directory = try TemporaryDirectory("myba-drill-stripe")
        defer { directory.remove() }
        let databasePath = directory.file("myba.sqlite")
        let users = (0..<5).map { "user_fault_\($0)" }
        try await fund(users, with: 100, in: AppDatabase.openFile(at: databasePath))
        let emulator = StripeEmulator()
        try await withStripeEmulator(emulator) { emulator, base in
            let stripeEnvironment = ["STRIPE_SECRET_KEY": "sk_test_drill", "STRIPE_API_BASE": base.absoluteString, "MYBA_STRIPE_TIMEOUT_MS": "400"]
            let server = try await RunningServer.start(
                environment: stripeEnvironment.merging([
                    "PORT": "0", "MYBA_DATABASE": databasePath, "MYBA_LOG_FILE": directory.file("myba.jsonl"), "MYBA_MIRROR_INTERVAL_MS": "50",
                ]) { $1 }
            )
            defer { server.stop() }
            let client = DrillClient(port: server.port, connections: 8)

            var answers: [Int: Int] = [:]
            for faults in [StripeFaults(serverErrorShare: 1), StripeFaults(rateLimitShare: 1), StripeFaults(latencyMilliseconds: 1500)] {
                await emulator.setFaults(faults)
                let started = ContinuousClock.now
                for round in 0..<4 {
                    for user in users {
                        let status =
                            await client.send(
                                "POST",
                                "/api/generate",
                                body: #"{"input":"Stripe is down, round \#(round)"}"#,
                                headers: [.authorization: "Bearer dev:\(user)"]
                            )?.status ?? -1
                        answers[status, default: 0] += 1
                    }
                }
                // Twenty answers without waiting on Stripe at all.
                #expect(ContinuousClock.now - started < .seconds(10), "generation waited on Stripe under \(faults)")
                let health = await client.send("GET", "/api/health")
                #expect(health?.status == 200)
                #expect((health?.body["outboxDepth"] as? Int ?? 0) > 0, "the outbox should hold the changes Stripe refused")
            }
            #expect(answers == [200: 60], "\(answers)")

            await emulator.setFaults(StripeFaults())
            let deadline = ContinuousClock.now + .seconds(60)
            var depth = -1
            while ContinuousClock.now < deadline {
                depth = await client.send("GET", "/api/health")?.body["outboxDepth"] as? Int ?? -1
                if depth == 0 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(depth == 0, "the mirror did not catch up")
            client.close()

            let reconcile = try await BuiltProduct.run("myba-admin", ["reconcile", "--db", databasePath, "--json"], environment: stripeEnvironment)
            #expect(reconcile.status == 0, "reconcile found drift:\n\(reconcile.stdout)\n\(reconcile.stderr)")
            let database = try AppDatabase.openFile(at: databasePath, options: .init(createIfMissing: false))
            #expect(try await database.ledger.verify().isClean)
            for user in users {
                #expect(try await database.ledger.balance(userId: user)?.tokens == 6 + 100 - 12)
            }
        }
    }
}

struct DrillRecord: Sendable {
    var acknowledgedGenerations: Set<String> = []
    var sentEvents: [String: String] = [:]
    var acknowledgedEvents: Set<String> = []
    var acknowledgedTransfers: [String: (user: String, transferred: Int)] = [:]
}

/// State shared by the drill's concurrent tasks (`Mutex` itself cannot be captured).
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}
