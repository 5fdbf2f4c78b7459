import Foundation

/// Who the client is, for limits on free things (new anonymous sessions, own-key generations).
///
/// Behind proxies the connection's peer is the nearest proxy, and `X-Forwarded-For` lists the
/// addresses the request passed through, each proxy appending the peer it saw. Only the entries
/// appended by the proxies we run can be believed: whatever stands to their left the client wrote
/// itself. With `trustedProxies` = N in front (`MYBA_TRUST_PROXY=N`), the client is therefore the
/// Nth address counting from the right, the peer being the 0th (Express's `trust proxy` hop
/// count). Only well-formed IPv4/IPv6 addresses count; IPv6 clients are counted by their /64,
/// since one subscriber usually holds a whole /64.
public enum ClientAddress {
    /// The client's address: the peer, or the Nth hop from it through `forwardedFor` (every
    /// `X-Forwarded-For` field, in order). A malformed entry stops the walk at the hop before it.
    public static func resolve(peer: String, forwardedFor: [String], trustedProxies: Int) -> String {
        guard trustedProxies > 0 else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        var client = peer
        for hop in hops.reversed().prefix(trustedProxies) {
            guard let address = normalized(hop) else { break }
            client = address
        }
        return client
    }

    /// The key a rate limit counts by: an IPv4 address as it is, an IPv6 address's /64 prefix
    /// (IPv4-mapped IPv6 as IPv4), anything else as given.
    public static func limitKey(_ address: String) -> String {
        var v6 = in6_addr()
        if address.contains(":"), inet_pton(AF_INET6, address, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return bytes[12..<16].map(String.init).joined(separator: ".")
            }
            let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            return groups.joined(separator: ":") + "::/64"
        }
        return address
    }

    /// The address of one `X-Forwarded-For` entry, or nil when it is not an IP address. Accepts
    /// the forms proxies write: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
    static func normalized(_ entry: String) -> String? {
        var text = Substring(entry)
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            text = text[text.index(after: text.startIndex)..<close]
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            text = text[..<colon]
        }
        let candidate = String(text)
        guard !candidate.isEmpty, candidate.utf8.count <= 45 else { return nil }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, candidate, &v4) == 1 || inet_pton(AF_INET6, candidate, &v6) == 1 { return candidate }
        return nil
    }
}
