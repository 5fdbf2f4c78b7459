import Crypto
import Foundation

/// Why a webhook delivery was refused. Nothing is stored for a refused delivery.
public enum WebhookSignatureError: Error, Equatable, CustomStringConvertible, Sendable {
    case missingHeader(String)
    case malformedHeader(String)
    case noSignatureOfSupportedVersion
    case timestampTooOld
    case timestampInFuture
    case signatureMismatch
    case secretNotConfigured(String)
    case malformedSecret

    public var description: String {
        switch self {
        case .missingHeader(let name): return "missing \(name) header"
        case .malformedHeader(let name): return "malformed \(name) header"
        case .noSignatureOfSupportedVersion: return "no v1 signature in the header"
        case .timestampTooOld: return "signature timestamp is too old (more than 5 minutes)"
        case .timestampInFuture: return "signature timestamp is in the future"
        case .signatureMismatch: return "no signature matches the body (wrong secret or altered body)"
        case .secretNotConfigured(let variable): return "\(variable) is not configured; deliveries cannot be verified"
        case .malformedSecret: return "the webhook secret is not a whsec_ base64 secret"
        }
    }
}

/// Stripe's scheme: `Stripe-Signature: t=…,v1=…`, HMAC-SHA256 over `"<t>.<raw body>"` keyed
/// with the whole secret string (prefix included), lowercase hex, 300 s tolerance.
public enum StripeSignature {
    public static let tolerance: TimeInterval = 300

    public static func verify(payload: some DataProtocol, header: String?, secret: String, now: Date = Date()) throws {
        guard let header, !header.isEmpty else { throw WebhookSignatureError.missingHeader("Stripe-Signature") }
        var timestamp: Int?
        var signatures: [String] = []
        for item in header.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            if key == "t" { timestamp = Int(value) } else if key == "v1" { signatures.append(value) }
        }
        guard let timestamp else { throw WebhookSignatureError.malformedHeader("Stripe-Signature") }
        guard !signatures.isEmpty else { throw WebhookSignatureError.noSignatureOfSupportedVersion }
        let expected = Self.signature(payload: payload, timestamp: timestamp, secret: secret)
        guard signatures.contains(where: { constantTimeEquals(Array($0.utf8), Array(expected.utf8)) }) else {
            throw WebhookSignatureError.signatureMismatch
        }
        guard Double(timestamp) >= now.timeIntervalSince1970 - tolerance else { throw WebhookSignatureError.timestampTooOld }
    }

    /// The `v1` signature of `payload` at `timestamp`, as Stripe (and the emulator) sign it.
    public static func signature(payload: some DataProtocol, timestamp: Int, secret: String) -> String {
        var signed = Data("\(timestamp).".utf8)
        signed.append(contentsOf: payload)
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
        return mac.lowercaseHex
    }

    /// A complete `Stripe-Signature` header value.
    public static func header(payload: some DataProtocol, timestamp: Int, secret: String) -> String {
        "t=\(timestamp),v1=\(signature(payload: payload, timestamp: timestamp, secret: secret))"
    }
}

/// Svix's scheme (Clerk webhooks): `svix-id`, `svix-timestamp`, `svix-signature: v1,<base64> …`;
/// HMAC-SHA256 over `"<id>.<timestamp>.<raw body>"` keyed with the base64-decoded secret after
/// `whsec_`; timestamps more than 5 minutes old or ahead are refused.
public enum SvixSignature {
    public static let tolerance: TimeInterval = 300

    public static func verify(
        payload: some DataProtocol,
        id: String?,
        timestamp: String?,
        signatureHeader: String?,
        secret: String,
        now: Date = Date()
    ) throws {
        guard let id, !id.isEmpty else { throw WebhookSignatureError.missingHeader("svix-id") }
        guard let timestamp, !timestamp.isEmpty else { throw WebhookSignatureError.missingHeader("svix-timestamp") }
        guard let signatureHeader, !signatureHeader.isEmpty else { throw WebhookSignatureError.missingHeader("svix-signature") }
        guard let seconds = Int(timestamp) else { throw WebhookSignatureError.malformedHeader("svix-timestamp") }
        let expected = try Self.signature(payload: payload, id: id, timestamp: timestamp, secret: secret)
        let candidates = signatureHeader.split(separator: " ").compactMap { entry -> String? in
            let parts = entry.split(separator: ",", maxSplits: 1)
            guard parts.count == 2, parts[0] == "v1" else { return nil }
            return String(parts[1])
        }
        guard !candidates.isEmpty else { throw WebhookSignatureError.noSignatureOfSupportedVersion }
        guard candidates.contains(where: { constantTimeEquals(Array($0.utf8), Array(expected.utf8)) }) else {
            throw WebhookSignatureError.signatureMismatch
        }
        let current = now.timeIntervalSince1970
        guard Double(seconds) >= current - tolerance else { throw WebhookSignatureError.timestampTooOld }
        guard Double(seconds) <= current + tolerance else { throw WebhookSignatureError.timestampInFuture }
    }

    /// The base64 `v1` signature, as Svix signs.
    public static func signature(payload: some DataProtocol, id: String, timestamp: String, secret: String) throws -> String {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        guard let key = Data(base64Encoded: encoded), !key.isEmpty else { throw WebhookSignatureError.malformedSecret }
        var signed = Data("\(id).\(timestamp).".utf8)
        signed.append(contentsOf: payload)
        return Data(HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: key))).base64EncodedString()
    }
}

/// Compares without stopping at the first difference, so timing reveals nothing of a secret.
func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in 0..<a.count { difference |= a[index] ^ b[index] }
    return difference == 0
}
