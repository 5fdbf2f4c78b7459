import Foundation

/// Tickets made from templates when no AI key is configured (`"provider":"mock"`), so the whole
/// product works on a fresh machine. Deterministic: the same input gives the same ticket.
public enum MockTickets {
    public static let model = "mock-template-v1"

    public static func ticket(for input: String) -> Ticket {
        let text = input.trimmingCharacters(in: .whitespacesAndNewlines)
        let lower = text.lowercased()
        let firstLine = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? text
        let summary = firstLine.count > 72 ? String(firstLine.prefix(69)) + "…" : firstLine
        // Keywords are ASCII, so a byte search of the lowercased UTF-8 finds what a string search
        // finds, without Foundation's locale-aware search (which cost more than the rest).
        let bytes = Array(lower.utf8)
        let mentions = { (keyword: String) in bytes.containsSubsequence(Array(keyword.utf8)) }
        let isBug = ["bug", "error", "crash", "broken", "fix", "fails"].contains(where: mentions)
        let isUrgent = ["urgent", "asap", "outage", "production", "security"].contains(where: mentions)
        var labels = [isBug ? "bug" : "feature"]
        for (keyword, label) in [("api", "backend"), ("server", "backend"), ("ui", "frontend"), ("page", "frontend"), ("button", "frontend"), ("test", "testing"), ("security", "security"), ("performance", "performance"), ("slow", "performance")]
        where mentions(keyword) && !labels.contains(label) {
            labels.append(label)
        }
        let words = text.split(whereSeparator: { $0.isWhitespace }).count
        let points = words < 15 ? 2 : words < 40 ? 3 : words < 100 ? 5 : 8
        let criteria = isBug
            ? ["The problem described can no longer be reproduced", "A regression test covers the failing case", "No new errors appear in the logs after the fix"]
            : ["The behaviour described works end to end", "Edge cases and invalid input are handled with clear messages", "Tests cover the new behaviour", "Documentation is updated"]
        return Ticket(
            title: (isBug ? "Fix: " : "Implement: ") + summary,
            description: text,
            acceptanceCriteria: criteria,
            priority: isUrgent ? "High" : "Medium",
            storyPoints: points,
            labels: labels)
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
