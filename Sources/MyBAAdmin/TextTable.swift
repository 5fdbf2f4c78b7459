import MyBAOps

/// Renders rows as aligned columns; numeric columns align right. Plain text, so output pipes
/// into `grep`, `awk` and `cut` as it is.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []

    init(_ headers: [String]) {
        self.headers = headers
    }

    /// Adds a row; every cell is escaped (`TerminalText`), since a table's cells are data and
    /// data may come from outside.
    mutating func add(_ row: [String]) {
        rows.append(row.map(TerminalText.escape))
    }

    func render(bold: (String) -> String = { $0 }) -> String {
        let columnCount = headers.count
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < columnCount {
                widths[index] = max(widths[index], cell.count)
            }
        }
        let numeric = (0..<columnCount).map { index in
            !rows.isEmpty
                && rows.allSatisfy { row in
                    index < row.count && (row[index].isEmpty || row[index] == "-" || Int(row[index].replacingOccurrences(of: "+", with: "")) != nil)
                }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for index in 0..<columnCount {
                let cell = index < cells.count ? cells[index] : ""
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                let isLast = index == columnCount - 1
                parts.append(numeric[index] ? padding + cell : (isLast ? cell : cell + padding))
            }
            return parts.joined(separator: "  ")
        }
        var lines = [bold(line(headers))]
        lines.append(contentsOf: rows.map(line))
        return lines.joined(separator: "\n")
    }
}
