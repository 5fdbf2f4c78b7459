import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("myba-admin mutations, script mode and queries")
struct MutationCommandTests {
    func entryCount(_ fixture: AdminFixture) async throws -> Int {
        try await fixture.database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries")! }
    }

    func auditCount(_ fixture: AdminFixture) async throws -> Int {
        try await fixture.database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit_log")! }
    }

    @Test(
        "tokens adjust: without a terminal it needs --yes; a dry run and a refusal write nothing; applied, it writes the entry and the audit row together"
    )
    func adjust() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let before = try await entryCount(fixture)

        let refused = try await fixture.admin(["tokens", "adjust", "user_alice", "+5", "--reason", "goodwill", "--db", fixture.path])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("--yes"))
        #expect(refused.stdout.contains("tokens") && refused.stdout.contains("59"), "the plan is printed first: \(refused.stdout)")

        let dryRun = try await fixture.admin(["tokens", "adjust", "user_alice", "+5", "--reason", "goodwill", "--dry-run", "--db", fixture.path])
        #expect(dryRun.status == 0)
        #expect(dryRun.stdout.contains("dry run"))

        let noReason = try await fixture.admin(["tokens", "adjust", "user_alice", "+5", "--yes", "--db", fixture.path])
        #expect(noReason.status == 2)
        #expect(noReason.stderr.contains("--reason"))

        let negative = try await fixture.admin(["tokens", "adjust", "user_alice", "-100", "--reason", "typo", "--yes", "--db", fixture.path])
        #expect(negative.status == 1)
        #expect(negative.stderr.contains("below zero"))
        #expect(try await entryCount(fixture) == before)
        // The failed attempts changed nothing, and are audited with their error.
        let failedAudits = try await fixture.database.audit.records(limit: 5)
        #expect(failedAudits.count == 2)
        #expect(failedAudits.allSatisfy { $0.outcome.hasPrefix("failed: ") }, "\(failedAudits.map(\.outcome))")
        #expect(failedAudits.first?.reason == "typo" && failedAudits.first?.outcome.contains("below zero") == true)

        let applied = try await fixture.admin(
            ["tokens", "adjust", "alice@example.com", "-4", "--reason", "double grant", "--yes", "--json", "--db", fixture.path],
            environment: ["MYBA_OPERATOR": "ann"]
        )
        #expect(applied.status == 0, "\(applied.stderr)")
        let document = try jsonObject(applied.stdout)
        #expect((document["after"] as? [String: Any])?["tokens"] as? Int == 50)
        #expect((document["before"] as? [String: Any])?["tokens"] as? Int == 54)
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 50)
        let audit = try await fixture.database.audit.records(limit: 5)
        #expect(audit.count == 3)
        #expect(audit.first?.operatorName == "ann")
        #expect(audit.first?.reason == "double grant")
        #expect(audit.first?.userId == "user_alice")
        #expect(audit.first?.entryIds.count == 1)
        #expect(audit.first?.command.contains("tokens adjust alice@example.com -4") == true)
        #expect(try await fixture.database.ledger.verify().isClean)

        let listed = try await fixture.admin(["audit", "--json", "--operator", "ann", "--db", fixture.path])
        #expect(listed.status == 0)
        #expect(listed.stdout.contains("double grant"))
    }

    @Test("tokens refund keyed to a request credits once; the audit row masks secrets in the command line")
    func refundCredit() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        for _ in 0..<2 {
            let result = try await fixture.admin([
                "tokens", "refund", "user_alice", "2", "--request", "req_2", "--reason", "failed job sk_live_leakedkey123", "--yes", "--db",
                fixture.path,
            ])
            #expect(result.status == 0, "\(result.stderr)")
        }
        let entries = try await fixture.database.ledger.entries(userId: "user_alice", limit: 10)
        #expect(entries.filter { $0.kind == .refundCredit }.count == 1)
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 56)
        let audit = try await fixture.database.audit.records(limit: 5)
        #expect(audit.count == 2)
        #expect(audit.allSatisfy { !$0.command.contains("sk_live_leakedkey123") && $0.command.contains("***") })
        #expect(audit.contains { $0.outcome.hasPrefix("replayed") })
    }

    @Test("script mode runs one command per line, skips comments, stops at the first failure unless --continue-on-error")
    func scriptMode() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let script = """
            # nightly checks
            ledger verify
            customer show user_nobody
            tokens adjust user_alice +1 --reason scripted --yes
            """
        let stopped = try await fixture.admin(["--db", fixture.path], stdin: script)
        #expect(stopped.status == 1)
        #expect(stopped.stdout.contains("ledger clean"))
        #expect(stopped.stderr.contains("line 3"))
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 54)

        let continued = try await fixture.admin(["--db", fixture.path, "--continue-on-error"], stdin: script)
        #expect(continued.status == 1)
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == 55)

        let usage = try await fixture.admin(["--db", fixture.path], stdin: "customer shw x\nstats\n")
        #expect(usage.status == 2)
        #expect(!usage.stdout.contains("customers"))

        let quoted = try await fixture.admin(["--db", fixture.path], stdin: "tokens adjust user_alice +1 --reason \"two words\" --yes\n")
        #expect(quoted.status == 0, "\(quoted.stderr)")
        #expect(try await fixture.database.audit.records(limit: 1).first?.reason == "two words")
    }

    @Test("customer list, find and show by email or cus_ id; stats counts")
    func queries() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        _ = try await fixture.database.ledger.openAccount(userId: "user_bob", email: "bob@example.com", actor: "api")
        _ = try await fixture.database.stripeCustomers.link(userId: "user_bob", stripeCustomerId: "cus_bob")
        let list = try await fixture.admin(["customer", "list", "--sort", "tokens", "--json", "--db", fixture.path])
        #expect(list.status == 0)
        let customers = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(customers.map { $0["userId"] as? String } == ["user_alice", "user_bob"])
        let found = try await fixture.admin(["customer", "find", "BOB", "--db", fixture.path])
        #expect(found.stdout.contains("user_bob") && !found.stdout.contains("user_alice"))
        let byStripe = try await fixture.admin(["customer", "show", "cus_bob", "--json", "--db", fixture.path])
        #expect(try jsonObject(byStripe.stdout)["userId"] as? String == "user_bob")
        let stats = try await fixture.admin(["stats", "--json", "--db", fixture.path])
        let object = try jsonObject(stats.stdout)
        #expect(object["customers"] as? Int == 2)
        #expect(object["tokensOutstanding"] as? Int == 60)
        let ledger = try await fixture.admin(["ledger", "show", "user_alice", "--limit", "2", "--db", fixture.path])
        #expect(ledger.stdout.contains("consume") && ledger.stdout.contains("purchase") && !ledger.stdout.contains("welcome"))
    }

    @Test("sessions reap removes only untransferred stale sessions, dry run counts, overlapping runs never double count")
    func reap() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let settings = AnonymousSettings(sessionsPerHour: 100_000)
        var ids: [String] = []
        for index in 0..<300 {
            ids.append(
                try await fixture.database.sessions.start(fingerprint: "fp\(index)", clientAddress: "10.0.0.1", settings: settings).session.id
            )
        }
        _ = try await fixture.database.sessions.charge(sessionId: ids[0], idempotencyKey: "c0", requestId: nil)
        _ = try await fixture.database.sessions.transfer(sessionId: ids[1], to: "user_alice", actor: "api", requestId: nil)
        let recent = ids[299]
        try await fixture.database.writerForTests.write { db in
            try db.execute(sql: "UPDATE anonymous_sessions SET last_seen_at = '2026-01-01 00:00:00.000' WHERE id != ?", arguments: [recent])
        }
        let dry = try await fixture.admin(["sessions", "reap", "--older-than", "30d", "--dry-run", "--json", "--db", fixture.path])
        #expect(try jsonObject(dry.stdout)["removed"] as? Int == 298)
        // `stats` calls stale what the reap removes: one setting (MYBA_SESSION_TTL, else 30 days).
        let stats = try await fixture.admin(["stats", "--json", "--db", fixture.path])
        #expect(try jsonObject(stats.stdout)["staleAnonymousSessions"] as? Int == 298)
        let ttl = try await fixture.admin(["stats", "--json", "--db", fixture.path], environment: ["MYBA_SESSION_TTL": "5000d"])
        #expect(try jsonObject(ttl.stdout)["staleAnonymousSessions"] as? Int == 0)
        #expect(try await fixture.database.sessions.count() == 300)
        let bad = try await fixture.admin(["sessions", "reap", "--older-than", "30 days", "--db", fixture.path])
        #expect(bad.status == 2)
        // Off a terminal without --yes: refused, nothing removed. Under an hour: a usage error
        // unless --force.
        let unconfirmed = try await fixture.admin(["sessions", "reap", "--older-than", "30d", "--db", fixture.path])
        #expect(unconfirmed.status == 1)
        #expect(unconfirmed.stderr.contains("--yes"), "\(unconfirmed.stderr)")
        let tooRecent = try await fixture.admin(["sessions", "reap", "--older-than", "10m", "--yes", "--db", fixture.path])
        #expect(tooRecent.status == 2)
        #expect(tooRecent.stderr.contains("--force"), "\(tooRecent.stderr)")
        #expect(try await fixture.database.sessions.count() == 300)
        let forcedDry = try await fixture.admin(["sessions", "reap", "--older-than", "10m", "--force", "--dry-run", "--json", "--db", fixture.path])
        #expect(forcedDry.status == 0, "\(forcedDry.stderr)")

        // Two reaps at once, as overlapping cron runs would be.
        let results = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    try await fixture.admin(["sessions", "reap", "--older-than", "30d", "--yes", "--batch", "7", "--json", "--db", fixture.path])
                }
            }
            return try await group.reduce(into: [ProcessResult]()) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0.status == 0 })
        let removed = try results.map { try jsonObject($0.stdout)["removed"] as? Int ?? -1 }
        #expect(removed.reduce(0, +) == 298)
        #expect(try await fixture.database.sessions.count() == 2)
        #expect(try await fixture.database.ledger.verify().isClean)
    }
}

