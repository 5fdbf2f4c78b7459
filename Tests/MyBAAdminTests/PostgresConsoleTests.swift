import Foundation
import MyBATestSupport
import Testing

@testable import MyBAOps

/// `myba-admin` on PostgreSQL: the move from SQLite (`db copy`) and the commands an operator
/// runs, on the real binary against the test cluster.
@Suite("Console on PostgreSQL", .serialized, .enabled(if: PostgresFixture.isAvailable))
struct PostgresConsoleTests {
    @Test(
        "db copy moves an SQLite deployment into an empty PostgreSQL database: a dry run changes nothing, the copy equals the source (entries, ids, balances, audit), a second copy is refused, new entries continue the ids"
    )
    func copyFromSQLite() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let postgres = try await PostgresFixture.make()
        defer { Task { await postgres.remove() } }
        // Something of every kind an operator leaves: an adjustment with its audit record, a session.
        #expect(try await fixture.admin(["tokens", "adjust", "user_alice", "+3", "--reason", "goodwill", "--yes", "--db", fixture.path]).status == 0)
        _ = try await fixture.database.sessions.start(fingerprint: "fp-copy", clientAddress: "203.0.113.9", settings: AnonymousSettings())

        let dryRun = try await fixture.admin(["db", "copy", "--from", fixture.path, "--to", postgres.url, "--reason", "move", "--dry-run"])
        #expect(dryRun.status == 0, "\(dryRun.stderr)")
        #expect(dryRun.stdout.contains("target: empty") && dryRun.stdout.contains("dry run: nothing changed"), "\(dryRun.stdout)")
        let target = try await postgres.database(maxConnections: 2)
        defer { Task { await target.close() } }
        #expect(try await target.ledger.entries(userId: "user_alice", limit: 10).isEmpty)

        let copy = try await fixture.admin(["db", "copy", "--from", fixture.path, "--to", postgres.url, "--reason", "move", "--yes"])
        #expect(copy.status == 0, "\(copy.stderr)")
        #expect(copy.stdout.contains("copied") && copy.stdout.contains("ledger verify on the copy: clean"), "\(copy.stdout)")
        let sourceEntries = try await fixture.database.ledger.entries(userId: "user_alice", limit: 100)
        let copiedEntries = try await target.ledger.entries(userId: "user_alice", limit: 100)
        #expect(copiedEntries == sourceEntries)
        #expect(try await target.ledger.balance(userId: "user_alice") == fixture.database.ledger.balance(userId: "user_alice"))
        #expect(try await target.ledger.verify().isClean)
        #expect(try await target.sessions.count() == 1)
        let audit = try await target.audit.records(limit: 10, userId: nil, operatorName: nil)
        #expect(audit.first?.outcome.hasPrefix("copied 4 ledger entries") == true, "\(audit.map(\.outcome))")
        #expect(audit.contains { $0.command.contains("tokens adjust user_alice +3") })

        let again = try await fixture.admin(["db", "copy", "--from", fixture.path, "--to", postgres.url, "--reason", "move", "--yes"])
        #expect(again.status != 0)
        #expect(again.stderr.contains("target is not empty"), "\(again.stderr)")
        #expect(try await target.ledger.entries(userId: "user_alice", limit: 100) == sourceEntries)

        // The sequences continue after the copied ids.
        let next = try await target.ledger.consume(userId: "user_alice", amount: 1, idempotencyKey: "after-copy", actor: "api")
        #expect(next.entry.id == (sourceEntries.compactMap(\.id).max() ?? 0) + 1)

