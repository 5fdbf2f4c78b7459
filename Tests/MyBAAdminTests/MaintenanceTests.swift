import Foundation
import GRDB
import Logging
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

/// The maintenance half of the console (issue 18), on the real binaries.
@Suite("myba-admin db and webhooks prune")
struct MaintenanceTests {
    @Test(
        "a backup taken while a writer posts entries restores to a database where ledger verify is clean and every entry acknowledged before the backup began is present"
    )
    func backupUnderWritesRestores() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        let acknowledged = Mutex<[Int64]>([])
        let writing = Atomic<Bool>(true)
        // A writer posting entries the whole time, as a busy server would.
        let writer = Task {
            var count = 0
            while writing.load(ordering: .relaxed) {
                count += 1
                let result = try await database.ledger.post(
                    LedgerPosting(userId: "user_alice", kind: .adjust, delta: 1, idempotencyKey: "busy:\(count)", actor: "test", reason: "load")
                )
                if let id = result.entry.id { acknowledged.withLock { $0.append(id) } }
            }
            return count
        }
        try await Task.sleep(for: .milliseconds(200))
        let before = acknowledged.withLock { $0 }
        let backupPath = fixture.directory.file("backups/myba-1.sqlite")
        try FileManager.default.createDirectory(atPath: fixture.directory.file("backups"), withIntermediateDirectories: true)
        let backup = try await fixture.admin(["db", "backup", "--to", backupPath, "--json", "--db", fixture.path])
        writing.store(false, ordering: .relaxed)
        let posted = try await writer.value
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(posted > before.count)
        let manifest = try jsonObject(backup.stdout)
        #expect((manifest["ledgerEntries"] as? Int ?? 0) >= before.count)
        // The schema is named by the newest migration in shipping order (not by sorting names).
        #expect(manifest["schemaVersion"] as? String == AppDatabase.migrator.migrations.last, "\(manifest)")
        #expect(FileManager.default.fileExists(atPath: backupPath + ".manifest.json"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.directory.file("backups")).allSatisfy { !$0.contains("partial") })
        // Never over an existing file.
        let again = try await fixture.admin(["db", "backup", "--to", backupPath, "--db", fixture.path])
        #expect(again.status == 1)

