import ArgumentParser
import MyBAOps

/// `db check`: the file's integrity, foreign keys, the ledger, and the inbox and generation invariants.
struct DatabaseCheckCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the file (integrity, foreign keys), the ledger, the webhook inbox and reservations (exit 3 if anything is wrong)."
    )

    @OptionGroup var global: GlobalOptions

    func execute(in console: Console) async throws {
        let deadline = ReservationDeadline.seconds(ai: console.settings.ai, busyTimeoutSeconds: console.settings.busyTimeoutSeconds)
        let problems = try await console.database().maintenance.check(reservationDeadlineSeconds: deadline)
        if console.json {
            try console.writeJSON(problems)
        } else if problems.isEmpty {
            console.write(console.green("database clean") + ": integrity, foreign keys, ledger, inbox and reservations checked")
        } else {
            var table = TextTable(["check", "problem"])
            for problem in problems { table.add([problem.check, problem.detail]) }
            console.write(table.render(bold: console.bold))
            console.write(console.red("\(problems.count) problem(s)"))
        }
        if !problems.isEmpty { throw CheckFailed(message: "") }
    }
}
