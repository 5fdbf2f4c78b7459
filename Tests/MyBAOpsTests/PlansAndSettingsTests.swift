import Foundation
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("Plans and settings")
struct PlansAndSettingsTests {
    @Test("the built-in plans are Starter 10, Professional 50, Enterprise 200 with 20 % off a first purchase")
    func standardPlans() {
        let catalog = PlanCatalog.standard
        #expect(catalog.plans.map(\.id) == ["starter", "professional", "enterprise"])
        #expect(catalog.plans.map(\.tokens) == [10, 50, 200])
        #expect(catalog.plans.map(\.amount) == [500, 2000, 6000])
        #expect(catalog.firstPurchaseDiscountPercent == 20)
        #expect(catalog.problems.isEmpty)
    }

    @Test("a plans file is loaded and each kind of mistake is named with the file")
    func plansFile() throws {
        let directory = try TemporaryDirectory("myba-plans")
        defer { directory.remove() }
        let good = directory.file("good.json")
        try #"{"plans":[{"id":"team","name":"Team","tokens":500,"amount":12000,"currency":"eur"}],"firstPurchaseDiscountPercent":10}"#
            .write(toFile: good, atomically: true, encoding: .utf8)
        let catalog = try PlanCatalog.load(contentsOf: good)
        #expect(catalog.plan(id: "team")?.tokens == 500)
        #expect(catalog.firstPurchaseDiscountPercent == 10)

        let cases: [(String, String)] = [
            ("not json", "is not valid JSON"),
            (#"{"plans":[{"id":"a","name":"A","tokens":1,"amount":500}],"firstPurchaseDiscountPercent":0}"#, "missing \"currency\" at plans[0]"),
            (#"{"plans":[],"firstPurchaseDiscountPercent":0}"#, "lists no plans"),
            (#"{"plans":[{"id":"a","name":"A","tokens":0,"amount":500,"currency":"usd"}],"firstPurchaseDiscountPercent":0}"#, "tokens must be"),
            (#"{"plans":[{"id":"a","name":"A","tokens":1,"amount":10,"currency":"usd"}],"firstPurchaseDiscountPercent":0}"#, "amount must be"),
            (
                #"{"plans":[{"id":"a","name":"A","tokens":1,"amount":60,"currency":"usd"}],"firstPurchaseDiscountPercent":20}"#,
                "costs 48, under Stripe's minimum"
            ),
            (
                #"{"plans":[{"id":"a","name":"A","tokens":1,"amount":500,"currency":"usd"},{"id":"a","name":"B","tokens":2,"amount":900,"currency":"usd"}],"firstPurchaseDiscountPercent":0}"#,
                "id is used twice"
            ),
            (#"{"plans":[{"id":"A b","name":"A","tokens":1,"amount":500,"currency":"usd"}],"firstPurchaseDiscountPercent":0}"#, "id must be"),
            (#"{"plans":[{"id":"a","name":"A","tokens":1,"amount":500,"currency":"USD"}],"firstPurchaseDiscountPercent":0}"#, "currency must be"),
            (
                #"{"plans":[{"id":"a","name":"A","tokens":1,"amount":500,"currency":"usd"}],"firstPurchaseDiscountPercent":95}"#,
                "firstPurchaseDiscountPercent"
            ),
        ]
        for (index, (content, expected)) in cases.enumerated() {
            let path = directory.file("bad\(index).json")
            try content.write(toFile: path, atomically: true, encoding: .utf8)
            let error = try #require(throws: PlanCatalogError.self) { try PlanCatalog.load(contentsOf: path) }
            #expect(error.description.contains(path))
            #expect(error.description.contains(expected), "\(error.description)")
        }
        let missing = try #require(throws: PlanCatalogError.self) { try PlanCatalog.load(contentsOf: directory.file("absent.json")) }
        #expect(missing.description.contains("cannot be read"))
    }

    @Test("settings default to a working local setup and name the variable that is wrong")
    func settings() throws {
        let defaults = try MyBASettings.fromEnvironment([:])
        #expect(defaults.host == "127.0.0.1")
        #expect(defaults.port == 3001)
        #expect(defaults.databasePath == "data/myba.sqlite")
        #expect(defaults.logFile == "data/logs/myba.jsonl")
        let custom = try MyBASettings.fromEnvironment([
            "PORT": "8080", "MYBA_DATABASE": "/srv/myba.sqlite", "MYBA_LOG_MAX_FILES": "2", "MYBA_ENV": "production",
        ])
        #expect(custom.port == 8080)
        #expect(custom.databasePath == "/srv/myba.sqlite")
        #expect(custom.logMaxFiles == 2)
        #expect(custom.environmentName == "production")
        #expect(defaults.anonymous.trustedProxies == 0)
        #expect(defaults.outboundHTTP.maxConnectionsPerHost == 512)
        #expect(defaults.shutdownTimeoutSeconds == 10)
        #expect(defaults.listenBacklog == 4096)
        #expect(try MyBASettings.fromEnvironment(["MYBA_LISTEN_BACKLOG": "512"]).listenBacklog == 512)
        let tuned = try MyBASettings.fromEnvironment([
            "MYBA_TRUST_PROXY": "2", "MYBA_HTTP_MAX_CONNECTIONS_PER_HOST": "64", "MYBA_HTTP_IDLE_CLOSE_MS": "1500",
            "MYBA_SHUTDOWN_TIMEOUT_MS": "4000", "MYBA_WATCHDOG_STALL_MS": "800",
        ])
        #expect(tuned.anonymous.trustedProxies == 2)
        #expect(tuned.outboundHTTP == OutboundHTTPSettings(maxConnectionsPerHost: 64, idleCloseSeconds: 1.5))
        #expect(tuned.shutdownTimeoutSeconds == 4)
        #expect(tuned.watchdogStallSeconds == 0.8)
        for (name, value) in [
            ("PORT", "eighty"), ("PORT", "70000"), ("MYBA_LOG_MAX_BYTES", "10"), ("MYBA_LOG_LEVEL", "loud"), ("MYBA_DB_BUSY_TIMEOUT_MS", "0"),
            ("MYBA_TRUST_PROXY", "true"), ("MYBA_TRUST_PROXY", "11"), ("MYBA_HTTP_MAX_CONNECTIONS_PER_HOST", "0"), ("MYBA_SHUTDOWN_TIMEOUT_MS", "10"),
            ("MYBA_LISTEN_BACKLOG", "0"),
        ] {
            let error = try #require(throws: SettingsError.self) { try MyBASettings.fromEnvironment([name: value]) }
            #expect(error.variable == name)
            #expect(error.description.contains(value))
        }
    }

    @Test(
        "the client address behind N trusted proxies is the Nth X-Forwarded-For hop from the right; malformed hops stop the walk; IPv6 counts by /64"
    )
    func clientAddress() {
        let forwarded = ["10.9.9.9, 203.0.113.5", "198.51.100.7"]
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: forwarded, trustedProxies: 0) == "192.0.2.1")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: forwarded, trustedProxies: 1) == "198.51.100.7")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: forwarded, trustedProxies: 2) == "203.0.113.5")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: forwarded, trustedProxies: 5) == "10.9.9.9")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: ["evil, not-an-ip"], trustedProxies: 1) == "192.0.2.1")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: ["not-an-ip, 203.0.113.5"], trustedProxies: 3) == "203.0.113.5")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: ["203.0.113.5:4711"], trustedProxies: 1) == "203.0.113.5")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: ["[2001:db8::1]:443"], trustedProxies: 1) == "2001:db8::1")
        #expect(ClientAddress.resolve(peer: "192.0.2.1", forwardedFor: [], trustedProxies: 1) == "192.0.2.1")
        #expect(ClientAddress.limitKey("203.0.113.5") == "203.0.113.5")
        #expect(ClientAddress.limitKey("2001:db8:aa:bb::1") == ClientAddress.limitKey("2001:db8:aa:bb:ffff:1:2:3"))
        #expect(ClientAddress.limitKey("2001:db8:aa:bb::1") != ClientAddress.limitKey("2001:db8:aa:bc::1"))
        #expect(ClientAddress.limitKey("::ffff:203.0.113.5") == "203.0.113.5")
    }
}

