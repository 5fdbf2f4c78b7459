import ArgumentParser
import MyBAOps

/// `ledger verify`: recompute every balance from the entries and list every violation.
struct LedgerVerifyCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Recompute every balance from the ledger and list each violation (exit 3 if any)."
    )

    @OptionGroup var global: GlobalOptions

    func execute(in console: Console) async throws {
        let report = try await console.database().ledger.verify()
        if console.json {
            try console.writeJSON(report)
        } else if report.isClean {
            console.write(console.green("ledger clean") + ": \(report.checkedCustomers) customers, \(report.checkedEntries) entries checked")
        } else {
            var table = TextTable(["violation", "user", "field", "expected", "actual", "entry", "detail"])
            for violation in report.violations {
                table.add([
                    violation.kind.rawValue, violation.userId, violation.field ?? "-", violation.expected ?? "-",
                    violation.actual ?? "-", violation.entryId.map { String($0) } ?? "-", violation.message,
                ])
            }
            console.write(table.render(bold: console.bold))
            console.write(
                console.red("\(report.violations.count) violation(s)") + " in \(report.checkedCustomers) customers, \(report.checkedEntries) entries"
            )
        }
        if !report.isClean { throw CheckFailed(message: "") }
    }
}
