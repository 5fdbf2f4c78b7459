import Foundation

/// Request ids, for the server's requests and the console's commands alike.
public enum RequestIdentifier {
    /// `req_` and 32 hex digits: 48 bits of milliseconds since 1970, then 80 random bits.
    /// Time first, so ids sort by when they were made and the indexes keyed by them (ledger
    /// entries by request, generations by their default key) grow at one end: random keys
    /// scattered each insert over the whole index, so with a growing ledger every write read
    /// and rewrote pages the cache no longer held.
    public static func generate(now: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        let milliseconds = UInt64(max(0, (now.timeIntervalSince1970 * 1000).rounded())) & 0xFFFF_FFFF_FFFF
        let random = generator.next() as UInt64
        let high = (milliseconds << 16) | (random >> 48)
        let low = generator.next() as UInt64
        let bytes = withUnsafeBytes(of: high.bigEndian, Array.init) + withUnsafeBytes(of: low.bigEndian, Array.init)
        return "req_" + bytes.lowercaseHex
    }
}
