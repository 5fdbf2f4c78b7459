import MyBAOps

/// Renders rows as aligned columns; numeric columns align right. Plain text, so output pipes
/// into `grep`, `awk` and `cut` as it is.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    /// Per row, how to colour a cell (column, padded text) once laid out; nil: plain.
    private var styles: [((Int, String) -> String)?] = []

    init(_ headers: [String]) {
        self.headers = headers
    }

    /// Adds a row; every cell is escaped (`TerminalText`), since a table's cells are data and
    /// data may come from outside.
    mutating func add(_ row: [String], style: ((_ column: Int, _ text: String) -> String)? = nil) {
        rows.append(row.map(TerminalText.escape))
        styles.append(style)
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
        func line(_ cells: [String], style: ((Int, String) -> String)? = nil) -> String {
            var parts: [String] = []
            for index in 0..<columnCount {
                let cell = index < cells.count ? cells[index] : ""
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                let isLast = index == columnCount - 1
                // Colour goes on after the width is counted, around the text only.
                let text = style?(index, cell) ?? cell
                parts.append(numeric[index] ? padding + text : (isLast ? text : text + padding))
            }
            return parts.joined(separator: "  ")
        }
        var lines = [bold(line(headers))]
        lines.append(contentsOf: zip(rows, styles).map { line($0.0, style: $0.1) })
        return lines.joined(separator: "\n")
    }
}
