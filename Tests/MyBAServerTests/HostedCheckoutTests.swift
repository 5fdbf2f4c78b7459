import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import StripeEmulator
import Testing

/// The emulator's hosted checkout page, as a buyer's browser meets it (the whole journey runs in
/// Chromium in `Tests/browser/journey.py`).
@Suite("Stripe emulator: hosted checkout page")
struct HostedCheckoutTests {
    @Test("the session's url is the emulator's page; the page escapes what it shows; Cancel and Pay redirect; a paid session cannot be paid again")
    func hostedPage() async throws {
        try await StripeEmulator().application().test(.router) { client in
            let form = [
                "mode=payment", "line_items[0][price_data][currency]=usd", "line_items[0][price_data][unit_amount]=400",
                "line_items[0][price_data][product_data][name]=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "line_items[0][quantity]=1",
                "success_url=http%3A%2F%2Fapp.example%2Fpayment-success%3Fsession_id%3D%7BCHECKOUT_SESSION_ID%7D",
                "cancel_url=http%3A%2F%2Fapp.example%2Fpricing%3Fcanceled%3D1",
            ].joined(separator: "&")
            let session = try await client.execute(
                uri: "/v1/checkout/sessions",
                method: .post,
                headers: [
                    .authorization: "Bearer sk_test_hosted", .contentType: "application/x-www-form-urlencoded",
                ],
                body: ByteBuffer(string: form)
            ) { response in
                #expect(response.status == .ok)
                return try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
            }
            let id = try #require(session["id"] as? String)
            let url = try #require(session["url"] as? String)
            #expect(url.hasPrefix("http://") && url.hasSuffix("/checkout/\(id)"), "\(url)")

            try await client.execute(uri: "/checkout/\(id)", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                let page = String(buffer: response.body)
                #expect(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>alert"))
                #expect(page.contains("$4.00"))
            }
            try await client.execute(uri: "/checkout/\(id)/cancel", method: .post) { response in
                #expect(response.status == .seeOther)
                #expect(response.headers[.location] == "http://app.example/pricing?canceled=1")
            }
            try await client.execute(uri: "/checkout/\(id)/pay", method: .post) { response in
                #expect(response.status == .seeOther)
                #expect(response.headers[.location] == "http://app.example/payment-success?session_id=\(id)")
            }
            try await client.execute(uri: "/v1/checkout/sessions/\(id)", method: .get, headers: [.authorization: "Bearer sk_test_hosted"]) {
                let paid = try #require(try JSONSerialization.jsonObject(with: Data(buffer: $0.body)) as? [String: Any])
                #expect(paid["status"] as? String == "complete" && paid["payment_status"] as? String == "paid")
            }
            try await client.execute(uri: "/checkout/\(id)/pay", method: .post) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("already complete"))
            }
            try await client.execute(uri: "/checkout/cs_test_unknown", method: .get) { response in
                #expect(response.status == .notFound)
            }
        }
    }
}
