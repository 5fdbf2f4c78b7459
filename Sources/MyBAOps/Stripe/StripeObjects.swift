import Foundation

/// Stripe's wire objects, as much of each as MyBA reads. Unknown fields are ignored, and every
/// field Stripe documents as nullable (or leaves out of some shapes) is optional, so Stripe's own
/// example objects (`../shared/vectors/stripe-fixtures3.json`) decode; the tests hold them to it.
public enum StripeWire {
    /// Stripe's JSON. Keys are mapped by each type's `CodingKeys`, not by a key strategy, which
    /// would rename metadata keys (`user_id`) too.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }

    /// `data.object.amount_refunded is missing` rather than Foundation's debug description.
    public static func explain(_ error: any Error) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])) is missing"
        case DecodingError.valueNotFound(_, let context):
            return "\(path(context.codingPath)) is null"
        case DecodingError.typeMismatch(let type, let context):
            return "\(path(context.codingPath)) is not \(type == String.self ? "a string" : type == Int.self ? "an integer" : "of the expected type")"
        case DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty:
            return "the body is not JSON"
        case DecodingError.dataCorrupted(let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// A reference Stripe sends as an id, or as the object itself when expanded.
public struct StripeReference: Decodable, Equatable, Sendable {
    public var id: String

    public init(id: String) { self.id = id }

    private struct Expanded: Decodable { var id: String }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let id = try? container.decode(String.self) {
            self.id = id
        } else {
            self.id = try container.decode(Expanded.self).id
        }
    }
}

/// Metadata: strings by Stripe's rules. A number (a hand-made event, an old integration) is read
/// as its text rather than failing the whole event.
public struct StripeMetadata: Decodable, Equatable, Sendable {
    public var values: [String: String]

    public init(_ values: [String: String] = [:]) { self.values = values }

    public subscript(key: String) -> String? { values[key] }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        var values: [String: String] = [:]
        for key in container.allKeys {
            if let text = try? container.decode(String.self, forKey: key) {
                values[key.stringValue] = text
            } else if let number = try? container.decode(Int.self, forKey: key) {
                values[key.stringValue] = String(number)
            }
        }
        self.values = values
    }
}

/// An event: `data.object` decoded as `Object`.
public struct StripeEvent<Object: Decodable>: Decodable {
    public var id: String
    public var type: String
    public var created: Int?
    public var data: Payload

    public struct Payload: Decodable {
        public var object: Object
    }

    public var object: Object { data.object }
}

/// The envelope alone, for routing a delivery before its object is read.
public struct StripeEventHeader: Decodable, Sendable {
    public var id: String
    public var type: String
    public var created: Int?
}

public struct StripeCheckoutSession: Decodable, Sendable {
    public var id: String
    public var paymentStatus: String?
    public var status: String?
    public var clientReferenceId: String?
    public var metadata: StripeMetadata?
    public var paymentIntent: StripeReference?
    public var customer: StripeReference?
    public var amountTotal: Int?
    public var currency: String?
    public var url: String?

    enum CodingKeys: String, CodingKey {
        case id, status, metadata, customer, currency, url
        case paymentStatus = "payment_status"
        case clientReferenceId = "client_reference_id"
        case paymentIntent = "payment_intent"
        case amountTotal = "amount_total"
    }
}

public struct StripeCharge: Decodable, Sendable {
    public var id: String
    public var paymentIntent: StripeReference?
    public var amount: Int
    public var amountRefunded: Int
    public var metadata: StripeMetadata?

    enum CodingKeys: String, CodingKey {
        case id, amount, metadata
        case paymentIntent = "payment_intent"
        case amountRefunded = "amount_refunded"
    }
}

public struct StripeRefund: Decodable, Sendable {
    public var id: String
    public var amount: Int
    public var status: String?
    public var paymentIntent: StripeReference?
    public var charge: StripeReference?
    public var created: Int
    public var metadata: StripeMetadata?

    enum CodingKeys: String, CodingKey {
        case id, amount, status, charge, created, metadata
        case paymentIntent = "payment_intent"
    }
}

public struct StripeDispute: Decodable, Sendable {
    public var id: String
    public var amount: Int
    public var status: String
    public var reason: String?
    public var charge: StripeReference?
    public var paymentIntent: StripeReference?
    public var created: Int?

    enum CodingKeys: String, CodingKey {
        case id, amount, status, reason, charge, created
        case paymentIntent = "payment_intent"
    }
}

public struct StripeCustomer: Decodable, Sendable {
    public var id: String
    public var email: String?
    public var metadata: StripeMetadata?
    public var created: Int?
    /// Present (true) on a deleted customer's object.
    public var deleted: Bool?
}

public struct StripePaymentIntent: Decodable, Sendable {
    public var id: String
    public var latestCharge: StripeReference?

    enum CodingKeys: String, CodingKey {
        case id
        case latestCharge = "latest_charge"
    }
}

/// `{"error": {"type", "code", "message", "param"}}` of a refused request.
struct StripeErrorEnvelope: Decodable, Sendable {
    var error: Body?

    struct Body: Decodable, Sendable {
        var type: String?
        var code: String?
        var message: String?
        var param: String?
    }
}

/// A page of a list endpoint.
public struct StripeList<Item: Decodable>: Decodable {
    public var data: [Item]
    public var hasMore: Bool

    enum CodingKeys: String, CodingKey {
        case data
        case hasMore = "has_more"
    }
}

/// Clerk's user events (`user.created`, `user.updated`, `user.deleted`), through Svix.
public struct ClerkUserEvent: Decodable, Sendable {
    public var type: String
    public var data: User

    public struct User: Decodable, Sendable {
        public var id: String
        public var primaryEmailAddressId: String?
        public var emailAddresses: [EmailAddress]?
        public var deleted: Bool?

        enum CodingKeys: String, CodingKey {
            case id, deleted
            case primaryEmailAddressId = "primary_email_address_id"
            case emailAddresses = "email_addresses"
        }

        /// The primary address, else the first one.
        public var primaryEmail: String? {
            let addresses = emailAddresses ?? []
            return (addresses.first { $0.id == primaryEmailAddressId } ?? addresses.first)?.emailAddress
        }
    }

    public struct EmailAddress: Decodable, Sendable {
        public var id: String?
        public var emailAddress: String

        enum CodingKeys: String, CodingKey {
            case id
            case emailAddress = "email_address"
        }
    }
}