        let target = fixture.directory.file("restored/myba.sqlite")
        try FileManager.default.createDirectory(atPath: fixture.directory.file("restored"), withIntermediateDirectories: true)
        let restored = try await fixture.admin(["db", "restore", "--from", backupPath, "--yes", "--reason", "drill", "--db", target])
        #expect(restored.status == 0, "\(restored.stderr)")
        let copy = try AppDatabase.openFile(at: target, options: .init(createIfMissing: false))
        #expect(try await copy.ledger.verify().isClean)
        let present = try await copy.writerForTests.read { db in try Set(Int64.fetchAll(db, sql: "SELECT id FROM ledger_entries")) }
        #expect(Set(before).isSubset(of: present), "\(Set(before).subtracting(present).count) acknowledged entries missing")
        let check = try await fixture.admin(["db", "check", "--db", target])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let status = try await fixture.admin(["db", "status", "--json", "--db", target])
        #expect(((try jsonObject(status.stdout))["migrationsPending"] as? [String])?.isEmpty == true)
    }

    @Test(
        "a copy with bytes flipped inside a table page makes db check exit 3 naming the damage; a bad backup is refused by restore, which changes nothing"
    )
    func corruptionFound() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        for index in 0..<400 {
            _ = try await fixture.database.ledger.post(
                LedgerPosting(userId: "user_alice", kind: .adjust, delta: 1, idempotencyKey: "fill:\(index)", actor: "test", reason: "a few pages")
            )
        }
        let backupPath = fixture.directory.file("good.sqlite")
        #expect(try await fixture.admin(["db", "backup", "--to", backupPath, "--db", fixture.path]).status == 0)
        let (pageSize, rootPage) = try await fixture.database.writerForTests.read { db in
            (
                try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 4096,
                try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = 'ledger_entries'") ?? 2
            )
        }
        let damaged = fixture.directory.file("damaged.sqlite")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: backupPath))
        let start = (rootPage - 1) * pageSize + 12
        for offset in start..<(start + 64) where offset < bytes.count { bytes[offset] = 0xFF }
        try bytes.write(to: URL(fileURLWithPath: damaged))
        let check = try await fixture.admin(["db", "check", "--db", damaged])
        #expect(check.status == 3, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("integrity"), "\(check.stdout)")

        let entriesBefore = try await fixture.database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries") }
        let refused = try await fixture.admin(["db", "restore", "--from", damaged, "--yes", "--reason", "drill", "--db", fixture.path])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("not a usable MyBA backup"), "\(refused.stderr)")
        #expect(
            try await fixture.database.writerForTests.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM ledger_entries") } == entriesBefore
        )
    }

    @Test("restore refuses while a myba-server runs on the database, and works once it has stopped")
    func restoreRefusedUnderServer() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let backupPath = fixture.directory.file("backup.sqlite")
        #expect(try await fixture.admin(["db", "backup", "--to", backupPath, "--db", fixture.path]).status == 0)
        let server = try ChildProcess.start(
            BuiltProduct.path("myba-server"),
            [],
            environment: [
                "PORT": "0", "MYBA_DATABASE": fixture.path, "MYBA_LOG_FILE": fixture.directory.file("server.jsonl"), "PATH": "/usr/bin:/bin",
            ]
        )
        defer { server.send(SIGKILL) }
        _ = try await server.waitForOutput("server listening")
        let refused = try await fixture.admin(["db", "restore", "--from", backupPath, "--yes", "--reason", "drill", "--db", fixture.path])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("myba-server is running"), "\(refused.stderr)")
        server.send(SIGTERM)
        _ = try await server.wait(timeout: .seconds(30))
        let restored = try await fixture.admin(["db", "restore", "--from", backupPath, "--yes", "--reason", "drill", "--db", fixture.path])
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(restored.stdout.contains("before-restore"))
    }

    @Test(
        "webhooks prune drops old bodies of processed events, keeps failed ones whole, and a redelivery of a pruned event is still recognised and changes nothing"
    )
    func pruneKeepsDedupe() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        let intake = WebhookIntake(database: database, processor: WebhookProcessor(database: database))
        let purchase =
            #"{"id":"evt_old_buy","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_old","object":"checkout.session","amount_total":500,"currency":"usd","metadata":{"user_id":"user_alice","plan_id":"starter","tokens":"10"},"payment_intent":"pi_old","payment_status":"paid","status":"complete"}}}"#
        let delivery = WebhookDelivery(
            source: .stripe,
            eventId: "evt_old_buy",
            type: "checkout.session.completed",
            body: purchase,
            headers: ["stripe-signature": "t=1,v1=x"],
            requestId: "req_old"
        )
        #expect(try await intake.receive(delivery, logger: Logger(label: "test")).status == .processed)
        let refund =
            #"{"id":"evt_old_refund","object":"event","type":"charge.refunded","data":{"object":{"id":"ch_x","amount":500,"amount_refunded":500,"payment_intent":"pi_unknown","metadata":{"user_id":"user_alice"}}}}"#
        _ = try await intake.receive(
            WebhookDelivery(source: .stripe, eventId: "evt_old_refund", type: "charge.refunded", body: refund, headers: [:], requestId: nil),
            logger: Logger(label: "test")
        )
        try await database.writerForTests.write { db in try db.execute(sql: "UPDATE webhook_events SET received_at = '2026-01-01 00:00:00.000'") }
        let balance = try #require(try await database.ledger.balance(userId: "user_alice")).tokens

        #expect(try await fixture.admin(["webhooks", "prune", "--older-than", "2h", "--yes", "--reason", "r", "--db", fixture.path]).status == 2)
        let dry = try await fixture.admin(["webhooks", "prune", "--older-than", "30d", "--dry-run", "--reason", "retention", "--db", fixture.path])
        #expect(dry.stdout.contains("1 processed or ignored"), "\(dry.stdout)")
        let pruned = try await fixture.admin([
            "webhooks", "prune", "--older-than", "30d", "--yes", "--reason", "retention", "--json", "--db", fixture.path,
        ])
        #expect(pruned.status == 0, "\(pruned.stderr)")
        #expect((try jsonObject(pruned.stdout))["pruned"] as? Int == 1)
        let kept = try #require(try await database.inbox.event(source: .stripe, eventId: "evt_old_buy"))
        #expect(kept.body.isEmpty && kept.status == .processed && kept.outcome?.contains("granted") == true)
        #expect(try await database.inbox.event(source: .stripe, eventId: "evt_old_refund")?.body.isEmpty == false)

        let redelivered = try await intake.receive(delivery, logger: Logger(label: "test"))
        #expect(redelivered.duplicate)
        #expect(try await database.ledger.balance(userId: "user_alice")?.tokens == balance)
        #expect(try await database.ledger.verify().isClean)
        #expect(try await database.audit.records(limit: 1).first?.outcome.contains("pruned the bodies of 1") == true)
    }
}

