import ArgumentParser
import Foundation
import MyBAOps

/// `webhooks …`: the inbox of Stripe and Clerk deliveries.
struct WebhooksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhooks",
        abstract: "List, show and replay stored webhook events.",
        subcommands: [WebhooksListCommand.self, WebhooksShowCommand.self, WebhooksReplayCommand.self, WebhooksRecoverCommand.self]
    )
}

/// `webhooks list`.
struct WebhooksListCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List stored webhook events, newest first.")

    enum StatusFilter: String, ExpressibleByArgument, CaseIterable {
        case received, processed, ignored, failed, all
    }

    @OptionGroup var global: GlobalOptions

    @Option(help: "received, processed, ignored, failed or all.")
    var status: StatusFilter = .all

    @Option(help: ArgumentHelp("Only this event type (checkout.session.completed, charge.refunded, user.created …).", valueName: "type"))
    var type: String?

    @Option(help: ArgumentHelp("Only events received within this duration (90s, 30m, 24h, 7d).", valueName: "duration"))
    var since: String?

    @Option(help: "How many events (1–100000).")
    var limit = 50

    func validate() throws {
        if let since { _ = try parseDuration(since, option: "--since") }
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 100000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        let sinceDate = try since.map { Date().addingTimeInterval(-(try parseDuration($0, option: "--since"))) }
        let events = try await console.database().listWebhooks(
            status: status == .all ? nil : WebhookEvent.Status(rawValue: status.rawValue),
            type: type,
            since: sinceDate,
            limit: limit
        )
        if console.json {
            try console.writeJSON(events.map(WebhookDocument.init))
            return
        }
        var table = TextTable(["event", "source", "type", "status", "attempts", "received", "outcome / last error"])
        for event in events {
            table.add([
                event.eventId, event.source.rawValue, event.type,
                event.status == .failed ? console.red(event.status.rawValue) : event.status.rawValue,
                String(event.attempts), LedgerDates.timestamp(event.receivedAt), event.lastError ?? event.outcome ?? "-",
            ])
        }
        console.write(table.render(bold: console.bold))
        console.write("\(events.count) event(s)")
    }
}

/// `webhooks show <event-id>`.
struct WebhooksShowCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one event: headers, body, attempts, outcome, ledger entries."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The event id (evt_… or Clerk's svix msg_…).", valueName: "event-id"))
    var eventId: String

    func execute(in console: Console) async throws {
        guard let event = try await console.database().webhookEvent(id: eventId) else {
            throw ConsoleFailure(code: "unknown_event", description: "no stored webhook event \(eventId)")
        }
        let body =
            (try? JSONSerialization.jsonObject(with: Data(event.body.utf8))).flatMap {
                try? JSONSerialization.data(withJSONObject: $0, options: [.prettyPrinted, .sortedKeys])
            }.map { String(decoding: $0, as: UTF8.self) } ?? event.body
        if console.json {
            var document = WebhookDocument(event)
            document.lastError = event.lastError
            document.entryIds = event.entryIds
            document.headers = event.headers
            document.body = (try? JSONSerialization.jsonObject(with: Data(event.body.utf8))).map { _ in event.body }
            try console.writeJSON(document)
            return
        }
        var table = TextTable(["field", "value"])
        table.add(["event", event.eventId])
        table.add(["source", event.source.rawValue])
        table.add(["type", event.type])
        table.add(["status", event.status.rawValue])
        table.add(["attempts", String(event.attempts)])
        table.add(["received", LedgerDates.timestamp(event.receivedAt)])
        table.add(["request id", event.requestId ?? "-"])
        table.add(["outcome", event.outcome ?? "-"])
        table.add(["last error", event.lastError ?? "-"])
        table.add(["next attempt", event.nextAttemptAt.map(LedgerDates.timestamp) ?? "-"])
        table.add(["ledger entries", event.entryIds.isEmpty ? "-" : event.entryIds.map { "#\($0)" }.joined(separator: ", ")])
        for (name, value) in event.headers.sorted(by: { $0.key < $1.key }) { table.add(["header \(name)", value]) }
        console.write(table.render(bold: console.bold))
        console.write("")
        // Pretty JSON escapes control characters in strings, but a body that is not JSON, or
        // bidirectional overrides inside strings, must not reach the terminal as they are.
        console.write(body.split(separator: "\n", omittingEmptySubsequences: false).map { TerminalText.escape(String($0)) }.joined(separator: "\n"))
    }
}

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

    func execute(in console: Console) async throws {
        let database = try console.database()
        var targets: [WebhookEvent] = []
        if failed {
            let sinceDate = try since.map { Date().addingTimeInterval(-(try parseDuration($0, option: "--since"))) }
            targets = try await database.listWebhooks(status: .failed, type: nil, since: sinceDate, limit: 100_000)
        } else {
            for id in eventIds {
                guard let event = try await database.webhookEvent(id: id) else {
                    throw ConsoleFailure(code: "unknown_event", description: "no stored webhook event \(id)")
                }
                targets.append(event)
            }
        }
        let processor = WebhookProcessor(database: database, plans: try console.plans())
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
                try console.writeJSON(previews)
            } else {
                console.write(console.bold("plan: replay \(targets.count) event(s)"))
                console.write(plan.render(bold: console.bold))
                console.write("dry run: nothing changed")
            }
            return
        }
        if !console.json && !mutation.yes {
            console.write(console.bold("plan: replay \(targets.count) event(s)"))
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
            try await database.recordAudit(
                console.operatorContext(reason: mutation.reasonText),
                userId: nil,
                outcome: "replayed \(event.eventId): \(outcome.alreadyDone ? "nothing changed" : outcome.status.rawValue)"
            )
        }
        if console.json {
            try console.writeJSON(results)
        } else {
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
        let database = try console.database()
        let sinceDate = Date().addingTimeInterval(-(try parseDuration(since, option: "--since")))
        let processor = WebhookProcessor(database: database, plans: try console.plans())
        let (listed, missing) = try await processor.missingEvents(from: try console.stripeClient(), since: sinceDate)
        if !console.json && (mutation.dryRun || !mutation.yes) {
            console.write(console.bold("plan: store and process \(missing.count) Stripe event(s) missing from the inbox (\(listed) listed)"))
            var plan = TextTable(["event", "type", "created"])
            for event in missing {
                plan.add([event.id, event.type, event.created.map { LedgerDates.timestamp(Date(timeIntervalSince1970: TimeInterval($0))) } ?? "-"])
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
            try await database.recordAudit(
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
