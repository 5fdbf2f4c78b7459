import ArgumentParser
import Foundation
import MyBAOps

/// `webhooks replay`: runs the live processing function again on stored events.
struct WebhooksReplayCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Process stored events again with the live processing; an already processed event changes nothing.",
        discussion: "Exit 1 when an event still fails after the replay."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Event ids to replay.", valueName: "event-id"))
    var eventIds: [String] = []

    @Flag(help: "Replay every failed event (with --since: only recent ones).")
    var failed = false

    @Option(help: ArgumentHelp("With --failed: only events received within this duration.", valueName: "duration"))
    var since: String?

    @OptionGroup var mutation: MutationOptions

    func validate() throws {
        guard failed != !eventIds.isEmpty else { throw ValidationError("name event ids, or use --failed (not both)") }
        if let since { _ = try parseDuration(since, option: "--since") }
    }

    struct ReplayResult: Encodable {
        var eventId: String
        var status: String
        var changed: Bool
        var message: String
        var entryIds: [Int64]
    }

    struct ReplayReport: Encodable {
        /// The plan catalog the processing read (`plans show`).
        var plansVersion: Int
        var events: [ReplayResult]
    }

    func execute(in console: Console) async throws {
        let database = try await console.database()
        var targets: [WebhookEvent] = []
        if failed {
            let sinceDate = try since.map { Date().addingTimeInterval(-(try parseDuration($0, option: "--since"))) }
            targets = try await database.inbox.list(status: .failed, type: nil, since: sinceDate, limit: 100_000)
        } else {
            for id in eventIds {
                guard let event = try await database.inbox.event(id: id) else {
                    throw ConsoleFailure(code: "unknown_event", description: "no stored webhook event \(id)")
                }
                targets.append(event)
            }
        }
        let processor = WebhookProcessor(database: database)
        // Replays decide from the catalog the server uses (stored in the database); say which.
        let plans = try await database.plans.installed()
        // The plan: the live processing of each event, run and rolled back.
        var plan = TextTable(["event", "type", "now", "replay would"])
        var previews: [ReplayResult] = []
        for event in targets {
            let outcome = try await processor.preview(source: event.source, eventId: event.eventId)
            let would = outcome.alreadyDone ? "nothing (already \(outcome.status.rawValue))" : "\(outcome.status.rawValue): \(outcome.message)"
            plan.add([event.eventId, event.type, event.status.rawValue, would])
            previews.append(ReplayResult(eventId: event.eventId, status: outcome.status.rawValue, changed: false, message: would, entryIds: []))
        }
        if mutation.dryRun {
            if console.json {
                try console.writeJSON(ReplayReport(plansVersion: plans.version, events: previews))
            } else {
                console.write(console.bold("plan: replay \(targets.count) event(s)"))
                console.write("plans in force: \(plans.label)")
                console.write(plan.render(bold: console.bold))
                console.write("dry run: nothing changed")
            }
            return
        }
        if !console.json && !mutation.yes {
            console.write(console.bold("plan: replay \(targets.count) event(s)"))
            console.write("plans in force: \(plans.label)")
            console.write(plan.render(bold: console.bold))
        }
        guard try console.approve("replay?", yes: mutation.yes) else { return }
        var results: [ReplayResult] = []
        for event in targets {
            let outcome = try await processor.process(source: event.source, eventId: event.eventId, logger: console.logger)
            results.append(
                ReplayResult(
                    eventId: event.eventId,
                    status: outcome.status.rawValue,
                    changed: !outcome.alreadyDone && outcome.status != .failed,
                    message: outcome.alreadyDone ? "already \(outcome.status.rawValue): nothing changed" : outcome.message,
                    entryIds: outcome.entryIds
                )
            )
            try await database.audit.record(
                console.operatorContext(reason: mutation.reasonText),
                userId: nil,
                outcome: "replayed \(event.eventId): \(outcome.alreadyDone ? "nothing changed" : outcome.status.rawValue)"
            )
        }
        if console.json {
            try console.writeJSON(ReplayReport(plansVersion: plans.version, events: results))
        } else {
            console.write("plans used: \(plans.label)")
            var table = TextTable(["event", "status", "result"])
            for result in results { table.add([result.eventId, result.status, result.message]) }
            console.write(table.render(bold: console.bold))
            console.write("\(results.count) event(s) replayed")
        }
        if results.contains(where: { $0.status == "failed" }) {
            throw ConsoleFailure(
                code: "replay_failed",
                description: "\(results.filter { $0.status == "failed" }.count) event(s) still fail; see webhooks show"
            )
        }
    }
}
