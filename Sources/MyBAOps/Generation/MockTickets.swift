import Foundation

/// Tickets made from templates when no AI key is configured (`"provider":"mock"`), so the whole
/// product works on a fresh machine. Deterministic: the same input gives the same ticket.
public enum MockTickets {
    public static let model = "mock-template-v1"

    public static func ticket(for input: String) -> Ticket {
        // By scalar rather than by Character: grapheme breaking cost more than the template.
        let scalars = input.unicodeScalars
        let isSpace = { (scalar: Unicode.Scalar) in scalar.properties.isWhitespace }
        let start = scalars.firstIndex { !isSpace($0) } ?? scalars.endIndex
        let end = scalars.lastIndex { !isSpace($0) }.map(scalars.index(after:)) ?? start
        let text = String(scalars[start..<max(start, end)])
        let lower = text.lowercased()
        let firstLine = text.unicodeScalars.firstIndex(where: Self.isLineBreak).map { String(text.unicodeScalars[..<$0]) } ?? text
        let summary = firstLine.count > 72 ? String(firstLine.prefix(69)) + "…" : firstLine
        // Keywords are ASCII, so a byte search of the lowercased UTF-8 finds what a string search
        // finds, without Foundation's locale-aware search (which cost more than the rest).
        let bytes = Array(lower.utf8)
        let mentions = { (keyword: String) in bytes.containsSubsequence(Array(keyword.utf8)) }
        let isBug = ["bug", "error", "crash", "broken", "fix", "fails"].contains(where: mentions)
        let isUrgent = ["urgent", "asap", "outage", "production", "security"].contains(where: mentions)
        var labels = [isBug ? "bug" : "feature"]
        for (keyword, label) in [
            ("api", "backend"), ("server", "backend"), ("ui", "frontend"), ("page", "frontend"), ("button", "frontend"), ("test", "testing"),
            ("security", "security"), ("performance", "performance"), ("slow", "performance"),
        ]
        where mentions(keyword) && !labels.contains(label) {
            labels.append(label)
        }
        var words = 0
        var inWord = false
        for scalar in text.unicodeScalars {
            let space = isSpace(scalar)
            if !space && !inWord { words += 1 }
            inWord = !space
        }
        let points = words < 15 ? 2 : words < 40 ? 3 : words < 100 ? 5 : 8
        let criteria =
            isBug
            ? [
                "The problem described can no longer be reproduced", "A regression test covers the failing case",
                "No new errors appear in the logs after the fix",
            ]
            : [
                "The behaviour described works end to end", "Edge cases and invalid input are handled with clear messages",
                "Tests cover the new behaviour", "Documentation is updated",
            ]
        return Ticket(
            title: (isBug ? "Fix: " : "Implement: ") + summary,
            description: text,
            acceptanceCriteria: criteria,
            priority: isUrgent ? "High" : "Medium",
            storyPoints: points,
            labels: labels
        )
    }

    /// What `Character.isNewline` calls a line break.
    private static func isLineBreak(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x0A...0x0D, 0x85, 0x2028, 0x2029: return true
        default: return false
        }
    }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in these bytes.
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard let first = needle.first else { return true }
        guard count >= needle.count else { return false }
        for start in 0...(count - needle.count) where self[start] == first {
            if needle.indices.allSatisfy({ self[start + $0] == needle[$0] }) { return true }
        }
        return false
    }
}

extension MockTickets {
    /// The ticket as a provider would write it (its JSON), in the pieces a stream carries: one
    /// line at a time, each with its newline.
    static func streamedText(of ticket: Ticket) -> [String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let text = (try? encoder.encode(ticket)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { $0 + "\n" }
    }
}
