import Foundation

/// Finds and masks secrets in text: what an operator typed (before it reaches a history file, an
/// audit row or a log) and what an upstream answered (an AI provider's error may quote the key
/// it was sent).
public enum Secrets {
    static let secretOptions = ["--api-key", "--secret", "--key", "--token", "--password"]
    /// Variable names whose value is a secret: `STRIPE_SECRET_KEY=…`, `MYBA_METRICS_TOKEN=…`.
    static let secretNameWords = ["SECRET", "KEY", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL"]

    /// A secret key wherever it stands (inside quotes, after `=`, in JSON), or a JWT.
    /// Only at the start of a word or after a non-alphanumeric (so "risk-free" stays).
    nonisolated(unsafe) static let embedded =
        #/(^|[^A-Za-z0-9])((?:sk_|rk_|whsec_|pk_live_|sk-)[A-Za-z0-9_\-]{4,}|eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*)?)/#

    /// The password of a database URL: `postgres://user:PASSWORD@host/…`.
    nonisolated(unsafe) static let urlPassword = #/(postgres(?:ql)?://[^:/@\s]+:)([^@\s]+)@/#

    /// True when `line` carries something that must not be stored.
    public static func contains(_ line: String) -> Bool {
        mask(line) != line
    }

    /// `line` with every secret replaced by `***`: keys and JWTs anywhere, the value of every
    /// secret option (`--api-key X`, `--token=X`), of `NAME=value` where the name says secret,
    /// the word after `Bearer`, and the password of a `postgres://user:password@…` URL.
    public static func mask(_ line: String) -> String {
        var words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        var maskNext = false
        for index in words.indices {
            let word = words[index]
            if word.isEmpty { continue }
            let bare = word.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if maskNext {
                words[index] = "***"
                maskNext = false
                continue
            }
            if let option = secretOptions.first(where: { bare == $0 || bare.hasPrefix($0 + "=") }) {
                if bare.contains("=") { words[index] = option + "=***" } else { maskNext = true }
                continue
            }
            if bare.lowercased() == "bearer" || bare.lowercased().hasSuffix(":bearer") {
                maskNext = true
                continue
            }
            if let equals = bare.firstIndex(of: "="), equals != bare.startIndex {
                let name = bare[..<equals].uppercased()
                if secretNameWords.contains(where: { name.contains($0) }) && bare.index(after: equals) < bare.endIndex {
                    words[index] = String(bare[...equals]) + "***"
                    continue
                }
            }
            words[index] = word.replacing(embedded) { match in match.output.1 + "***" }
                .replacing(urlPassword) { match in match.output.1 + "***@" }
        }
        return words.joined(separator: " ")
    }
}
