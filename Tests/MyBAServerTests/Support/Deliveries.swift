import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MyBATestSupport
import NIOCore
import Testing

@testable import MyBAOps
@testable import MyBAServer

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

let stripeWebhookSecret = "whsec_test_stripe_secret_for_myba"

let clerkWebhookSecret = "whsec_" + Data((0..<32).map { UInt8($0 * 7 % 256) }).base64EncodedString()

/// Stripe and Clerk events as they arrive on the wire, signed.
enum Deliveries {
    static func stripeEvent(id: String, type: String, created: Int? = nil, object: [String: Any]) -> String {
        let event: [String: Any] = [
            "id": id, "object": "event", "api_version": "2024-06-20", "created": created ?? Int(Date().timeIntervalSince1970),
            "livemode": false, "type": type, "data": ["object": object],
        ]
        return String(decoding: try! JSONSerialization.data(withJSONObject: event, options: [.sortedKeys]), as: UTF8.self)
    }

    static func checkoutCompleted(
        eventId: String,
        sessionId: String,
        userId: String,
        tokens: Int,
        amount: Int,
        paymentIntent: String,
        paid: Bool = true
    ) -> String {
        stripeEvent(
            id: eventId,
            type: "checkout.session.completed",
            object: [
                "id": sessionId, "object": "checkout.session", "amount_total": amount, "currency": "usd", "customer": "cus_\(userId)",
                "client_reference_id": userId, "metadata": ["user_id": userId, "plan_id": "starter", "tokens": String(tokens)],
                "mode": "payment", "payment_intent": paymentIntent, "payment_status": paid ? "paid" : "unpaid", "status": "complete",
            ]
        )
    }

    /// `charge.refunded`: the charge as Stripe saw it at `created` (default now). `userId` is what
    /// MyBA's Checkout puts on the PaymentIntent, which Stripe copies to the charge.
    static func chargeRefunded(
        eventId: String,
        paymentIntent: String,
        amount: Int,
        refunded: Int,
        userId: String? = nil,
        created: Int? = nil
    ) -> String {
        stripeEvent(
            id: eventId,
            type: "charge.refunded",
            created: created,
            object: [
                "id": "ch_\(paymentIntent)", "object": "charge", "amount": amount, "amount_refunded": refunded,
                "payment_intent": paymentIntent, "refunded": refunded >= amount,
                "metadata": userId.map { ["user_id": $0, "checkout": "myba"] } ?? [String: String](),
            ]
        )
    }

    /// `charge.refund.updated` for a refund that failed (or was canceled) at Stripe.
    static func refundFailed(
        eventId: String,
        refundId: String,
        paymentIntent: String,
        amount: Int,
        refundCreated: Int,
        created: Int,
        status: String = "failed"
    ) -> String {
        stripeEvent(
            id: eventId,
            type: "charge.refund.updated",
            created: created,
            object: [
                "id": refundId, "object": "refund", "amount": amount, "charge": "ch_\(paymentIntent)", "payment_intent": paymentIntent,
                "currency": "usd", "status": status, "failure_reason": "expired_or_canceled_card", "created": refundCreated,
            ]
        )
    }

    static func stripeHeaders(_ body: String, secret: String = stripeWebhookSecret, at date: Date = Date()) -> HTTPFields {
        [
            .contentType: "application/json",
            HTTPField.Name("Stripe-Signature")!: StripeSignature.header(
                payload: Array(body.utf8),
                timestamp: Int(date.timeIntervalSince1970),
                secret: secret
            ),
        ]
    }

    static func clerkUser(type: String, userId: String, email: String? = nil) -> String {
        var data: [String: Any] = ["id": userId, "object": "user"]
        if let email {
            data["primary_email_address_id"] = "idn_2"
            data["email_addresses"] = [["id": "idn_1", "email_address": "old@example.com"], ["id": "idn_2", "email_address": email]]
        } else {
            data["deleted"] = true
        }
        let event: [String: Any] = ["type": type, "object": "event", "timestamp": Int(Date().timeIntervalSince1970 * 1000), "data": data]
        return String(decoding: try! JSONSerialization.data(withJSONObject: event), as: UTF8.self)
    }

    static func svixHeaders(_ body: String, id: String, at date: Date = Date()) -> HTTPFields {
        let timestamp = String(Int(date.timeIntervalSince1970))
        let signature = try! SvixSignature.signature(payload: Array(body.utf8), id: id, timestamp: timestamp, secret: clerkWebhookSecret)
        return [
            .contentType: "application/json", HTTPField.Name("svix-id")!: id, HTTPField.Name("svix-timestamp")!: timestamp,
            HTTPField.Name("svix-signature")!: "v1,\(signature)",
        ]
    }
}

extension Deliveries {
    /// Posts each signed Stripe event in `bodies`, in order, twice (as Stripe may), expecting 200
    /// each time; returns the receipts' statuses (`processed`, `ignored`, `failed`…).
    @discardableResult
    static func deliverTwice(_ bodies: [String], to client: some TestClientProtocol) async throws -> [String] {
        var statuses: [String] = []
        for body in bodies {
            for _ in 0..<2 {
                let status = try await client.execute(
                    uri: "/api/webhook/stripe",
                    method: .post,
                    headers: stripeHeaders(body),
                    body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == .ok)
                    return try response.json["status"] as? String ?? "?"
                }
                statuses.append(status)
            }
        }
        return statuses
    }
}
