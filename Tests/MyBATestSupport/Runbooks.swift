import Foundation

/// The operator runbooks (`runbooks/`), as the tests read them.
public enum Runbooks {
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("runbooks")

    /// The `myba-admin` lines of a runbook's ```sh blocks, without the program name and comments.
    public static func commands(in text: String) -> [String] {
        var inShell = false
        var found: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") {
                inShell = line == "```sh"
                continue
            }
            guard inShell, line.hasPrefix("myba-admin ") else { continue }
            var command = String(line.dropFirst("myba-admin ".count))
            if let comment = command.range(of: "  #") { command = String(command[..<comment.lowerBound]) }
            found.append(command.trimmingCharacters(in: .whitespaces))
        }
        return found
    }

    /// The commands of `runbooks/<file>`.
    public static func commands(ofFile file: String) throws -> [String] {
        commands(in: try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8))
    }
}
