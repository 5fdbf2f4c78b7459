import Foundation
import MyBATestSupport
import Testing

/// Runbooks are read at 3 a.m.: every command they show must exist as written.
@Suite("Runbooks")
struct RunbookTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("runbooks")

    /// The `myba-admin` lines of a runbook's ```sh blocks, without the program name and comments.
    static func commands(in text: String) -> [String] {
        var inShell = false
        var found: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") { inShell = line == "```sh"; continue }
            guard inShell, line.hasPrefix("myba-admin ") else { continue }
            var command = String(line.dropFirst("myba-admin ".count))
            if let comment = command.range(of: "  #") { command = String(command[..<comment.lowerBound]) }
            found.append(command.trimmingCharacters(in: .whitespaces))
        }
        return found
    }

    @Test("every runbook is in the index and every myba-admin line in it parses against the command table")
    func commandsParse() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { $0.hasSuffix(".md") && $0 != "README.md" }.sorted()
        #expect(files.count >= 6)
        let index = try String(contentsOf: Self.directory.appendingPathComponent("README.md"), encoding: .utf8)
        var all: [String] = []
        for file in files {
            #expect(index.contains("(\(file))"), "\(file) is not linked from runbooks/README.md")
            let commands = Self.commands(in: try String(contentsOf: Self.directory.appendingPathComponent(file), encoding: .utf8))
            #expect(!commands.isEmpty, "\(file) shows no myba-admin command")
            all += commands
        }
        let result = try await BuiltProduct.run("myba-admin", ["--check", "--continue-on-error", "--db", "/nonexistent/never-opened.sqlite"], stdin: all.joined(separator: "\n") + "\n")
        #expect(result.status == 0, "runbook commands that do not parse:\n\(result.stderr)")
        // The check itself must catch a wrong command, or this test proves nothing.
        let broken = try await BuiltProduct.run("myba-admin", ["--check", "--db", "/nonexistent/never-opened.sqlite"], stdin: "webhooks replay --faild\n")
        #expect(broken.status == 2)
    }
}