        // A URL with a password: masked in the audit log, never printed.
        let masked = try await fixture.admin([
            "db", "copy", "--from", fixture.path, "--to", postgres.url.replacingOccurrences(of: "postgres@", with: "postgres:hunter22@"), "--reason",
            "again", "--yes",
        ])
        #expect(!masked.stdout.contains("hunter22") && !masked.stderr.contains("hunter22"))
    }

    @Test(
        "the console's commands on a PostgreSQL URL: customer show, tokens adjust (audited), ledger verify, stats, db status, db check, sessions reap, webhooks list, audit"
    )
    func commandsOnPostgres() async throws {
        let postgres = try await PostgresFixture.make()
        defer { Task { await postgres.remove() } }
        let database = try await postgres.database(maxConnections: 2)
        defer { Task { await database.close() } }
        _ = try await database.ledger.openAccount(userId: "user_pg", email: "pg@example.com", actor: "api")
        _ = try await database.sessions.start(fingerprint: "fp-old", clientAddress: "203.0.113.10", settings: AnonymousSettings())
        func admin(_ arguments: [String]) async throws -> ProcessResult {
            try await BuiltProduct.run("myba-admin", arguments + ["--db", postgres.url])
        }

        let show = try await admin(["customer", "show", "pg@example.com", "--json"])
        #expect(show.status == 0, "\(show.stderr)")
        #expect(try jsonObject(show.stdout)["tokens"] as? Int == welcomeGrantTokens)
        let adjust = try await admin(["tokens", "adjust", "user_pg", "+4", "--reason", "goodwill", "--yes"])
        #expect(adjust.status == 0, "\(adjust.stderr)")
        #expect(try await database.ledger.balance(userId: "user_pg")?.tokens == welcomeGrantTokens + 4)
        let audit = try await admin(["audit", "--json"])
        #expect(audit.status == 0 && audit.stdout.contains("tokens adjust user_pg +4"), "\(audit.stdout)\(audit.stderr)")
        #expect(try await admin(["ledger", "verify"]).status == 0)
        let stats = try await admin(["stats", "--json"])
        #expect(stats.status == 0, "\(stats.stderr)")
        #expect(try jsonObject(stats.stdout)["customers"] as? Int == 1)
        let status = try await admin(["db", "status"])
        #expect(status.status == 0 && status.stdout.contains("PostgreSQL") && status.stdout.contains("none"), "\(status.stdout)")
        let check = try await admin(["db", "check"])
        #expect(check.status == 0 && check.stdout.contains("database clean"), "\(check.stdout)\(check.stderr)")
        #expect(try await admin(["webhooks", "list"]).status == 0)
        try await Task.sleep(for: .milliseconds(1100))
        let reap = try await admin(["sessions", "reap", "--older-than", "1s", "--force", "--yes"])
        #expect(reap.status == 0, "\(reap.stdout)\(reap.stderr)")
        #expect(try await database.sessions.count() == 0)
        // The rest of the console's reading and planning commands answer on PostgreSQL too.
        for arguments in [
            ["customer", "list"], ["customer", "find", "pg@"], ["ledger", "show", "user_pg"], ["timeline", "user_pg"], ["plans", "show"],
            ["webhooks", "prune", "--older-than", "30d", "--reason", "test", "--dry-run"],
            ["customer", "forget", "user_pg", "--reason", "test", "--dry-run"],
            ["tokens", "refund", "user_pg", "1", "--reason", "test", "--dry-run"],
        ] {
            let result = try await admin(arguments)
            #expect(result.status == 0, "\(arguments.joined(separator: " ")): \(result.stdout)\(result.stderr)")
        }
        #expect(try await database.ledger.balance(userId: "user_pg")?.tokens == welcomeGrantTokens + 4, "a dry run changed the balance")
        // A backup on PostgreSQL is pg_dump's, and says so; it never overwrites a file.
        let directory = try TemporaryDirectory("myba-pg-backup")
        defer { directory.remove() }
        let backup = try await admin(["db", "backup", "--to", directory.file("myba.dump")])
        #expect(backup.status == 0 && backup.stdout.contains("pg_dump"), "\(backup.stdout)\(backup.stderr)")
        let dump = try Data(contentsOf: URL(fileURLWithPath: directory.file("myba.dump")))
        #expect(dump.starts(with: Data("PGDMP".utf8)), "not a pg_dump custom-format file")
        let manifest = try jsonObject(String(contentsOfFile: directory.file("myba.dump.manifest.json"), encoding: .utf8))
        #expect(manifest["ledgerEntries"] as? Int == 2)
        let again = try await admin(["db", "backup", "--to", directory.file("myba.dump")])
        #expect(again.status != 0 && again.stderr.contains("exists"), "\(again.stderr)")
        let restore = try await admin(["db", "restore", "--from", "/nonexistent", "--reason", "x", "--yes"])
        #expect(restore.status != 0 && restore.stderr.contains("pg_restore"), "\(restore.stderr)")
    }

    @Test(
        "the REPL on a PostgreSQL URL with a password: the banner and prompt never show the password, Tab completes a user id from the first line, commands run"
    )
    func replOnPostgres() async throws {
        let postgres = try await PostgresFixture.make()
        defer { Task { await postgres.remove() } }
        let database = try await postgres.database(maxConnections: 2)
        defer { Task { await database.close() } }
        _ = try await database.ledger.openAccount(userId: "user_repl", email: "repl@example.com", actor: "api")
        let directory = try TemporaryDirectory("myba-pg-repl")
        defer { directory.remove() }
        // Trust authentication ignores the password; the console must still never show it.
        let url = postgres.url.replacingOccurrences(of: "postgres@", with: "postgres:s3cret-pw@")
        let terminal = TerminalSession()
        try await terminal.start("env MYBA_ADMIN_HISTORY=\(directory.file("history")) NO_COLOR=1 \(BuiltProduct.path("myba-admin")) --db \(url)")
        defer { terminal.stop() }
        _ = try await terminal.waitFor("[development] \(postgres.location.database)>")
        try await terminal.type("customer show user_re", "Tab")
        _ = try await terminal.waitFor("customer show user_repl")
        try await terminal.type("Enter")
        _ = try await terminal.waitFor("repl@example.com")
        let screen = try await terminal.screen(escapes: false)
        #expect(screen.contains("on postgres://postgres@127.0.0.1:"), "\(screen)")
        #expect(!screen.contains("s3cret-pw"), "the password reached the terminal: \(screen)")
        try await terminal.type("exit", "Enter")
    }
}
