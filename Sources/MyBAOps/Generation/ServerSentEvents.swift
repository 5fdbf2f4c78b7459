import Foundation

/// An incremental parser of a `text/event-stream` body (the WHATWG rules MyBA's providers use):
/// lines ending in LF or CRLF, `event:` and `data:` fields, a blank line ending an event,
/// comment lines (`: keep-alive`) ignored, several `data:` lines joined by newlines.
struct ServerSentEventParser: Sendable {
    struct Event: Equatable, Sendable {
        var name: String?
        var data: String
    }

    private var pending: [UInt8] = []
    private var name: String?
    private var data: [String] = []

    /// Feeds the next bytes; returns the events they complete.
    mutating func feed(_ bytes: [UInt8]) -> [Event] {
        pending += bytes
        var events: [Event] = []
        var start = pending.startIndex
        while let newline = pending[start...].firstIndex(of: 0x0A) {
            var end = newline
            if end > start && pending[end - 1] == 0x0D { end -= 1 }
            let line = String(decoding: pending[start..<end], as: UTF8.self)
            start = newline + 1
            if line.isEmpty {
                if !data.isEmpty { events.append(Event(name: name, data: data.joined(separator: "\n"))) }
                name = nil
                data = []
                continue
            }
            if line.hasPrefix(":") { continue }
            let field: Substring
            var value: Substring
            if let colon = line.firstIndex(of: ":") {
                field = line[..<colon]
                value = line[line.index(after: colon)...]
                if value.hasPrefix(" ") { value = value.dropFirst() }
            } else {
                field = line[...]
                value = ""
            }
            switch field {
            case "event": name = String(value)
            case "data": data.append(String(value))
            default: break
            }
        }
        pending.removeSubrange(pending.startIndex..<start)
        return events
    }

    /// The last event when the body ends without its blank line.
    mutating func finish() -> [Event] {
        var events = feed([0x0A])
        if !data.isEmpty { events.append(Event(name: name, data: data.joined(separator: "\n"))) }
        return events
    }
}
