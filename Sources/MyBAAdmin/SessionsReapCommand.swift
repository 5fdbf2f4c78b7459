import ArgumentParser
import Foundation
import MyBAOps

/// `sessions reap --older-than DURATION`: removes untransferred sessions not seen since the
/// cutoff, in short batches. Safe from cron: overlapping runs never fail or double count.
struct SessionsReapCommand: ConsoleCommand {
    var changesData: Bool { !dryRun }
    var auditReason: String { "reap sessions older than \(olderThan)" }
    static let configuration = CommandConfiguration(
        commandName: "reap",
        abstract: "Remove untransferred anonymous sessions last seen before a cutoff.",
        discussion:
            "Cron: myba-admin sessions reap --older-than 30d --yes --json. On a terminal it shows the count and asks; without one it needs --yes."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Remove sessions last seen longer ago than this (90s, 30m, 24h, 7d).", valueName: "duration"))
    var olderThan: String

    @Flag(help: "Count what would be removed and change nothing.")
    var dryRun = false

    @Flag(help: "Reap without asking (required when not on a terminal).")
    var yes = false

    @Flag(help: "Allow an --older-than under one hour (it removes sessions visitors may still be using).")
    var force = false

    @Option(help: "Sessions per transaction (1–10000); smaller blocks the server for less time.")
    var batch = 100

    @Option(
        help: ArgumentHelp(
            "Pause between batches in milliseconds (0–60000); the reap always pauses at least as long as a batch took, so a running server keeps half the write time.",
            valueName: "ms"
        )
    )
    var pauseMs = 0

    func validate() throws {
        let seconds = try parseDuration(olderThan, option: "--older-than")
        guard seconds >= 3600 || force else {
            throw ValidationError(
                "--older-than \(olderThan) would reap sessions visitors may still be using; use at least 1h, or add --force if you mean it"
            )
        }
        guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be between 1 and 10000, got \(batch)") }
        guard (0...60_000).contains(pauseMs) else { throw ValidationError("--pause-ms must be between 0 and 60000, got \(pauseMs)") }
    }

    func execute(in console: Console) async throws {
        let cutoff = Date().addingTimeInterval(-(try parseDuration(olderThan, option: "--older-than")))
        let database = try await console.database()
        if !dryRun && !yes {
            // The plan, then the question (or the refusal off a terminal), as for every mutation.
            if console.interactive {
                let plan = try await database.sessions.reap(lastSeenBefore: cutoff, batch: batch, dryRun: true, pause: .zero)
                console.write(
                    console.bold("plan: remove \(plan.removed) untransferred anonymous session(s) last seen before \(Timestamps.timestamp(cutoff))")
                )
            }
            guard try console.approve("reap?", yes: false) else { return }
        }
        let result: ReapResult
        do {
            result = try await database.sessions.reap(lastSeenBefore: cutoff, batch: batch, dryRun: dryRun, pause: .milliseconds(pauseMs))
        } catch var interrupted as ReapInterrupted {
            // What was removed stays removed: audit it before reporting the failure. The lock that
            // stopped the reap may refuse the audit row too, so it gets retries of its own, and a
            // lost audit row never hides the count.
            if interrupted.result.removed > 0 {
                var audited = false
                for attempt in 0..<6 where !audited {
                    do {
                        try await database.audit.record(
                            console.operatorContext(reason: "reap sessions older than \(olderThan)"),
                            userId: nil,
                            outcome: "removed \(interrupted.result.removed) sessions, then stopped: database locked"
                        )
                        audited = true
                    } catch {
                        try await Task.sleep(for: .milliseconds(200 << attempt))
                    }
                }
                if !audited { interrupted.reason += "; the audit row could not be written either" }
            }
            throw interrupted
        }
        if !dryRun && result.removed > 0 {
            try await database.audit.record(
                console.operatorContext(reason: "reap sessions older than \(olderThan)"),
                userId: nil,
                outcome: "removed \(result.removed) sessions"
            )
        }
        if console.json {
            try console.writeJSON(result)
        } else {
            console.write(
                "\(dryRun ? "would remove" : "removed") \(result.removed) session(s) last seen before \(Timestamps.timestamp(cutoff))"
                    + (dryRun ? "" : " in \(result.batches) batch(es)")
            )
        }
    }
}
