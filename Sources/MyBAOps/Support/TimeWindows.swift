import Foundation

extension Duration {
    /// The duration in seconds, as `TimeInterval` APIs (and settings) count it.
    public var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// A limit on events per sliding hour (new anonymous sessions per address, checkouts per
/// account, own-key generations per address and account), counted from stored timestamps.
enum HourlyWindow {
    static let length: TimeInterval = 3600

    /// The stored form of where the window counted at `now` starts.
    static func start(_ now: Date) -> String { SQLTimestamp.string(now.addingTimeInterval(-length)) }

    /// Seconds until one more event is allowed, given the window's stored timestamps oldest
    /// first; nil when it is allowed now.
    static func retryAfter(oldestFirst recent: [String], limit: Int, now: Date) -> Int? {
        guard recent.count >= limit else { return nil }
        let oldest = recent.first.flatMap(SQLTimestamp.date) ?? now
        return max(1, Int(oldest.addingTimeInterval(length).timeIntervalSince(now).rounded(.up)))
    }
}
