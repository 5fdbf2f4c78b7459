import ArgumentParser
import MyBAOps

/// `stats`: the whole system at a glance.
struct StatsCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Customers, sessions, tokens outstanding, webhooks by status, outbox depth."
    )

    @OptionGroup var global: GlobalOptions

    @Option(
        help: ArgumentHelp(
            "A session not seen for this long counts as stale (default: MYBA_SESSION_TTL, else 30d — what the reap removes).",
            valueName: "duration"
        )
    )
    var staleAfter: String?

    func validate() throws {
        if let staleAfter { _ = try parseDuration(staleAfter, option: "--stale-after") }
    }

    func execute(in console: Console) async throws {
        let staleSeconds = try staleAfter.map { try parseDuration($0, option: "--stale-after") } ?? console.settings.staleSessionSeconds
        let stats = try await console.database().queries.stats(staleAfter: staleSeconds)
        if console.json {
            try console.writeJSON(stats)
            return
        }
        var table = TextTable(["measure", "value"])
        table.add(["customers", String(stats.customers)])
        table.add(["customers deleted", String(stats.deletedCustomers)])
        table.add(["anonymous sessions", String(stats.anonymousSessions)])
        table.add(["anonymous sessions stale (\(staleAfter ?? "\(Int(staleSeconds / 86400))d"))", String(stats.staleAnonymousSessions)])
        table.add(["tokens outstanding (accounts)", String(stats.tokensOutstanding)])
        table.add(["tokens outstanding (anonymous)", String(stats.anonymousTokensOutstanding)])
        table.add(["ledger entries", String(stats.ledgerEntries)])
        for status in WebhookEvent.Status.allCases {
            table.add(["webhook events \(status.rawValue)", String(stats.webhookEvents[status.rawValue] ?? 0)])
        }
        table.add(["Stripe outbox depth", String(stats.outboxDepth)])
        console.write(table.render(bold: console.bold))
    }
}
