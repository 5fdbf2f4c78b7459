import ArgumentParser
import Foundation
import MyBAOps

/// `sessions reap --older-than DURATION`: removes untransferred sessions not seen since the
/// cutoff, in short batches. Safe from cron: overlapping runs never fail or double count.
struct SessionsReapCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "reap",
        abstract: "Remove untransferred anonymous sessions last seen before a cutoff.",
        discussion: "Cron: myba-admin sessions reap --older-than 30d --json (no confirmation is asked: nothing of value is lost).")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Remove sessions last seen longer ago than this (90s, 30m, 24h, 7d).", valueName: "duration"))
    var olderThan: String

    @Flag(help: "Count what would be removed and change nothing.")
    var dryRun = false

    @Option(help: "Sessions per transaction (1–10000); smaller blocks the server for less time.")
    var batch = 500

    func validate() throws {
        _ = try parseDuration(olderThan, option: "--older-than")
        guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 10000, got \(batch)") }
    }

    func execute(in console: Console) async throws {
        let cutoff = Date().addingTimeInterval(-(try parseDuration(olderThan, option: "--older-than")))
        let database = try console.database()
        let result = try await database.reapAnonymousSessions(lastSeenBefore: cutoff, batch: batch, dryRun: dryRun)
        if !dryRun && result.removed > 0 {
            try await database.recordAudit(console.operatorContext(reason: "reap sessions older than \(olderThan)"), userId: nil, outcome: "removed \(result.removed) sessions")
        }
        if console.json {
            try console.writeJSON(result)
        } else {
            console.write("\(dryRun ? "would remove" : "removed") \(result.removed) session(s) last seen before \(LedgerDates.timestamp(cutoff))"
                + (dryRun ? "" : " in \(result.batches) batch(es)"))
        }
    }
}
