import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#endif

/// Dates as the database stores them: UTC text `yyyy-MM-dd HH:mm:ss.SSS` (GRDB's own format, so
/// `sqlite3` users and GRDB's decoders read the same thing), converted without `DateFormatter`
/// or `Calendar`, which cost more than the rest of a ledger write together.
enum SQLTimestamp {
    /// Milliseconds since 1970, rounded down.
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// The date a stored timestamp reads back as.
    static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// A `timestamptz` read back from PostgreSQL as the millisecond date it was written as:
    /// postgres-nio converts through microseconds in floating point, which can land a microsecond
    /// off, and SQLite's dates (what the rules compare with) are whole milliseconds.
    static func fromPostgres(_ date: Date) -> Date {
        Self.date(milliseconds: Int64((date.timeIntervalSince1970 * 1000).rounded()))
    }

    static func string(_ date: Date) -> String {
        String(decoding: utcBytes(date, separator: UInt8(ascii: " ")), as: UTF8.self)
    }

    /// `yyyy-MM-dd?HH:mm:ss.SSS` in UTC with `separator` between date and time.
    static func utcBytes(_ date: Date, separator: UInt8) -> [UInt8] {
        let ms = milliseconds(date)
        var seconds = ms / 1000
        var millis = ms % 1000
        if millis < 0 {
            millis += 1000
            seconds -= 1
        }
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var bytes = [UInt8](repeating: 0, count: 23)
        func put(_ value: Int, at offset: Int, digits: Int) {
            var value = value
            for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                bytes[index] = UInt8(48 + value % 10)
                value /= 10
            }
        }
        put(Int(parts.tm_year) + 1900, at: 0, digits: 4)
        bytes[4] = UInt8(ascii: "-")
        put(Int(parts.tm_mon) + 1, at: 5, digits: 2)
        bytes[7] = UInt8(ascii: "-")
        put(Int(parts.tm_mday), at: 8, digits: 2)
        bytes[10] = separator
        put(Int(parts.tm_hour), at: 11, digits: 2)
        bytes[13] = UInt8(ascii: ":")
        put(Int(parts.tm_min), at: 14, digits: 2)
        bytes[16] = UInt8(ascii: ":")
        put(Int(parts.tm_sec), at: 17, digits: 2)
        bytes[19] = UInt8(ascii: ".")
        put(Int(millis), at: 20, digits: 3)
        return bytes
    }

    /// Parses `yyyy-MM-dd HH:mm:ss[.SSS]` (also with `T`), as UTC. Falls back to GRDB for any
    /// other form SQLite accepts.
    static func date(_ text: String) -> Date? {
        var utf8 = Array(text.utf8)
        if utf8.count == 19 { utf8 += Array(".000".utf8) }
        guard utf8.count >= 23, utf8[4] == 45, utf8[7] == 45, utf8[10] == 32 || utf8[10] == 84,
            utf8[13] == 58, utf8[16] == 58, utf8[19] == 46
        else {
            return Date.fromDatabaseValue(text.databaseValue)
        }
        func number(_ from: Int, _ count: Int) -> Int? {
            var value = 0
            for index in from..<(from + count) {
                let byte = utf8[index]
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
            let millis = number(20, 3), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let total = ((Int64(days) * 24 + Int64(hour)) * 60 + Int64(minute)) * 60 + Int64(second)
        return date(milliseconds: total * 1000 + Int64(millis))
    }

    static func date(_ value: DatabaseValue) -> Date? {
        switch value.storage {
        case .string(let text): return date(text)
        case .null: return nil
        default: return Date.fromDatabaseValue(value)
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146097 + dayOfEra - 719468
    }
}

extension Row {
    /// A date column stored by MyBA (see `SQLTimestamp`).
    func timestamp(_ column: String) -> Date? {
        SQLTimestamp.date(self[column] as DatabaseValue)
    }

    func timestamp(at index: Int) -> Date? {
        SQLTimestamp.date(self[index] as DatabaseValue)
    }
}
