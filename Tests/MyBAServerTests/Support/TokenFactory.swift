import Crypto
import CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBAOps
import NIOCore
import Synchronization

/// RSA keys and Clerk-shaped session tokens made in the test.
struct TokenFactory {
    let privateKey: _RSA.Signing.PrivateKey
    let kid: String

    init(kid: String = "ins_test_key_1") throws {
        privateKey = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        self.kid = kid
    }

    var publicKeyPEM: String { privateKey.publicKey.pemRepresentation }

    /// The key as a JWKS entry.
    var jwk: [String: String] {
        let primitives = try! privateKey.publicKey.getKeyPrimitives()
        return [
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": Base64URL.encode(primitives.modulus),
            "e": Base64URL.encode(primitives.publicExponent),
        ]
    }

    func token(
        sub: String? = "user_2abc",
        alg: String = "RS256",
        exp: TimeInterval = 60,
        nbf: TimeInterval? = -10,
        iat: TimeInterval? = -10,
        azp: String? = "http://localhost:5173",
        typ: String? = "JWT",
        kid: String? = nil,
        iss: String = "https://clerk.example.com",
        now: Date = Date()
    ) throws -> String {
        var header: [String: Any] = ["alg": alg, "kid": kid ?? self.kid]
        if let typ { header["typ"] = typ }
        var claims: [String: Any] = ["exp": Int(now.timeIntervalSince1970 + exp), "iss": iss, "sid": "sess_1"]
        if let sub { claims["sub"] = sub }
        if let nbf { claims["nbf"] = Int(now.timeIntervalSince1970 + nbf) }
        if let iat { claims["iat"] = Int(now.timeIntervalSince1970 + iat) }
        if let azp { claims["azp"] = azp }
        let signingInput =
            Base64URL.encode(try JSONSerialization.data(withJSONObject: header)) + "."
            + Base64URL.encode(try JSONSerialization.data(withJSONObject: claims))
        let data = Data(signingInput.utf8)
        let signature: Data
        switch alg {
        case "RS384": signature = try privateKey.signature(for: SHA384.hash(data: data), padding: .insecurePKCS1v1_5).rawRepresentation
        case "RS512": signature = try privateKey.signature(for: SHA512.hash(data: data), padding: .insecurePKCS1v1_5).rawRepresentation
        case "none": signature = Data()
        case "HS256":
            // The classic confusion attack: HMAC keyed with the public key's PEM.
            signature = Data(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: Data(publicKeyPEM.utf8))))
        default: signature = try privateKey.signature(for: SHA256.hash(data: data), padding: .insecurePKCS1v1_5).rawRepresentation
        }
        return signingInput + "." + Base64URL.encode(signature)
    }
}