@Suite("The plan catalog in the database")
struct InstalledPlansTests {
    static let team = PlanCatalog(
        plans: [Plan(id: "team", name: "Team", tokens: 500, amount: 12000, currency: "usd")],
        firstPurchaseDiscountPercent: 0
    )
    static let teamPlus = PlanCatalog(
        plans: [Plan(id: "team", name: "Team", tokens: 600, amount: 12000, currency: "usd")],
        firstPurchaseDiscountPercent: 0
    )

    @Test(
        "the built-in plans until one is installed; MYBA_PLANS_FILE is installed when it changed since the server last installed it, so a restart never undoes an operator's plans set"
    )
    func versions() async throws {
        let directory = try TemporaryDirectory("myba-installed-plans")
        defer { directory.remove() }
        let database = try AppDatabase.openFile(at: directory.file("myba.sqlite"))
        #expect(try await database.plans.installed() == .builtIn)

        // First start with a file: it becomes version 1; the same file again changes nothing.
        guard case .installed(let first) = try await database.plans.adoptFile(Self.team, path: "/etc/myba/plans.json") else {
            Issue.record("the file was not installed")
            return
        }
        #expect(first.version == 1 && first.catalog == Self.team && first.source == "file:/etc/myba/plans.json")
        #expect(try await database.plans.adoptFile(Self.team, path: "/etc/myba/plans.json") == .unchanged(current: first))

        // An operator installs a catalog; a restart with the unchanged file keeps it.
        let context = OperatorContext(operatorName: "ops", commandLine: "plans set --from team-plus.json", reason: "ticket 9")
        let second = try await database.plans.install(Self.teamPlus, by: context)
        #expect(second.version == 2 && second.source == "console" && second.installedBy == "operator:ops")
        #expect(try await database.plans.adoptFile(Self.team, path: "/etc/myba/plans.json") == .unchanged(current: second))
        #expect(try await database.plans.installed().catalog == Self.teamPlus)
        // The install is audited in its own transaction.
        #expect(try await database.audit.records(limit: 1).first?.outcome.contains("installed plan catalog version 2") == true)

        // The file edited (to anything, even the built-in plans) is the newest change: it wins.
        guard case .installed(let third) = try await database.plans.adoptFile(.standard, path: "/etc/myba/plans.json") else {
            Issue.record("the edited file was not installed")
            return
        }
        #expect(third.version == 3 && third.catalog == .standard)
        #expect(try await database.plans.history(limit: 10).map(\.version) == [3, 2, 1])

        // A catalog that breaks a rule is refused and nothing is installed.
        var broken = Self.team
        broken.plans[0].tokens = 0
        await #expect(throws: PlanCatalogError.self) { try await database.plans.install(broken, by: context) }
        #expect(try await database.plans.installed().version == 3)
    }
}
