import ArgumentParser
import Foundation
import MyBAOps

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
                String(event.attempts), Timestamps.timestamp(event.receivedAt), event.lastError ?? event.outcome ?? "-",
            ])
        }
        console.write(table.render(bold: console.bold))
        console.write("\(events.count) event(s)")
    }
}
