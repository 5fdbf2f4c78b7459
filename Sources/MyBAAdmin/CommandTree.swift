import ArgumentParser
import Foundation

/// The command table as the REPL's completion sees it, read from swift-argument-parser's own
/// description of `MyBAAdmin` (its `--experimental-dump-help` JSON), so dispatch, help and
/// completion can never drift apart.
struct CommandTree: Decodable {
    struct Name: Decodable {
        var kind: String
        var name: String
    }

    struct Argument: Decodable {
        var kind: String
        var names: [Name]?
        var valueName: String?
        var shouldDisplay: Bool?
    }

    struct Command: Decodable {
        var commandName: String
        var abstract: String?
        var subcommands: [Command]?
        var arguments: [Argument]?

        /// A one-line hint: what the command takes and does.
        var hint: String {
            var parts = [commandName]
            for argument in arguments ?? [] where argument.shouldDisplay != false {
                let value = argument.valueName.map { "<\($0)>" } ?? ""
                switch argument.kind {
                case "positional": parts.append(value)
                case "option":
                    if let name = argument.names?.first(where: { $0.kind == "long" })?.name, !["db"].contains(name) {
                        parts.append("[--\(name) \(value)]")
                    }
                default:
                    if let name = argument.names?.first(where: { $0.kind == "long" })?.name, !["help", "json", "version"].contains(name) {
                        parts.append("[--\(name)]")
                    }
                }
            }
            return parts.joined(separator: " ") + (abstract.map { "  — \($0)" } ?? "")
        }
    }

    /// The command `words` name, if they name one.
    func node(for words: [String]) -> Command {
        var node = command
        for word in words {
            guard let next = node.subcommands?.first(where: { $0.commandName == word }) else { break }
            node = next
        }
        return node
    }

    var command: Command

    static let shared: CommandTree? = try? JSONDecoder().decode(CommandTree.self, from: Data(MyBAAdmin._dumpHelp().utf8))

    /// Words that may follow the `words` already typed, starting with `current`.
    func candidates(words: [String], current: String, userIds: (String) -> [String]) -> [String] {
        var node = command
        var consumed = 0
        for word in words {
            guard let next = node.subcommands?.first(where: { $0.commandName == word }) else { break }
            node = next
            consumed += 1
        }
        let rest = Array(words.dropFirst(consumed))
        var options: [String] = []
        for argument in node.arguments ?? [] where argument.kind != "positional" && argument.shouldDisplay != false {
            for name in argument.names ?? [] {
                options.append(name.kind == "short" ? "-\(name.name)" : "--\(name.name)")
            }
        }
        if current.hasPrefix("-") {
            return options.filter { $0.hasPrefix(current) && $0 != "--help" && $0 != "-h" }.sorted()
        }
        if let subcommands = node.subcommands, !subcommands.isEmpty, rest.isEmpty {
            var names = subcommands.map(\.commandName).filter { $0 != "help" }
            if consumed == 0 { names += ["help", "exit", "quit"] }
            return names.filter { $0.hasPrefix(current) }.sorted()
        }
        // The next positional: user ids come from the database.
        let positionals = (node.arguments ?? []).filter { $0.kind == "positional" }
        let positionalIndex = rest.filter { !$0.hasPrefix("-") }.count
        if positionalIndex < positionals.count, (positionals[positionalIndex].valueName ?? "").contains("user") {
            return userIds(current)
        }
        if current.hasPrefix("user_") { return userIds(current) }
        return []
    }
}
