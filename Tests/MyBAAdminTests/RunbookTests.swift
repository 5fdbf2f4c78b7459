import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import StripeEmulator
import Testing

@testable import MyBAOps

/// Runbooks are read at 3 a.m.: every command they show must exist as written.
@Suite("Runbooks")
struct RunbookTests {
    /// `myba-admin …` written in prose as code (`` `myba-admin webhooks show …` ``), outside the
    /// `sh` blocks: commands the operator is told to run that the suite would never run.
    static func inlineCommands(in text: String) -> [String] {
        var inCode = false
        var found: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") {
                inCode.toggle()
                continue
            }
            guard !inCode else { continue }
            for match in line.matches(of: /`myba-admin ([a-z]+ [a-z][^`]*)`/) {
                let words = match.output.1.split(separator: " ")
                // A bare command name (`myba-admin webhooks replay --failed` in passing) names a
                // command; one with a concrete argument is an instruction to run it.
                if words.count > 2 || words.contains(where: { $0.contains("_") || $0.contains("@") }) { found.append(String(match.output.1)) }
            }
        }
        return found
    }

    /// Commands that change data run as dry runs: the runbook shows them, the test must not
    /// apply them twice over.
    static func asDryRun(_ command: String) -> String {
        let changesData =
            [
                "tokens ", "payment refund", "sessions reap", "import ", "webhooks replay", "webhooks recover", "webhooks prune", "db restore",
                "plans set",
            ].contains {
                command.hasPrefix($0)
            }
            || (command.hasPrefix("reconcile") && command.contains("--fix"))
        return changesData && !command.contains("--dry-run") ? command + " --dry-run" : command
    }

    /// A runbook fix as an operator applies it off a terminal: as written, with `--yes`.
    static func asApplied(_ command: String) -> String {
        let changes = asDryRun(command) != command
        return changes && !command.contains("--dry-run") && !command.contains("--yes") ? command + " --yes" : command
    }

    /// What a fix applied for real must answer in the runbooks' scenario, where it differs from
    /// "exit 0": the refusals and outputs the runbooks name.
    /// Each entry applies to the `occurrence`-th command of its file that starts with `prefix`.
    static let appliedExpectations: [(file: String, prefix: String, occurrence: Int, status: Int32, phrase: String?)] = [
        // The scenario's failed purchase names a plan the catalog lacks: replays before the fix
        // still fail, and say why; after `plans set` the replay grants it.
        ("purchase-without-tokens.md", "webhooks replay evt_1Q2w3e", 1, 1, "plan \"team\" is not in plans version 0 (built-in)"),
        ("purchase-without-tokens.md", "webhooks replay --failed", 1, 1, "still fail"),
        ("purchase-without-tokens.md", "plans set", 1, 0, "installed plans version 1"),
        ("purchase-without-tokens.md", "webhooks replay evt_1Q2w3e", 2, 0, "plans used: version 1 (console"),
        // The payment's purchase is in the ledger: the last resort is refused, dry run included.
        ("purchase-without-tokens.md", "tokens adjust user_2abc +10 --payment cs_test_a1", 1, 1, "already granted by its event"),
        ("purchase-without-tokens.md", "tokens adjust user_2abc +10 --payment cs_test_a1", 2, 1, "already granted by its event"),
        ("customer-dispute-and-refund.md", "webhooks replay --failed", 1, 1, "still fail"),
        // The duplicate payment of the scenario is unknown to this Stripe: Stripe refuses, nothing changes.
        (
            "tokens-granted-twice.md", "payment refund cs_test_dup --stripe-reason duplicate --reason \"duplicate charge, ticket 4712\"", 2, 1,
            "pi_test_dup"
        ),
        ("session-reaping.md", "sessions reap --older-than 30d --dry-run --json", 1, 0, "\"dryRun\""),
    ]

    @Test("every runbook is in the index, and every myba-admin line in it runs against a prepared database, log and Stripe emulator")
    func commandsRun() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Runbooks.directory.path).filter { $0.hasSuffix(".md") && $0 != "README.md" }
            .sorted()
        #expect(files.count >= 7)
        let index = try String(contentsOf: Runbooks.directory.appendingPathComponent("README.md"), encoding: .utf8)
        var all: [String] = []
        var byFile: [(file: String, commands: [String])] = []
        for file in files {
            #expect(index.contains("(\(file))"), "\(file) is not linked from runbooks/README.md")
            let text = try String(contentsOf: Runbooks.directory.appendingPathComponent(file), encoding: .utf8)
            let commands = Runbooks.commands(in: text)
            // Every command an operator is told to run is in an `sh` block, so this suite runs it.
            let inline = Self.inlineCommands(in: text)
            #expect(inline.isEmpty, "\(file) names myba-admin commands outside an sh block: \(inline)")
            #expect(!commands.isEmpty, "\(file) shows no myba-admin command")
            all += commands
            byFile.append((file, commands))
        }

        // The scenario the runbooks' examples name.
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        _ = try await database.ledger.openAccount(userId: "user_2abc", email: "ada@example.com", actor: "api", requestId: "req_1a2b3c")
        _ = try await database.write { tx in
            for (session, intent, tokens, amount) in [("cs_test_a1", "pi_test_a1", 10, 400), ("cs_test_dup", "pi_test_dup", 10, 500)] {
                _ = try Payments.recordPurchase(
                    checkoutSessionId: session,
                    paymentIntentId: intent,
                    stripeCustomerId: nil,
                    userId: "user_2abc",
                    planId: "starter",
                    tokens: tokens,
                    amountTotal: amount,
                    currency: "usd",
                    actor: "test",
                    requestId: nil,
                    now: Date(),
                    in: tx
                )
            }
        }
        // A purchase event that failed (its session names no plan or token count), as in
        // purchase-without-tokens.md.
        let failing =
            #"{"id":"evt_1Q2w3e","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_test_nofund","object":"checkout.session","amount_total":500,"currency":"usd","metadata":{"user_id":"user_2abc","plan_id":"team"},"payment_intent":"pi_test_nofund","payment_status":"paid","status":"complete"}}}"#
        _ = try await database.inbox.store(
            WebhookDelivery(
                source: .stripe,
                eventId: "evt_1Q2w3e",
                type: "checkout.session.completed",
                body: failing,
                headers: ["stripe-signature": "t=1,v1=x"],
                requestId: "req_1a2b3c"
            )
        )
        _ = try await WebhookProcessor(database: database).process(
            source: .stripe,
            eventId: "evt_1Q2w3e",
            logger: Logger(label: "test")
        )
        let logPath = fixture.directory.file("myba.jsonl")
        let writer = try RotatingFileWriter(path: logPath, maxBytes: 1 << 20, maxFiles: 2)
        var logger = Logger(label: "myba.server") { JSONLogHandler(label: $0, destination: .file(writer)) }
        logger[metadataKey: "request.id"] = "req_1a2b3c"
        logger[metadataKey: "user.id"] = "user_2abc"
        logger.warning("webhook rejected", metadata: ["error.message": "no signature matches the body"])
        logger.info("request", metadata: ["http.status": .stringConvertible(400)])

        // Runbooks name backups under /var/backups/myba/: here, a directory of the fixture's
        // holding the backup the restore runbook names.
        let backups = fixture.directory.file("backups")
        try FileManager.default.createDirectory(atPath: backups, withIntermediateDirectories: true)
        _ = try database.maintenance.backup(to: backups + "/myba-2026-12-04.sqlite")
        // …and the plans file the catalog runbook installs.
        let plansFile = fixture.directory.file("plans.json")
        try #"{"plans":[{"id":"team","name":"Team","tokens":500,"amount":12000,"currency":"usd"}],"firstPurchaseDiscountPercent":0}"#
            .write(toFile: plansFile, atomically: true, encoding: .utf8)
        @Sendable func localized(_ command: String) -> String {
            command.replacingOccurrences(of: "/var/backups/myba/", with: backups + "/").replacingOccurrences(
                of: "/etc/myba/plans.json",
                with: plansFile
            )
        }
        let commands = all.map(localized)
        let runbooks = byFile.map { (file: $0.file, commands: $0.commands.map(localized)) }
        try await StripeEmulator().application().test(.live) { client in
            let environment = [
                "STRIPE_SECRET_KEY": "sk_test_runbooks", "STRIPE_API_BASE": "http://127.0.0.1:\(client.port!)",
                "MYBA_LOG_FILE": logPath, "MYBA_OPERATOR": "runbook-test",
            ]
            for command in commands {
                let line = Self.asDryRun(command)
                let result = try await fixture.admin(["--db", fixture.path], environment: environment, stdin: line + "\n")
                // The scenario's payment cs_test_a1 was granted by its event: the runbook's last
                // resort is refused for it, its dry run too.
                let refused =
                    command.hasPrefix("tokens adjust user_2abc +10 --payment cs_test_a1") && result.stderr.contains("already granted by its event")
                let acceptable: Set<Int32> = command.hasPrefix("reconcile") || command.hasPrefix("ledger verify") ? [0, 3] : refused ? [1] : [0]
                #expect(acceptable.contains(result.status), "runbook command failed (exit \(result.status)): myba-admin \(line)\n\(result.stderr)")
            }

            // Then each runbook for real, in order, on a disposable copy of the same scenario:
            // the fixes apply (with --yes, as off a terminal), say what the runbook tells the
            // operator to look for, and leave the copy's books clean.
            for (file, fileCommands) in runbooks {
                let copy = fixture.directory.file("copy-\(file).sqlite")
                _ = try database.maintenance.backup(to: copy)
                var seen: [String: Int] = [:]
                for command in fileCommands {
                    let line = Self.asApplied(command)
                    let result = try await fixture.admin(["--db", copy], environment: environment, stdin: line + "\n")
                    let output = result.stdout + result.stderr
                    let expectation = Self.appliedExpectations.first { expected in
                        guard expected.file == file, command.hasPrefix(expected.prefix) else { return false }
                        return expected.occurrence == (seen[expected.prefix] ?? 0) + 1
                    }
                    for prefix in Set(Self.appliedExpectations.filter { $0.file == file && command.hasPrefix($0.prefix) }.map(\.prefix)) {
                        seen[prefix, default: 0] += 1
                    }
                    let acceptable: Set<Int32> =
                        expectation.map { [$0.status] } ?? (command.hasPrefix("reconcile") || command.hasPrefix("ledger verify") ? [0, 3] : [0])
                    #expect(acceptable.contains(result.status), "\(file), applied (exit \(result.status)): myba-admin \(line)\n\(output)")
                    if let phrase = expectation?.phrase {
                        #expect(output.contains(phrase), "\(file): myba-admin \(line) did not say \"\(phrase)\":\n\(output)")
                    }
                }
                let report = try await AppDatabase.openFile(at: copy).ledger.verify()
                #expect(report.isClean, "\(file) left the books unclean: \(report.violations)")
            }
        }
        // Nothing a runbook example did (dry runs, reads) broke the books.
        #expect(try await database.ledger.verify().isClean)
        #expect(try await database.ledger.balance(userId: "user_2abc")?.tokens == 26)

        // `--check` catches a wrong command without running anything.
        let broken = try await BuiltProduct.run(
            "myba-admin",
            ["--check", "--db", "/nonexistent/never-opened.sqlite"],
            stdin: "webhooks replay --faild\n"
        )
        #expect(broken.status == 2)
        let fine = try await BuiltProduct.run(
            "myba-admin",
            ["--check", "--db", "/nonexistent/never-opened.sqlite"],
            stdin: all.joined(separator: "\n") + "\n"
        )
        #expect(fine.status == 0, "\(fine.stderr)")
    }

    /// The `myba-admin` invocations of a crontab, without the program path, the shell's
    /// redirections and what follows them.
    static func cronCommands(in text: String) -> [String] {
        text.split(separator: "\n").compactMap { line -> String? in
            guard !line.hasPrefix("#"), let start = line.range(of: "myba-admin ") else { return nil }
            var command = String(line[start.upperBound...])
            for stop in [" >>", " >", " ||", " 2>&1"] {
                if let range = command.range(of: stop) { command = String(command[..<range.lowerBound]) }
            }
            return command.replacingOccurrences(of: "$(date +\\%F)", with: "2026-12-05")
        }
    }

    @Test("every myba-admin line of deploy/myba.crontab parses (myba-admin --check), and the unit starts the server binary")
    func deploymentFiles() async throws {
        let deploy = Runbooks.directory.deletingLastPathComponent().appendingPathComponent("deploy")
        let crontab = try String(contentsOf: deploy.appendingPathComponent("myba.crontab"), encoding: .utf8)
        let commands = Self.cronCommands(in: crontab)
        #expect(commands.count >= 5)
        #expect(commands.contains { $0.hasPrefix("db backup") } && commands.contains { $0.hasPrefix("db check") })
        let checked = try await BuiltProduct.run(
            "myba-admin",
            ["--check", "--db", "/nonexistent/never-opened.sqlite"],
            stdin: commands.joined(separator: "\n") + "\n"
        )
        #expect(checked.status == 0, "\(checked.stderr)")
        let unit = try String(contentsOf: deploy.appendingPathComponent("myba-server.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/myba-server") && unit.contains("UMask=0077"))
    }
}
