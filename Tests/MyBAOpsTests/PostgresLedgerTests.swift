import Foundation
import Logging
import MyBATestSupport
import PostgresNIO
import Testing

@testable import MyBAOps

@Suite("PostgreSQL backend: the ledger and anonymous sessions")
struct PostgresLedgerTests {
    @Test("five servers starting at once: the migrations run once, under the advisory lock, and are recorded")
    func migrationsRunOnce() async throws {
        let fixture = try await PostgresFixture.make()
        let engines = (0..<5).map { _ in fixture.engine(maxConnections: 2) }
        let applied = try await withThrowingTaskGroup(of: [String].self) { group in
            for engine in engines { group.addTask { try await engine.migrate() } }
            return try await group.reduce(into: [[String]]()) { $0.append($1) }
        }
        let names = PostgresMigrations.all.map(\.name)
        #expect(applied.filter { !$0.isEmpty } == [names], "\(applied)")
        #expect(try await engines[0].appliedMigrations() == names)
        #expect(try await engines[1].migrate().isEmpty)
        await fixture.remove(engines)
    }

    @Test(
        "1000 consumes of one 10-token account across three servers (database.ledger on PostgreSQL): exactly 10 succeed, 990 refused, balance 0, the ledger exact, replays change nothing"
    )
    func concurrentConsumesAcrossServers() async throws {
        let fixture = try await PostgresFixture.make()
        let engines = (0..<3).map { _ in fixture.engine() }
        var servers: [Ledger] = []
        for engine in engines { servers.append(try await AppDatabase.open(postgres: engine).ledger) }
        let opened = try await servers[1].openAccount(userId: "user_pg", email: "pg@example.com", actor: "test")
        #expect(opened.balance.tokens == welcomeGrantTokens && !opened.replayed)
        #expect(try await servers[2].openAccount(userId: "user_pg", email: nil, actor: "test").replayed)
        _ = try await servers[2].post(
            LedgerPosting(userId: "user_pg", kind: .adjust, delta: 4, idempotencyKey: "adjust:pg:1", actor: "operator:test", reason: "top up")
        )

        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for attempt in 0..<1000 {
                let server = servers[attempt % servers.count]
                group.addTask {
                    do {
                        _ = try await server.consume(userId: "user_pg", idempotencyKey: "consume:pg:\(attempt)", actor: "test")
                        return true
                    } catch LedgerError.insufficientTokens {
                        return false
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 10)
        #expect(outcomes.filter { !$0 }.count == 990)
        let balance = try #require(try await servers[0].balance(userId: "user_pg"))
        #expect(balance.tokens == 0 && balance.tokensUsed == 10)
        #expect(try await servers[1].verify().isClean)

        // A replay of a consume that went through answers the same entry and changes nothing,
        // on any server, even with the balance at zero.
        let spent = try await servers[0].entries(userId: "user_pg", limit: 1).first
        let key = try #require(spent?.idempotencyKey)
        let replay = try await servers[2].consume(userId: "user_pg", idempotencyKey: key, actor: "test")
        #expect(replay.replayed && replay.entry.id == spent?.id)
        #expect(try await servers[1].balance(userId: "user_pg")?.tokens == 0)
        // The same key with another amount is refused.
        await #expect(throws: LedgerError.self) {
            try await servers[1].consume(userId: "user_pg", amount: 2, idempotencyKey: key, actor: "test")
        }
        await fixture.remove(engines)
    }

    @Test("the database itself refuses an edited entry and a negative balance; plans and customer lookups answer on PostgreSQL")
    func databaseGuards() async throws {
        let fixture = try await PostgresFixture.make()
        let engine = fixture.engine()
        let database = try await AppDatabase.open(postgres: engine)
        _ = try await database.ledger.openAccount(userId: "user_guard", email: nil, actor: "test")
        await #expect(throws: PSQLError.self) {
            try await engine.runOutsideTransaction("UPDATE ledger_entries SET delta = 600")
        }
        await #expect(throws: PSQLError.self) {
            try await engine.runOutsideTransaction("DELETE FROM ledger_entries")
        }
        await #expect(throws: PSQLError.self) {
            try await engine.runOutsideTransaction("UPDATE balances SET tokens = -1")
        }
        #expect(try await database.ledger.balance(userId: "user_guard")?.tokens == welcomeGrantTokens)
        #expect(try await database.ledger.verify().isClean)
        #expect(try await database.plans.installed().source == "built-in")
        #expect(try await database.queries.resolveUserId("user_guard") == "user_guard")
        // A dry run on PostgreSQL keeps nothing.
        let dryRun = try await database.writeAndRollBack { tx in
            try Ledger.post(
                LedgerPosting(userId: "user_guard", kind: .adjust, delta: 5, idempotencyKey: "dry:1", actor: "operator:test", reason: "dry"),
                now: Date(),
                in: tx
            )
        }
        #expect(dryRun.balance.tokens == welcomeGrantTokens + 5)
        #expect(try await database.ledger.balance(userId: "user_guard")?.tokens == welcomeGrantTokens)
        await fixture.remove([engine])
    }

    @Test(
        "a balance change committed on one server is announced to every server: the entry notifies on commit, a relay wakes this process's listeners, a rolled-back one tells nobody"
    )
    func balanceChangesReachOtherServers() async throws {
        let fixture = try await PostgresFixture.make()
        let serverA = fixture.engine()
        let serverB = fixture.engine()
        let watcher = fixture.engine(maxConnections: 2)
        let database = try await AppDatabase.open(postgres: serverB)
        _ = try await database.ledger.openAccount(userId: "user_relay", email: nil, actor: "test")

        // What the database carries: a committed entry notifies with its user id; a dry run does not.
        // Markers sent by hand between the steps show what each step sent; the last one, sent
        // after a pause, ends the wait if the entry sent nothing.
        let heard = try await watcher.client.withConnection { connection in
            try await connection.listen(on: PostgresEngine.balanceChannel) { notifications -> [String] in
                _ = try await database.writeAndRollBack { tx in
                    try Ledger.post(
                        LedgerPosting(
                            userId: "user_relay",
                            kind: .adjust,
                            delta: 1,
                            idempotencyKey: "relay:dry",
                            actor: "operator:test",
                            reason: "x"
                        ),
                        now: Date(),
                        in: tx
                    )
                }
                try await watcher.runOutsideTransaction("SELECT pg_notify('myba_balance', 'marker:after-dry-run')")
                _ = try await database.ledger.consume(userId: "user_relay", idempotencyKey: "relay:1", actor: "test")
                let closer = Task {
                    try await Task.sleep(for: .seconds(3))
                    try await watcher.runOutsideTransaction("SELECT pg_notify('myba_balance', 'marker:nothing-more')")
                }
                defer { closer.cancel() }
                var payloads: [String] = []
                for try await notification in notifications {
                    payloads.append(notification.payload)
                    if payloads.count == 2 { break }
                }
                return payloads
            }
        }
        #expect(heard == ["marker:after-dry-run", "user_relay"])

        // What a server does with it: wakes its listeners for that account. The notification is
        // sent by hand here, so only the relay (not this process's own commit hook) can wake them.
        serverA.relayBalanceChanges()
        let subscription = try #require(BalanceChanges.shared.subscribe(userId: "user_far_away", limit: 5))
        defer { subscription.cancel() }
        let woken = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                var iterator = subscription.wakeUps.makeAsyncIterator()
                return await iterator.next() != nil
            }
            group.addTask {
                // The relay's LISTEN may not be in place yet: say it until it is heard.
                for _ in 0..<50 {
                    try? await watcher.runOutsideTransaction("SELECT pg_notify('myba_balance', 'user_far_away')")
                    try? await Task.sleep(for: .milliseconds(100))
                }
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(woken, "the relay did not wake the listener")
        await fixture.remove([serverA, serverB, watcher])
    }

    @Test(
        "20 anonymous sessions from one address at once over three servers: 10 made, 10 refused; one fingerprint on three servers at once: one session"
    )
    func anonymousLimitsAcrossServers() async throws {
        let fixture = try await PostgresFixture.make()
        let engines = (0..<3).map { _ in fixture.engine() }
        var servers: [AnonymousSessions] = []
        for engine in engines { servers.append(try await AppDatabase.open(postgres: engine).sessions) }
        let settings = AnonymousSettings(freeTokens: 3, sessionsPerHour: 10)
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for visitor in 0..<20 {
                let server = servers[visitor % servers.count]
                group.addTask {
                    do {
                        return try await server.start(fingerprint: "browser-\(visitor)", clientAddress: "203.0.113.7", settings: settings).created
                    } catch AnonymousSessionError.rateLimited {
                        return false
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 10, "\(outcomes)")
        // Another address is not held back by the first one's limit.
        #expect(try await servers[0].start(fingerprint: "browser-elsewhere", clientAddress: "198.51.100.9", settings: settings).created)

        let starts = try await withThrowingTaskGroup(of: AnonymousSessionStart.self) { group in
            for (index, server) in servers.enumerated() {
                group.addTask { try await server.start(fingerprint: "same-browser", clientAddress: "192.0.2.\(index + 1)", settings: settings) }
            }
            return try await group.reduce(into: [AnonymousSessionStart]()) { $0.append($1) }
        }
        #expect(Set(starts.map(\.session.id)).count == 1)
        #expect(starts.filter(\.created).count == 1)
        #expect(try await servers[2].session(id: starts[0].session.id)?.remaining == 3)
        await fixture.remove(engines)
    }

    @Test("MYBA_DATABASE: a path is SQLite; postgres:// and postgresql:// URLs with sslmode and PGPASSWORD are PostgreSQL; bad URLs name the problem")
    func databaseLocations() throws {
        #expect(try DatabaseLocation.parse("data/myba.sqlite", environment: [:]) == .sqlite(path: "data/myba.sqlite"))
        let full = try PostgresLocation(url: "postgresql://myba:s%40cret@db.internal:6543/ledger?sslmode=verify-full")
        #expect(full.host == "db.internal" && full.port == 6543 && full.username == "myba" && full.password == "s@cret")
        #expect(full.database == "ledger" && full.tls == .verify)
        #expect(!full.description.contains("s@cret") && !full.description.contains("cret"))
        let fromEnvironment = try PostgresLocation(url: "postgres://myba@127.0.0.1/ledger", environment: ["PGPASSWORD": "from-env"])
        #expect(fromEnvironment.password == "from-env" && fromEnvironment.port == 5432 && fromEnvironment.tls == .prefer)
        guard case .postgres(let parsed) = try DatabaseLocation.parse("postgres://u@h/d?sslmode=disable", environment: [:]) else {
            Issue.record("a postgres URL was not taken for PostgreSQL")
            return
        }
        #expect(parsed.tls == .disable)
        // Not yet for the server and the console: refused, and no file named `postgres:` made.
        #expect(throws: StorageError.self) { try AppDatabase.openFile(at: "postgres://u@127.0.0.1/d") }
        #expect(!FileManager.default.fileExists(atPath: "postgres:"))
        for (bad, problem) in [
            ("postgres://u@h", "names no database"), ("postgres://h/d", "names no user"), ("postgres://u@h/d?sslmode=maybe", "unknown sslmode"),
            ("postgres://u@h/d?application=x", "unsupported parameter"),
        ] {
            #expect(throws: SettingsError.self) { try PostgresLocation(url: bad) }
            do {
                _ = try PostgresLocation(url: bad)
            } catch {
                #expect("\(error)".contains(problem), "\(bad): \(error)")
            }
        }
    }

    @Test(
        "a purchase event and an operator's manual credit for it, on two servers at once, 20 times: the buyer has the tokens once, whichever lands first"
    )
    func purchaseAndManualCreditRace() async throws {
        let fixture = try await PostgresFixture.make()
        let engines = [fixture.engine(maxConnections: 4), fixture.engine(maxConnections: 4)]
        let webhookServer = try await AppDatabase.open(postgres: engines[0])
        let console = try await AppDatabase.open(postgres: engines[1])
        let context = OperatorContext(operatorName: "ops", commandLine: "tokens adjust --payment", reason: "buyer wrote in")
        for round in 0..<20 {
            let user = "user_race_\(round)"
            let session = "cs_race_\(round)"
            _ = try await webhookServer.ledger.openAccount(userId: user, email: nil, actor: "test")
            async let purchase = webhookServer.write { tx in
                try Payments.recordPurchase(
                    checkoutSessionId: session,
                    paymentIntentId: "pi_race_\(round)",
                    stripeCustomerId: nil,
                    userId: user,
                    planId: "starter",
                    tokens: 10,
                    amountTotal: 500,
                    currency: "usd",
                    actor: "webhook:stripe",
                    requestId: nil,
                    now: Date(),
                    in: tx
                )
            }
            async let credit: Bool = {
                do {
                    _ = try await console.payments.postManualCredit(userId: user, tokens: 10, checkoutSessionId: session, by: context)
                    return true
                } catch LedgerError.invalidPosting {
                    return false  // refused: the purchase was granted first
                }
            }()
            _ = try await purchase
            _ = try await credit
            #expect(try await webhookServer.ledger.balance(userId: user)?.tokens == welcomeGrantTokens + 10, "round \(round)")
        }
        #expect(try await webhookServer.ledger.verify().isClean)
        await fixture.remove(engines)
    }
}