@Suite("myba-admin: operator keys")
struct OperatorKeyTests {
    @Test(
        "tokens adjust --key K stores operator:K, so a key typed as purchase:cs_… cannot take the purchase's own key; a retry with K changes nothing; a key with control characters is a usage error"
    )
    func operatorKeysHaveTheirOwnNamespace() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let applied = try await fixture.admin([
            "tokens", "adjust", "user_alice", "+2", "--key", "purchase:cs_test_ns", "--reason", "typo", "--yes", "--db", fixture.path,
        ])
        #expect(applied.status == 0, "\(applied.stderr)")
        let keys = try await fixture.database.writerForTests.read { db in
            try String.fetchAll(db, sql: "SELECT idempotency_key FROM ledger_entries WHERE idempotency_key LIKE '%cs_test_ns'")
        }
        #expect(keys == ["operator:purchase:cs_test_ns"])

        // The purchase this key names still posts with its own key (as its webhook does).
        let purchase = try await fixture.database.ledger.post(
            LedgerPosting(
                userId: "user_alice",
                kind: .purchase,
                delta: 10,
                idempotencyKey: "purchase:cs_test_ns",
                actor: "webhook",
                reason: "checkout.session.completed"
            )
        )
        #expect(!purchase.replayed)

        let retried = try await fixture.admin([
            "tokens", "adjust", "user_alice", "+2", "--key", "purchase:cs_test_ns", "--reason", "typo", "--yes", "--db", fixture.path,
        ])
        #expect(retried.status == 0, "\(retried.stderr)")
        #expect(retried.stdout.contains("nothing changed"))

