import Foundation

/// A generated work ticket, in the field names the front end reads.
public struct Ticket: Codable, Equatable, Sendable {
    public var title: String
    public var description: String
    public var acceptanceCriteria: [String]
    public var priority: String
    public var storyPoints: Int
    public var labels: [String]

    public init(title: String, description: String, acceptanceCriteria: [String], priority: String, storyPoints: Int, labels: [String]) {
        self.title = title
        self.description = description
        self.acceptanceCriteria = acceptanceCriteria
        self.priority = priority
        self.storyPoints = storyPoints
        self.labels = labels
    }

    static let priorities = ["Low", "Medium", "High", "Critical"]
    static let storyPointScale = [1, 2, 3, 5, 8, 13]

    /// The ticket as Markdown, as the front end shows and copies it.
    public var markdown: String {
        var lines = ["# \(title)", "", "## Description", "", description, "", "## Acceptance Criteria", ""]
        lines += acceptanceCriteria.map { "- [ ] \($0)" }
        lines += ["", "**Priority:** \(priority)", "**Story Points:** \(storyPoints)"]
        if !labels.isEmpty { lines.append("**Labels:** \(labels.joined(separator: ", "))") }
        return lines.joined(separator: "\n")
    }

    /// Reads a provider's reply: the JSON object the prompt asks for (also inside a code fence or
    /// surrounded by prose), else the sections of a Markdown answer. Never fails: a reply that
    /// is neither becomes a ticket whose description is the text.
    public static func parse(providerText text: String, input: String) -> Ticket {
        if let ticket = parseJSON(text) { return ticket }
        return parseMarkdown(text, input: input)
    }

    static func parseJSON(_ text: String) -> Ticket? {
        guard let start = text.firstIndex(of: "{"), let end = text.lastIndex(of: "}"), start < end,
            let object = try? JSONSerialization.jsonObject(with: Data(text[start...end].utf8)) as? [String: Any],
            let title = (object["title"] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines), !title.isEmpty
        else { return nil }
        let criteria = (object["acceptanceCriteria"] ?? object["acceptance_criteria"]) as? [Any] ?? []
        let points: Int? = (object["storyPoints"] ?? object["story_points"]).flatMap { value in
            (value as? NSNumber)?.intValue ?? (value as? String).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
        return Ticket(
            title: String(title.prefix(200)),
            description: (object["description"] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "",
            acceptanceCriteria: criteria.compactMap { ($0 as? String)?.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty },
            priority: normalizedPriority(object["priority"] as? String),
            storyPoints: normalizedPoints(points),
            labels: ((object["labels"] as? [Any]) ?? []).compactMap { $0 as? String }.map { $0.lowercased() }.filter { !$0.isEmpty }
        )
    }

    static func parseMarkdown(_ text: String, input: String) -> Ticket {
        var title: String?
        var section = "description"
        var description: [String] = []
        var criteria: [String] = []
        var priority: String?
        var points: Int?
        var labels: [String] = []
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            let lower = line.lowercased()
            if line.hasPrefix("#") {
                let heading = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces)
                let headingLower = heading.lowercased()
                if headingLower.contains("acceptance") {
                    section = "criteria"
                } else if headingLower.contains("description") {
                    section = "description"
                } else if title == nil {
                    title = heading.replacingOccurrences(of: "Title:", with: "").trimmingCharacters(in: .whitespaces)
                }
                continue
            }
            if let value = labelled(line, "priority") {
                priority = value
                continue
            }
            if let value = labelled(line, "story points") {
                points = Int(value.filter(\.isNumber))
                continue
            }
            if let value = labelled(line, "labels") {
                labels = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                continue
            }
            if let value = labelled(line, "title"), title == nil {
                title = value
                continue
            }
            if lower.hasPrefix("acceptance criteria") {
                section = "criteria"
                continue
            }
            if line.hasPrefix("- ") || line.hasPrefix("* ") || line.first?.isNumber == true && line.contains(". ") {
                var item = line.drop { $0 == "-" || $0 == "*" || $0.isNumber || $0 == "." || $0 == " " }
                if item.hasPrefix("[ ]") || item.hasPrefix("[x]") { item = item.dropFirst(3) }
                let text = item.trimmingCharacters(in: .whitespaces)
                if section == "criteria" { if !text.isEmpty { criteria.append(text) } } else { description.append(line) }
                continue
            }
            if !line.isEmpty, section == "description" { description.append(line) }
        }
        let fallbackTitle = input.split(whereSeparator: \.isNewline).first.map { String($0.prefix(80)) } ?? "New ticket"
        let body = description.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        return Ticket(
            title: (title?.isEmpty == false ? title! : fallbackTitle),
            description: body.isEmpty ? text.trimmingCharacters(in: .whitespacesAndNewlines) : body,
            acceptanceCriteria: criteria,
            priority: normalizedPriority(priority),
            storyPoints: normalizedPoints(points),
            labels: labels.filter { !$0.isEmpty }
        )
    }

    private static func labelled(_ line: String, _ label: String) -> String? {
        let stripped = line.replacingOccurrences(of: "*", with: "")
        guard stripped.lowercased().hasPrefix(label + ":") else { return nil }
        return stripped.dropFirst(label.count + 1).trimmingCharacters(in: .whitespaces)
    }

    static func normalizedPriority(_ value: String?) -> String {
        let lower = (value ?? "").lowercased()
        return priorities.first { lower.contains($0.lowercased()) } ?? "Medium"
    }

    static func normalizedPoints(_ value: Int?) -> Int {
        guard let value, value > 0 else { return 3 }
        return storyPointScale.min { abs($0 - value) < abs($1 - value) } ?? 3
    }
}
