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
        var subcommands: [Command]?
        var arguments: [Argument]?
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
