import ArgumentParser
import Foundation
import MyBAOps

/// `timeline <request-id|user>`: log lines, webhook deliveries and attempts, ledger entries and
/// audit rows of one request or one customer, merged in time order.
struct TimelineCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "timeline",
        abstract: "One chronological view of a request or a customer: logs, webhooks, ledger, audit."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var logFile: LogFileOptions

    @Argument(help: ArgumentHelp("A request id, or a customer (user id, email, cus_…).", valueName: "request-id|user"))
    var subject: String

    @Option(help: ArgumentHelp("Only what happened within this duration (90s, 30m, 24h, 7d).", valueName: "duration"))
    var since: String?

    func validate() throws {
        if let since { _ = try parseDuration(since, option: "--since") }
    }

    func execute(in console: Console) async throws {
        let database = try await console.database()
        let userId: String?
        do {
            userId = try await database.queries.resolveUserId(subject)
        } catch let ambiguous as AmbiguousCustomer {
            throw ConsoleFailure(code: "ambiguous_customer", description: TerminalText.escape(ambiguous.description))
        }
        let requestId = userId == nil ? subject : nil
        let sinceDate = try since.map { Date().addingTimeInterval(-(try parseDuration($0, option: "--since"))) }
        var items = try await database.queries.timeline(requestId: requestId, userId: userId, since: sinceDate)
        let logPath = logFile.file ?? console.settings.logFile
        if !RotatingFileWriter.existingFiles(forLog: logPath).isEmpty {
            let filter = LogFilter(requestId: requestId, userId: userId, since: sinceDate)
            for line in try LogReader(path: logPath).lines(matching: filter) {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let at = (object["ts"] as? String).flatMap(Timestamps.parse)
                else { continue }
                let fields = object.keys.filter { !["ts", "level", "msg", "label", "request.id"].contains($0) }.sorted().map {
                    "\($0)=\(object[$0]!)"
                }
                items.append(
                    TimelineItem(
                        at: at,
                        source: "log",
                        summary: "\(object["level"] as? String ?? "") \(object["msg"] as? String ?? "") \(fields.joined(separator: " "))",
                        requestId: object["request.id"] as? String
                    )
                )
            }
        }
        items.sort { $0.at < $1.at }
        guard !items.isEmpty else {
            throw ConsoleFailure(code: "not_found", description: "nothing recorded for \(subject) (no customer, and no request with that id)")
        }
        if console.json {
            try console.writeJSON(items)
            return
        }
        var table = TextTable(["time", "source", "request", "what"])
        for item in items { table.add([Timestamps.timestamp(item.at), item.source, item.requestId ?? "-", item.summary]) }
        console.write(table.render(bold: console.bold))
    }
}
