import ArgumentParser
import Foundation
import MyBAOps

/// A second process for the ledger's multi-process and crash tests: consumes through the same
/// code the server runs, on the same file, and prints one line per outcome as it happens.
struct ConsumeWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume-worker",
        abstract: "Consume tokens on a shared database file, printing `ok KEY` / `insufficient KEY` / `error KEY MESSAGE` per attempt."
    )

    @Option(help: "SQLite file shared with the test.")
    var db: String

    @Option(help: "The customer to consume from.")
    var user: String

    @Option(help: "How many consumes to attempt.")
    var attempts: Int

    @Option(help: "Idempotency keys are PREFIX:N.")
    var keyPrefix: String

    @Option(help: "How many consumes run at once inside this process.")
    var concurrency = 1

    @Flag(help: "Create and migrate the database after the gate opens (races other workers doing the same).")
    var create = false

    func run() async throws {
        // Start together with the other workers: the test releases everyone by creating the file.
        let gate = db + ".go"
        if create { try await waitForGate(gate) }
        let database = try AppDatabase.openFile(at: db, options: .init(busyTimeout: 30, createIfMissing: create))
        let output = FileHandle.standardOutput
        if !create {
            // Opened: say so, so that the gate opens only when every worker can start at once.
            output.write(Data("ready\n".utf8))
            try await waitForGate(gate)
        }
        // When this worker began and ended racing, in wall-clock milliseconds: the test checks
        // that the workers' races overlapped.
        output.write(Data("started \(Int(Date().timeIntervalSince1970 * 1000))\n".utf8))
        defer { output.write(Data("finished \(Int(Date().timeIntervalSince1970 * 1000))\n".utf8)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    var index = lane
                    while index < attempts {
                        let key = "\(keyPrefix):\(index)"
                        let line: String
                        do {
                            _ = try await database.ledger.consume(userId: user, idempotencyKey: key, actor: "worker")
                            line = "ok \(key)\n"
                        } catch LedgerError.insufficientTokens {
                            line = "insufficient \(key)\n"
                        } catch {
                            line = "error \(key) \(error)\n"
                        }
                        // Written only after the commit returned: an `ok` line is an acknowledgement.
                        output.write(Data(line.utf8))
                        index += concurrency
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    private func waitForGate(_ gate: String) async throws {
        while !FileManager.default.fileExists(atPath: gate) { try await Task.sleep(for: .milliseconds(1)) }
    }
}
