import ArgumentParser
import Foundation
import MyBAOps

/// `webhooks recover --since D`: fetch missed Stripe events from `/v1/events` and process them.
struct WebhooksRecoverCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Fetch Stripe events missing from the inbox (GET /v1/events, all pages) and process them.",
        discussion: "Stripe keeps events 30 days: an older --since is refused. Events already stored are left alone."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("How far back to look (90s, 30m, 24h, 7d; at most 30d).", valueName: "duration"))
    var since: String

    @OptionGroup var mutation: MutationOptions

    func validate() throws {
        let seconds = try parseDuration(since, option: "--since")
        guard seconds <= WebhookProcessor.stripeEventRetention else {
            throw ValidationError(
                "--since \(since) reaches past Stripe's 30-day event retention; events older than 30 days cannot be recovered from Stripe"
            )
        }
    }

    func execute(in console: Console) async throws {
        let database = try await console.database()
        let sinceDate = Date().addingTimeInterval(-(try parseDuration(since, option: "--since")))
        let processor = WebhookProcessor(database: database)
        let (listed, missing) = try await processor.missingEvents(from: try console.stripeClient(), since: sinceDate)
        if !console.json && (mutation.dryRun || !mutation.yes) {
            console.write(console.bold("plan: store and process \(missing.count) Stripe event(s) missing from the inbox (\(listed) listed)"))
            console.write("plans in force: \(try await database.plans.installed().label)")
            var plan = TextTable(["event", "type", "created"])
            for event in missing {
                plan.add([event.id, event.type, event.created.map { Timestamps.timestamp(Date(timeIntervalSince1970: TimeInterval($0))) } ?? "-"])
            }
            console.write(plan.render(bold: console.bold))
        }
        if mutation.dryRun {
            if console.json {
                try console.writeJSON(RecoveryReport(listed: listed, alreadyStored: listed - missing.count, recovered: [], failed: []))
            } else {
                console.write("dry run: nothing changed")
            }
            return
        }
        if !missing.isEmpty, try !console.approve("recover?", yes: mutation.yes) { return }
        let report = try await processor.recover(missing, listed: listed, logger: console.logger)
        if !report.recovered.isEmpty || !report.failed.isEmpty {
            try await database.audit.record(
                console.operatorContext(reason: mutation.reasonText),
                userId: nil,
                outcome: "webhooks recover --since \(since): recovered \(report.recovered.count), failed \(report.failed.count)"
            )
        }
        if console.json {
            try console.writeJSON(report)
        } else {
            console.write(
                "\(report.listed) Stripe event(s) listed, \(report.alreadyStored) already in the inbox, \(report.recovered.count) recovered, \(report.failed.count) failed"
            )
            for id in report.recovered { console.write("  recovered \(id)") }
            for id in report.failed { console.write("  failed    \(id) (see webhooks show)") }
        }
        if !report.failed.isEmpty {
            throw ConsoleFailure(code: "recover_failed", description: "\(report.failed.count) recovered event(s) failed to process")
        }
    }
}
