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
        let isBug = ["bug", "error", "crash", "broken", "fix", "fails"].contains { lower.contains($0) }
        let isUrgent = ["urgent", "asap", "outage", "production", "security"].contains { lower.contains($0) }
        var labels = [isBug ? "bug" : "feature"]
        for (keyword, label) in [("api", "backend"), ("server", "backend"), ("ui", "frontend"), ("page", "frontend"), ("button", "frontend"), ("test", "testing"), ("security", "security"), ("performance", "performance"), ("slow", "performance")]
        where lower.contains(keyword) && !labels.contains(label) {
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
