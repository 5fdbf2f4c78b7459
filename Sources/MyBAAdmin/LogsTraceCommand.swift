import ArgumentParser
import Foundation
import MyBAOps

/// `logs trace <request-id>`.
struct LogsTraceCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "trace", abstract: "Every log line of one request, in order, across rotated files.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var logFile: LogFileOptions

    @Argument(help: ArgumentHelp("The request id (X-Request-ID of the response).", valueName: "request-id"))
    var requestId: String

    func execute(in console: Console) async throws {
        let found = try console.logReader(logFile).trace(requestId: requestId)
        guard !found.isEmpty else { throw ConsoleFailure(code: "not_found", description: "no log line carries request.id \(requestId)") }
        for line in found { console.writeLogLine(line) }
    }
}