        let control = try await fixture.admin([
            "tokens", "adjust", "user_alice", "+2", "--key", "bad\u{1B}[31mkey", "--reason", "typo", "--yes", "--db", fixture.path,
        ])
        #expect(control.status == 2)
        #expect(control.stderr.contains("--key"))
        #expect(try await fixture.database.ledger.verify().isClean)
    }
}

@Suite("myba-admin: crediting a generation by hand")
struct ManualCreditTests {
    @Test(
        "tokens refund --request refuses a generation still reserved (the sweep gives it back) and one already released, so no token is paid back twice; a completed one may be credited"
    )
    func refundChecksTheGeneration() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        try await fixture.database.writerForTests.write { db in
            let now = SQLTimestamp.string(Date())
            for (key, status, request) in [
                ("user_alice:a", "reserved", "req_reserved"), ("user_alice:b", "failed", "req_failed"), ("user_alice:c", "completed", "req_done"),
            ] {
                try db.execute(
                    sql:
                        "INSERT INTO generations (idempotency_key, payer_kind, payer_id, input_hash, status, attempts, request_id, created_at, updated_at) VALUES (?, 'account', 'user_alice', 'h', ?, 1, ?, ?, ?)",
                    arguments: [key, status, request, now, now]
                )
            }
        }
        let before = try await fixture.database.ledger.balance(userId: "user_alice")?.tokens
        let reserved = try await fixture.admin([
            "tokens", "refund", "user_alice", "1", "--request", "req_reserved", "--reason", "crash", "--yes", "--db", fixture.path,
        ])
        #expect(reserved.status == 1)
        #expect(reserved.stderr.contains("still holds its token"), "\(reserved.stderr)")
        let released = try await fixture.admin([
            "tokens", "refund", "user_alice", "1", "--request", "req_failed", "--reason", "crash", "--yes", "--db", fixture.path,
        ])
        #expect(released.status == 1)
        #expect(released.stderr.contains("already given back"), "\(released.stderr)")
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before)
        let done = try await fixture.admin([
            "tokens", "refund", "user_alice", "1", "--request", "req_done", "--reason", "bad ticket", "--yes", "--db", fixture.path,
        ])
        #expect(done.status == 0, "\(done.stderr)")
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before.map { $0 + 1 })
    }
}

