import ArgumentParser
import Foundation
import MyBAOps

/// `webhooks prune --older-than D`: drops old bodies (emails, addresses), keeps ids and outcomes.
struct WebhooksPruneCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Drop the bodies and headers of processed or ignored events older than a duration; ids and outcomes stay.",
        discussion: "A redelivery of a pruned event is still recognised and changes nothing. Failed and unprocessed events are kept whole."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Prune events received longer ago than this (at least 1d: 7d, 30d, 90d).", valueName: "duration"))
    var olderThan: String

    @OptionGroup var mutation: MutationOptions

    func validate() throws {
        let seconds = try parseDuration(olderThan, option: "--older-than")
        guard seconds >= 86400 else { throw ValidationError("--older-than must be at least 1d: recent bodies are what replays and incidents need") }
    }

    func execute(in console: Console) async throws {
        let cutoff = Date().addingTimeInterval(-(try parseDuration(olderThan, option: "--older-than")))
        let database = try await console.database()
        let count = try await database.inbox.prunable(before: cutoff)
        if !console.json {
            console.write(
                console.bold("plan: drop the bodies of \(count) processed or ignored event(s) received before \(Timestamps.timestamp(cutoff))")
            )
        }
        if mutation.dryRun {
            if console.json { try console.writeJSON(["wouldPrune": count]) } else { console.write("dry run: nothing changed") }
            return
        }
        guard try console.approve("prune?", yes: mutation.yes) else { return }
        let pruned = try await database.inbox.prune(before: cutoff, by: console.operatorContext(reason: mutation.reasonText))
        if console.json { try console.writeJSON(["pruned": pruned]) } else { console.write(console.green("pruned") + " \(pruned) event body(ies)") }
    }
}
