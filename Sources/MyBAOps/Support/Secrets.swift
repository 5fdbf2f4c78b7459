/// Finds and masks secrets in text an operator typed, before it reaches a history file, an
/// audit row or a log.
public enum Secrets {
    static let prefixes = ["sk_", "rk_", "whsec_", "pk_live_", "sk-"]
    static let secretOptions = ["--api-key", "--secret", "--key", "--token", "--password"]

    /// True when `line` carries something that must not be stored.
    public static func contains(_ line: String) -> Bool {
        mask(line) != line
    }

    /// `line` with every secret-looking word, and the value of every secret option, replaced by `***`.
    public static func mask(_ line: String) -> String {
        var words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        var maskNext = false
        for index in words.indices {
            let word = words[index]
            let bare = word.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if maskNext && !word.isEmpty {
                words[index] = "***"
                maskNext = false
                continue
            }
            if let option = secretOptions.first(where: { bare == $0 || bare.hasPrefix($0 + "=") }) {
                if bare.contains("=") { words[index] = option + "=***" } else { maskNext = true }
                continue
            }
            if prefixes.contains(where: { bare.hasPrefix($0) && bare.count > $0.count + 3 }) {
                words[index] = "***"
            }
        }
        return words.joined(separator: " ")
    }
}

import Foundation
