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

    @Option(
        help: ArgumentHelp(
            "Only events naming this customer (user id, email or cus_… id): those that made their entries, and any whose body names their user id, Stripe customer or email.",
            valueName: "user"
        )
    )
    var customer: String?

    func validate() throws {
        if let since { _ = try parseDuration(since, option: "--since") }
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 100000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        let sinceDate = try since.map { Date().addingTimeInterval(-(try parseDuration($0, option: "--since"))) }
        var events: [WebhookEvent]
        if let customer {
            let userId = try await console.userId(for: customer)
            events = try await console.database().inbox.events(forUser: userId, limit: 100_000).filter { event in
                (status == .all || event.status.rawValue == status.rawValue) && (type.map { $0 == event.type } ?? true)
                    && (sinceDate.map { event.receivedAt >= $0 } ?? true)
            }
            events = Array(events.prefix(limit))
        } else {
            events = try await console.database().inbox.list(
                status: status == .all ? nil : WebhookEvent.Status(rawValue: status.rawValue),
                type: type,
                since: sinceDate,
                limit: limit
            )
        }
        if console.json {
            try console.writeJSON(events.map(WebhookDocument.init))
            return
        }
        var table = TextTable(["event", "source", "type", "status", "attempts", "received", "outcome / last error"])
        for event in events {
            table.add(
                [
                    event.eventId, event.source.rawValue, event.type, event.status.rawValue,
                    String(event.attempts), Timestamps.timestamp(event.receivedAt), event.lastError ?? event.outcome ?? "-",
                ],
                style: event.status == .failed ? { column, text in column == 3 ? console.red(text) : text } : nil
            )
        }
        console.write(table.render(bold: console.bold))
        console.write("\(events.count) event(s)")
    }
}