@Suite("Databases that are not MyBA's")
struct ForeignDatabaseTests {
    @Test("myba-admin and myba-server refuse an existing SQLite file of another application and leave it exactly as it was")
    func foreignFileRefused() async throws {
        let directory = try TemporaryDirectory("myba-foreign")
        defer { directory.remove() }
        let path = directory.file("other.sqlite")
        let other = try DatabaseQueue(path: path)
        try await other.write { db in
            try db.execute(sql: "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
            try db.execute(sql: "INSERT INTO invoices (total) VALUES (42)")
        }
        try other.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: path))

        let console = try await BuiltProduct.run("myba-admin", ["customer", "list", "--db", path])
        #expect(console.status == 1)
        #expect(console.stderr.contains("is not a MyBA database"), "\(console.stderr)")
        let server = try await BuiltProduct.run(
            "myba-server",
            [],
            environment: ["PORT": "0", "MYBA_DATABASE": path, "MYBA_LOG_FILE": directory.file("myba.jsonl")],
            timeout: .seconds(30)
        )
        #expect(server.status == 1)
        #expect(server.stderr.contains("is not a MyBA database"), "\(server.stderr)")

        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        // MyBA's own files, old (made before the application id) and new, still open.
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        #expect(try await fixture.admin(["customer", "list", "--db", fixture.path]).status == 0)
        let applicationId = try await fixture.database.writerForTests.read { db in try Int.fetchOne(db, sql: "PRAGMA application_id") }
        #expect(applicationId == Int(AppDatabase.applicationId))
    }
}

@Suite("myba-admin: customers sharing an email")
struct AmbiguousCustomerTests {
    @Test(
        "an email shared by two customers names neither: customer show and tokens adjust are refused with the candidates listed and nothing changes; the user id still works"
    )
    func sharedEmail() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        for user in ["user_twin_a", "user_twin_b"] {
            _ = try await fixture.database.ledger.openAccount(userId: user, email: "Twin@Example.com", actor: "test")
        }
        let show = try await fixture.admin(["customer", "show", "twin@example.com", "--db", fixture.path])
        #expect(show.status == 1)
        #expect(
            show.stderr.contains("matches 2 customers") && show.stderr.contains("user_twin_a") && show.stderr.contains("user_twin_b"),
            "\(show.stderr)"
        )
        let adjust = try await fixture.admin(["tokens", "adjust", "twin@example.com", "+5", "--reason", "goodwill", "--yes", "--db", fixture.path])
        #expect(adjust.status == 1)
        #expect(try await fixture.database.ledger.balance(userId: "user_twin_a")?.tokens == 6)
        #expect(try await fixture.database.ledger.balance(userId: "user_twin_b")?.tokens == 6)
        #expect(
            try await fixture.admin(["tokens", "adjust", "user_twin_b", "+5", "--reason", "goodwill", "--yes", "--db", fixture.path]).status == 0
        )
        #expect(try await fixture.database.ledger.balance(userId: "user_twin_b")?.tokens == 11)
    }
}

@Suite("myba-admin plans")
struct PlansCommandTests {
    @Test(
        "plans set shows what changes, needs --reason and --yes off a terminal, refuses a bad file naming the problem; plans show names the version"
    )
    func setAndShow() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let good = fixture.directory.file("plans.json")
        try #"{"plans":[{"id":"starter","name":"Starter","tokens":12,"amount":500,"currency":"usd"}],"firstPurchaseDiscountPercent":20}"#
            .write(toFile: good, atomically: true, encoding: .utf8)
        let bad = fixture.directory.file("bad.json")
        try #"{"plans":[{"id":"starter","name":"Starter","tokens":-1,"amount":500,"currency":"usd"}],"firstPurchaseDiscountPercent":20}"#
            .write(toFile: bad, atomically: true, encoding: .utf8)

