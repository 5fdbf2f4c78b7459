import Foundation
import Logging
import MyBATestSupport
import Testing

@testable import MyBAOps

@Suite("myba-admin webhooks")
struct WebhookCommandTests {
    @Test("list, show and replay: a failed refund event replays once its purchase is in; a second replay changes nothing")
    func replay() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        let body =
            #"{"id":"evt_refund_1","object":"event","type":"charge.refunded","data":{"object":{"id":"ch_1","object":"charge","amount":500,"amount_refunded":500,"payment_intent":"pi_late","metadata":{"user_id":"user_alice"}}}}"#
        _ = try await database.inbox.store(
            WebhookDelivery(
                source: .stripe,
                eventId: "evt_refund_1",
                type: "charge.refunded",
                body: body,
                headers: ["stripe-signature": "t=1,v1=abc"],
                requestId: "req_w1"
            )
        )
        let processor = WebhookProcessor(database: database)
        #expect(try await processor.process(source: .stripe, eventId: "evt_refund_1", logger: Logger(label: "test")).status == .failed)

        let failed = try await fixture.admin(["webhooks", "list", "--status", "failed", "--db", fixture.path])
        #expect(failed.status == 0)
        #expect(failed.stdout.contains("evt_refund_1") && failed.stdout.contains("pi_late"))
        let stillFailing = try await fixture.admin([
            "webhooks", "replay", "evt_refund_1", "--yes", "--reason", "purchase arrived", "--db", fixture.path,
        ])
        #expect(stillFailing.status == 1)

        _ = try await database.write { tx in
            try Payments.recordPurchase(
                checkoutSessionId: "cs_late",
                paymentIntentId: "pi_late",
                stripeCustomerId: nil,
                userId: "user_alice",
                planId: "starter",
                tokens: 10,
                amountTotal: 500,
                currency: "usd",
                actor: "test",
                requestId: nil,
                now: Date(),
                in: tx
            )
        }
        // The mutation conventions: a reason is required; the plan is the live processing run
        // and rolled back; a dry run and a script without --yes change nothing.
        #expect(try await fixture.admin(["webhooks", "replay", "--failed", "--db", fixture.path]).status == 2)
        let dry = try await fixture.admin(["webhooks", "replay", "--failed", "--dry-run", "--reason", "purchase arrived", "--db", fixture.path])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("processed: took back 10 tokens for pi_late") && dry.stdout.contains("dry run: nothing changed"), "\(dry.stdout)")
        let unconfirmed = try await fixture.admin(["webhooks", "replay", "--failed", "--reason", "purchase arrived", "--db", fixture.path])
        #expect(unconfirmed.status == 1)
        #expect(unconfirmed.stderr.contains("pass --yes"), "\(unconfirmed.stderr)")
        #expect(try await database.inbox.event(source: .stripe, eventId: "evt_refund_1")?.status == .failed)
        #expect(try await database.ledger.balance(userId: "user_alice")?.tokens == 64)

        let logPath = fixture.directory.file("logs/myba.jsonl")
        let replayed = try await fixture.admin(
            ["webhooks", "replay", "--failed", "--yes", "--reason", "purchase arrived", "--json", "--db", fixture.path],
            environment: ["MYBA_LOG_FILE": logPath]
        )
        // The command's request id is printed, and its log lines (processing included) carry it.
        let requestId = try #require(replayed.stderr.split(separator: " ").first { $0.hasPrefix("req_") }.map(String.init))
        let trace = try await fixture.admin(["logs", "trace", requestId, "--file", logPath, "--json"])
        let messages = try trace.stdout.split(separator: "\n").map { try jsonObject(String($0))["msg"] as? String }
        #expect(
            messages.contains("console command started") && messages.contains("webhook processed") && messages.contains("console command finished"),
            "\(messages)"
        )
        let audit = try await database.audit.records(limit: 1).first
        #expect(audit?.reason == "purchase arrived")
        #expect(replayed.status == 0, "\(replayed.stderr)")
        let report = try jsonObject(replayed.stdout)
        // No catalog was installed: the built-in plans decided.
        #expect(report["plansVersion"] as? Int == 0)
        let results = try #require(report["events"] as? [[String: Any]])
        #expect(results.count == 1)
        #expect(results.first?["status"] as? String == "processed")
        #expect(results.first?["changed"] as? Bool == true)
        #expect(try await database.ledger.balance(userId: "user_alice")?.tokens == 54)

        let again = try await fixture.admin(["webhooks", "replay", "evt_refund_1", "--yes", "--reason", "purchase arrived", "--db", fixture.path])
        #expect(again.status == 0)
        #expect(again.stdout.contains("nothing changed"))
        #expect(try await database.ledger.balance(userId: "user_alice")?.tokens == 54)

        let shown = try await fixture.admin(["webhooks", "show", "evt_refund_1", "--json", "--db", fixture.path])
        let document = try jsonObject(shown.stdout)
        #expect(document["status"] as? String == "processed")
        #expect((document["entryIds"] as? [Int])?.count == 1)
        #expect((document["headers"] as? [String: String])?["stripe-signature"] != nil)
        #expect(try await fixture.admin(["webhooks", "show", "evt_nope", "--db", fixture.path]).status == 1)
        #expect(try await fixture.admin(["webhooks", "replay", "--db", fixture.path]).status == 2)
        #expect(try await database.ledger.verify().isClean)
    }
}

