import Foundation
import Testing

@testable import MyBAOps

/// The vectors in `../shared/vectors/webhook-signatures.json` were produced by stripe-python and
/// svix; a copy lives in `Tests/Fixtures` so a clone without `shared/` still tests them.
struct SignatureVectors {
    let object: [String: [String: Any]]

    init() throws {
        let here = URL(fileURLWithPath: #filePath)
        let packageRoot = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let copy = packageRoot.appendingPathComponent("Tests/Fixtures/webhook-signatures.json")
        let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/vectors/webhook-signatures.json")
        let data = try Data(contentsOf: copy)
        if let sharedData = try? Data(contentsOf: shared) {
            #expect(sharedData == data, "Tests/Fixtures/webhook-signatures.json differs from ../shared/vectors: copy it again")
        }
        object = try JSONSerialization.jsonObject(with: data) as! [String: [String: Any]]
    }

    subscript(name: String) -> [String: Any] { object[name]! }
}

@Suite("Webhook signatures")
struct WebhookSignatureTests {
    @Test("the stripe-python vector verifies, and every one-byte change of body, header or secret fails")
    func stripeVector() throws {
        let vector = try SignatureVectors()["stripe"]
        let secret = vector["secret"] as! String
        let payload = Array((vector["payload"] as! String).utf8)
        let header = vector["header"] as! String
        let at = Date(timeIntervalSince1970: Double(vector["timestamp"] as! Int) + 10)
        try StripeSignature.verify(payload: payload, header: header, secret: secret, now: at)
        #expect(StripeSignature.header(payload: payload, timestamp: vector["timestamp"] as! Int, secret: secret) == header)

        for index in payload.indices {
            var tampered = payload
            tampered[index] ^= 0x01
            #expect(throws: WebhookSignatureError.self) { try StripeSignature.verify(payload: tampered, header: header, secret: secret, now: at) }
        }
        let signatureStart = header.range(of: "v1=")!.upperBound
        for offset in 0..<64 {
            var bytes = Array(header.utf8)
            let index = header.utf8.distance(from: header.utf8.startIndex, to: signatureStart) + offset
            bytes[index] = bytes[index] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            #expect(throws: WebhookSignatureError.self) {
                try StripeSignature.verify(payload: payload, header: String(decoding: bytes, as: UTF8.self), secret: secret, now: at)
            }
        }
        var wrongSecret = Array(secret.utf8)
        wrongSecret[wrongSecret.count - 1] ^= 0x01
        #expect(throws: WebhookSignatureError.signatureMismatch) {
            try StripeSignature.verify(payload: payload, header: header, secret: String(decoding: wrongSecret, as: UTF8.self), now: at)
        }
    }

    @Test("Stripe: a stale timestamp, a missing header or no v1 is refused; any of several v1 may match")
    func stripeRules() throws {
        let vector = try SignatureVectors()["stripe"]
        let secret = vector["secret"] as! String
        let payload = Array((vector["payload"] as! String).utf8)
        let header = vector["header"] as! String
        let t = vector["timestamp"] as! Int
        #expect(throws: WebhookSignatureError.timestampTooOld) {
            try StripeSignature.verify(payload: payload, header: header, secret: secret, now: Date(timeIntervalSince1970: Double(t + 301)))
        }
        #expect(throws: WebhookSignatureError.missingHeader("Stripe-Signature")) {
            try StripeSignature.verify(payload: payload, header: nil, secret: secret)
        }
        #expect(throws: WebhookSignatureError.noSignatureOfSupportedVersion) {
            try StripeSignature.verify(payload: payload, header: "t=\(t),v0=abc", secret: secret, now: Date(timeIntervalSince1970: Double(t)))
        }
        let rotated = "t=\(t),v1=\(String(repeating: "0", count: 64)),v1=\(StripeSignature.signature(payload: payload, timestamp: t, secret: secret))"
        try StripeSignature.verify(payload: payload, header: rotated, secret: secret, now: Date(timeIntervalSince1970: Double(t)))
    }

    @Test("both Svix vectors verify (Svix's own and Clerk's shape), and every one-byte change fails")
    func svixVectors() throws {
        let vectors = try SignatureVectors()
        for name in ["svix_canonical", "svix_clerk"] {
            let vector = vectors[name]
            let secret = vector["secret"] as! String
            let id = vector["svix-id"] as! String
            let timestamp = vector["svix-timestamp"] as! String
            let signature = vector["svix-signature"] as! String
            let body = Array((vector["body"] as! String).utf8)
            let at = Date(timeIntervalSince1970: Double(timestamp)! + 10)
            try SvixSignature.verify(payload: body, id: id, timestamp: timestamp, signatureHeader: signature, secret: secret, now: at)
            for index in body.indices {
                var tampered = body
                tampered[index] ^= 0x01
                #expect(throws: WebhookSignatureError.self) {
                    try SvixSignature.verify(payload: tampered, id: id, timestamp: timestamp, signatureHeader: signature, secret: secret, now: at)
                }
            }
            for index in Array(id.utf8).indices {
                var bytes = Array(id.utf8)
                bytes[index] ^= 0x01
                #expect(throws: WebhookSignatureError.self) {
                    try SvixSignature.verify(
                        payload: body,
                        id: String(decoding: bytes, as: UTF8.self),
                        timestamp: timestamp,
                        signatureHeader: signature,
                        secret: secret,
                        now: at
                    )
                }
            }
            #expect(throws: WebhookSignatureError.timestampTooOld) {
                try SvixSignature.verify(
                    payload: body,
                    id: id,
                    timestamp: timestamp,
                    signatureHeader: signature,
                    secret: secret,
                    now: at.addingTimeInterval(400)
                )
            }
            #expect(throws: WebhookSignatureError.timestampInFuture) {
                try SvixSignature.verify(
                    payload: body,
                    id: id,
                    timestamp: timestamp,
                    signatureHeader: signature,
                    secret: secret,
                    now: at.addingTimeInterval(-400)
                )
            }
            // Several signatures (secret rotation) and unknown versions are tolerated.
            try SvixSignature.verify(
                payload: body,
                id: id,
                timestamp: timestamp,
                signatureHeader: "v2,abc v1,bm90IGl0 \(signature)",
                secret: secret,
                now: at
            )
        }
    }
}