@Suite("myba-admin customer forget")
struct CustomerForgetTests {
    @Test("forget removes the email from every table (webhook bodies and audit command lines included), keeps the ledger verifying, and is audited")
    func forgetErasesTheEmail() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        let clerk =
            #"{"type":"user.updated","data":{"id":"user_alice","primary_email_address_id":"idn_1","email_addresses":[{"id":"idn_1","email_address":"alice@example.com"}]}}"#
        _ = try await database.inbox.store(
            WebhookDelivery(
                source: .clerk,
                eventId: "msg_alice",
                type: "user.updated",
                body: clerk,
                headers: ["svix-id": "msg_alice"],
                requestId: nil
            )
        )
        #expect(
            try await fixture.admin(["tokens", "adjust", "alice@example.com", "+1", "--reason", "goodwill", "--yes", "--db", fixture.path]).status
                == 0
        )
        let before = try #require(try await database.ledger.balance(userId: "user_alice"))

        let refused = try await fixture.admin(["customer", "forget", "alice@example.com", "--reason", "GDPR request 17", "--db", fixture.path])
        #expect(refused.status == 1)
        let forgotten = try await fixture.admin([
            "customer", "forget", "alice@example.com", "--reason", "GDPR request 17", "--yes", "--json", "--db", fixture.path,
        ])
        #expect(forgotten.status == 0, "\(forgotten.stderr)")
        #expect((try jsonObject(forgotten.stdout))["webhookBodiesRemoved"] as? Int == 1)

        // No text column of any table still holds the address.
        let found = try await database.writerForTests.read { db -> [String] in
            var found: [String] = []
            for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'") {
                for column in try Row.fetchAll(db, sql: "PRAGMA table_info(\"\(table)\")").map({ $0["name"] as String }) {
                    let hits =
                        try Int.fetchOne(
                            db,
                            sql: "SELECT COUNT(*) FROM \"\(table)\" WHERE instr(CAST(\"\(column)\" AS TEXT), 'alice@example.com') > 0"
                        ) ?? 0
                    if hits > 0 { found.append("\(table).\(column)") }
                }
            }
            return found
        }
        #expect(found.isEmpty, "the email is still in \(found)")
        let after = try #require(try await database.ledger.balance(userId: "user_alice"))
        #expect(after.tokens == before.tokens && after.tokensPurchased == before.tokensPurchased)
        #expect(try await database.ledger.verify().isClean)
        #expect(try await database.audit.records(limit: 1).first?.outcome.hasPrefix("forgot user_alice") == true)
    }
}