@Suite("From the customer to their events")
struct CustomerEventsTests {
    @Test(
        "a failed event that made no entry is found from the customer: webhooks list --customer, customer show and timeline list every event naming them, with status and last error; another customer's event is not listed"
    )
    func failedEventsVisibleFromTheCustomer() async throws {
        let fixture = try await AdminFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        let processor = WebhookProcessor(database: database)
        func store(_ id: String, type: String, body: String) async throws {
            _ = try await database.inbox.store(WebhookDelivery(source: .stripe, eventId: id, type: type, body: body, headers: [:], requestId: nil))
            _ = try await processor.process(source: .stripe, eventId: id, logger: Logger(label: "test"))
        }
        // No plan and no token count: fails, names user_alice only in its metadata.
        try await store(
            "evt_alice_failed",
            type: "checkout.session.completed",
            body:
                #"{"id":"evt_alice_failed","type":"checkout.session.completed","data":{"object":{"id":"cs_alice_x","amount_total":500,"currency":"usd","metadata":{"user_id":"user_alice"},"payment_status":"paid"}}}"#
        )
        try await store(
            "evt_bob_failed",
            type: "checkout.session.completed",
            body:
                #"{"id":"evt_bob_failed","type":"checkout.session.completed","data":{"object":{"id":"cs_bob_x","amount_total":500,"currency":"usd","metadata":{"user_id":"user_bob"},"payment_status":"paid"}}}"#
        )
        #expect(try await database.inbox.event(source: .stripe, eventId: "evt_alice_failed")?.status == .failed)

        let listed = try await fixture.admin(["webhooks", "list", "--customer", "alice@example.com", "--json", "--db", fixture.path])
        #expect(listed.status == 0, "\(listed.stderr)")
        let ids = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]).compactMap {
            $0["eventId"] as? String
        }
        #expect(ids.contains("evt_alice_failed") && !ids.contains("evt_bob_failed"), "\(ids)")
        let shown = try await fixture.admin(["customer", "show", "alice@example.com", "--db", fixture.path])
        #expect(shown.stdout.contains("evt_alice_failed") && shown.stdout.contains("failed"), "\(shown.stdout)")
        let timeline = try await fixture.admin(["timeline", "alice@example.com", "--db", fixture.path])
        #expect(timeline.stdout.contains("failed evt_alice_failed after 1 attempt(s)"), "\(timeline.stdout)")
        #expect(!timeline.stdout.contains("evt_bob_failed"))
    }
}
