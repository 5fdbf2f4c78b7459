import Foundation

/// The date formats MyBA shows: `YYYY-MM-DD` in the API (as the legacy service did) and
/// RFC 3339 with milliseconds in UTC in logs and the console.
public enum Timestamps {
    /// `2026-11-25`, UTC.
    public static func day(_ date: Date) -> String {
        let c = utcCalendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }

    /// `2026-11-25T14:03:07.123Z`.
    public static func timestamp(_ date: Date) -> String {
        // Every log line carries one: written like the database's timestamps, without
        // String(format:), which cost a log line more than the rest of it.
        var bytes = SQLTimestamp.utcBytes(date, separator: UInt8(ascii: "T"))
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses `YYYY-MM-DD` or an RFC 3339 timestamp (with or without fractional seconds).
    public static func parse(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.count == 10 {
            let parts = trimmed.split(separator: "-").compactMap { Int($0) }
            guard parts.count == 3 else { return nil }
            return utcCalendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2]))
        }
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = withFraction.date(from: trimmed) { return date }
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        return plain.date(from: trimmed)
    }

    private static let utcCalendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()
}
