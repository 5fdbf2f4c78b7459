import Foundation
import GRDB
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("myba-admin commands")
struct AdminCommandTests {
    @Test("customer show prints the balance fields and the newest entries")
    func customerShow() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let result = try await fixture.admin(["customer", "show", "user_alice", "--db", fixture.path])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("tokens ") && $0.hasSuffix(" 54") })
        #expect(lines.contains { $0.hasPrefix("tokensPurchased") && $0.hasSuffix(" 50") })
        #expect(lines.contains { $0.hasPrefix("email") && $0.hasSuffix("alice@example.com") })
        #expect(lines.contains { $0.contains("consume") && $0.contains("-2") && $0.contains("gen:1") })
        #expect(!result.stdout.contains("\u{1B}["), "colour must not reach a pipe")
    }

    @Test("customer show --json carries the API's field names at the top level plus the entries")
    func customerShowJSON() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        // Global options work before the command as well as after it.
        let result = try await fixture.admin(["--json", "--db", fixture.path, "customer", "show", "user_alice", "--limit", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try jsonObject(result.stdout)
        #expect(object["userId"] as? String == "user_alice")
        #expect(object["tokens"] as? Int == 54)
        #expect(object["tokensUsed"] as? Int == 2)
        #expect(object["tokensPurchased"] as? Int == 50)
        #expect(object["tokensTransferred"] as? Int == 0)
        #expect((object["lastPurchase"] as? String)?.wholeMatch(of: /\d{4}-\d{2}-\d{2}/) != nil)
        #expect(object["transferDate"] is NSNull)
        let entries = try #require(object["entries"] as? [[String: Any]])
        #expect(entries.map { $0["kind"] as? String } == ["consume", "purchase"])
        #expect(entries.first?["requestId"] as? String == "req_2")
    }

    @Test("MYBA_DATABASE is used when --db is absent")
    func databaseFromEnvironment() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let result = try await fixture.admin(["customer", "show", "user_alice", "--json"], environment: ["MYBA_DATABASE": fixture.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try jsonObject(result.stdout)["tokens"] as? Int == 54)
    }

    @Test("an unknown user or a missing database fails with exit 1 and a message naming it")
    func failures() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let unknown = try await fixture.admin(["customer", "show", "user_nobody", "--db", fixture.path])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("user_nobody"))
        let unknownJSON = try await fixture.admin(["customer", "show", "user_nobody", "--db", fixture.path, "--json"])
        #expect(unknownJSON.status == 1)
        let error = try #require(try jsonObject(unknownJSON.stdout)["error"] as? [String: Any])
        #expect(error["code"] as? String == "unknown_customer")
        let missing = fixture.directory.file("typo.sqlite")
        let noDatabase = try await fixture.admin(["ledger", "verify", "--db", missing])
        #expect(noDatabase.status == 1)
        #expect(noDatabase.stderr.contains(missing))
        #expect(!FileManager.default.fileExists(atPath: missing), "a mistyped --db must not create an empty ledger")
    }

    @Test("usage errors exit 2; help exits 0")
    func usage() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        for arguments in [
            ["customer", "shw", "x"], ["customer", "show"], ["customer", "show", "u", "--limit", "0"], ["nonsense"], ["customer"],
            ["--bogus", "stats"],
        ] {
            let result = try await fixture.admin(arguments + ["--db", fixture.path])
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(!result.stderr.isEmpty)
        }
        let help = try await fixture.admin(["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("customer") && help.stdout.contains("ledger"))
        let subHelp = try await fixture.admin(["help", "customer", "show"])
        #expect(subHelp.status == 0)
        #expect(subHelp.stdout.contains("--limit"))
    }

    @Test("ledger verify exits 0 when clean and 3 listing every violation when not")
    func verify() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let clean = try await fixture.admin(["ledger", "verify", "--db", fixture.path])
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(clean.stdout.contains("clean"))

        _ = try await fixture.database.ledger.openAccount(userId: "user_bob", email: nil, actor: "api")
        try await fixture.database.writerForTests.write { db in
            try db.execute(sql: "UPDATE balances SET tokens = 999 WHERE user_id = 'user_alice'")
            try db.execute(sql: "UPDATE balances SET tokens_used = 7 WHERE user_id = 'user_bob'")
        }
        let dirty = try await fixture.admin(["ledger", "verify", "--db", fixture.path])
        #expect(dirty.status == 3)
        #expect(dirty.stdout.contains("user_alice") && dirty.stdout.contains("999"))
        #expect(dirty.stdout.contains("user_bob") && dirty.stdout.contains("tokens_used"))

        let json = try await fixture.admin(["ledger", "verify", "--db", fixture.path, "--json"])
        #expect(json.status == 3)
        let report = try jsonObject(json.stdout)
        let violations = try #require(report["violations"] as? [[String: Any]])
        #expect(violations.count == 2)
        #expect(
            violations.contains { $0["userId"] as? String == "user_alice" && $0["expected"] as? String == "54" && $0["actual"] as? String == "999" }
        )
    }

    @Test("the console reads the database while another connection holds a write transaction")
    func readsDuringServerWrite() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        // A writer (as the server would be) keeps a transaction open while the console reads.
        let other = try DatabaseQueue(path: fixture.path)
        let result = try await other.writeWithoutTransaction { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            try db.execute(sql: "UPDATE customers SET email = 'pending@example.com' WHERE user_id = 'user_alice'")
            let result = try BuiltProduct.runBlocking("myba-admin", ["customer", "show", "user_alice", "--db", fixture.path, "--json"])
            try db.execute(sql: "ROLLBACK")
            return result
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try jsonObject(result.stdout)["email"] as? String == "alice@example.com")
    }
}
