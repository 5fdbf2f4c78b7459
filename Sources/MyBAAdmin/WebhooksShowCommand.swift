import ArgumentParser
import Foundation
import MyBAOps

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
        guard let event = try await console.database().inbox.event(id: eventId) else {
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
        table.add(["received", Timestamps.timestamp(event.receivedAt)])
        table.add(["request id", event.requestId ?? "-"])
        table.add(["outcome", event.outcome ?? "-"])
        table.add(["last error", event.lastError ?? "-"])
        table.add(["next attempt", event.nextAttemptAt.map(Timestamps.timestamp) ?? "-"])
        table.add(["ledger entries", event.entryIds.isEmpty ? "-" : event.entryIds.map { "#\($0)" }.joined(separator: ", ")])
        for (name, value) in event.headers.sorted(by: { $0.key < $1.key }) { table.add(["header \(name)", value]) }
        console.write(table.render(bold: console.bold))
        console.write("")
        // Pretty JSON escapes control characters in strings, but a body that is not JSON, or
        // bidirectional overrides inside strings, must not reach the terminal as they are.
        console.write(body.split(separator: "\n", omittingEmptySubsequences: false).map { TerminalText.escape(String($0)) }.joined(separator: "\n"))
    }
}