        let shown = try await fixture.admin(["plans", "show", "--db", fixture.path])
        #expect(shown.status == 0 && shown.stdout.contains("plans version 0 (built-in)"), "\(shown.stdout)")
        #expect(shown.stdout.contains("5.00 USD") && shown.stdout.contains("4.00 USD"), "\(shown.stdout)")

        #expect(try await fixture.admin(["plans", "set", "--from", good, "--db", fixture.path]).status == 2)
        let dry = try await fixture.admin(["plans", "set", "--from", good, "--reason", "more tokens", "--dry-run", "--db", fixture.path])
        #expect(dry.status == 0 && dry.stdout.contains("dry run: nothing changed"), "\(dry.stdout)")
        #expect(dry.stdout.contains("Starter: 12 tokens for 5.00 USD *"), "\(dry.stdout)")
        #expect(dry.stdout.contains("professional") && dry.stdout.contains("no longer sold"), "\(dry.stdout)")
        let unconfirmed = try await fixture.admin(["plans", "set", "--from", good, "--reason", "more tokens", "--db", fixture.path])
        #expect(unconfirmed.status == 1 && unconfirmed.stderr.contains("--yes"))
        let refused = try await fixture.admin(["plans", "set", "--from", bad, "--reason", "typo", "--yes", "--db", fixture.path])
        #expect(refused.status == 1 && refused.stderr.contains("tokens must be between 1 and 1000000"), "\(refused.stderr)")
        #expect(try await fixture.database.plans.installed().version == 0)

        let set = try await fixture.admin(["plans", "set", "--from", good, "--reason", "more tokens", "--yes", "--db", fixture.path])
        #expect(set.status == 0 && set.stdout.contains("installed plans version 1 (console"), "\(set.stdout)\(set.stderr)")
        #expect(try await fixture.database.plans.installed().catalog.plan(id: "starter")?.tokens == 12)
        let same = try await fixture.admin(["plans", "set", "--from", good, "--reason", "again", "--yes", "--db", fixture.path])
        #expect(same.status == 1 && same.stderr.contains("nothing to install"), "\(same.stderr)")
        let history = try await fixture.admin(["plans", "show", "--history", "5", "--json", "--db", fixture.path])
        let document = try jsonObject(history.stdout)
        #expect((document["current"] as? [String: Any])?["version"] as? Int == 1)
        #expect((document["history"] as? [[String: Any]])?.first?["installedBy"] as? String != nil)
        #expect(try await fixture.database.audit.records(limit: 5).contains { $0.reason == "more tokens" })
    }
}

@Suite("Audit rows and their ledger entries")
struct AuditTransactionTests {
    @Test("the audit row is written in the ledger entry's transaction: when the audit insert fails, the adjustment is not applied either")
    func auditAndEntryCommitTogether() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let before = try #require(try await fixture.database.ledger.balance(userId: "user_alice"))
        let entriesBefore = try await fixture.database.ledger.entries(userId: "user_alice", limit: 100).count
        // The audit log refuses every row (a full disk, a broken table, as far as the command knows).
        try await fixture.database.writeRawForTests { db in
            try db.execute(sql: "CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END")
        }
        let refused = try await fixture.admin(["tokens", "adjust", "user_alice", "+5", "--reason", "goodwill", "--yes", "--db", fixture.path])
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        #expect(try await fixture.database.ledger.balance(userId: "user_alice") == before)
        #expect(try await fixture.database.ledger.entries(userId: "user_alice", limit: 100).count == entriesBefore)
        #expect(try await fixture.database.ledger.verify().isClean)

        try await fixture.database.writeRawForTests { db in try db.execute(sql: "DROP TRIGGER audit_refuses") }
        let applied = try await fixture.admin(["tokens", "adjust", "user_alice", "+5", "--reason", "goodwill", "--yes", "--db", fixture.path])
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try await fixture.database.ledger.balance(userId: "user_alice")?.tokens == before.tokens + 5)
        let audit = try #require(try await fixture.database.audit.records(limit: 1).first)
        let entry = try #require(try await fixture.database.ledger.entries(userId: "user_alice", limit: 1).first)
        #expect(audit.entryIds == [entry.id].compactMap { $0 }, "the audit row names the entry it wrote")
    }
}
