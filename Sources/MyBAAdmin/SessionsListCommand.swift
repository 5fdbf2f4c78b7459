import ArgumentParser
import MyBAOps

/// `sessions list [--stale-after DURATION]`.
struct SessionsListCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List anonymous sessions, most recently seen first.")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only untransferred sessions not seen for this long (90s, 30m, 24h, 7d).", valueName: "duration"))
    var staleAfter: String?

    @Option(help: "How many sessions (1–100000).")
    var limit = 100

    func validate() throws {
        if let staleAfter { _ = try parseDuration(staleAfter, option: "--stale-after") }
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 100000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        let sessions = try await console.database().sessions.list(
            staleAfter: try staleAfter.map { try parseDuration($0, option: "--stale-after") },
            limit: limit
        )
        if console.json {
            try console.writeJSON(sessions.map(SessionDocument.init))
            return
        }
        var table = TextTable(["session", "granted", "used", "last seen", "transferred to"])
        for session in sessions {
            table.add([
                session.id, String(session.granted), String(session.used), Timestamps.timestamp(session.lastSeenAt), session.transferredTo ?? "-",
            ])
        }
        console.write(table.render(bold: console.bold))
        console.write("\(sessions.count) session(s)")
    }
}
