import ArgumentParser
import Foundation
import MyBAOps

/// `customer show <user-id|email|cus_…>`: balance fields, Stripe id, newest entries, sessions
/// transferred in, and webhook events that touched the customer.
struct CustomerShowCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a customer's balance, newest ledger entries, transferred sessions and webhook events."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The customer: user id (user_…), email, or Stripe customer id (cus_…).", valueName: "user"))
    var userId: String

    @Option(name: .long, help: "How many of the newest ledger entries to list (1–1000).")
    var limit = 20

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        let resolved = try await console.userId(for: userId)
        let database = try await console.database()
        guard let summary = try await database.ledger.summary(userId: resolved, entryLimit: limit) else {
            throw ConsoleFailure(code: "unknown_customer", description: "no customer with id \(userId)")
        }
        let sessions = try await database.sessions.transferred(to: resolved)
        let events = try await database.inbox.events(forUser: resolved, limit: 10)
        if console.json {
            var document = CustomerShowDocument(summary)
            document.sessions = sessions.map { SessionDocument($0) }
            document.webhookEvents = events.map { WebhookDocument($0) }
            try console.writeJSON(document)
            return
        }
        let balance = summary.balance
        var fields = TextTable(["field", "value"])
        fields.add(["userId", summary.customer.userId])
        fields.add(["email", summary.customer.email ?? "-"])
        fields.add(["stripeCustomerId", summary.customer.stripeCustomerId ?? "-"])
        fields.add(["created", Timestamps.timestamp(summary.customer.createdAt)])
        if let deleted = summary.customer.deletedAt {
            fields.add(["deleted", Timestamps.timestamp(deleted)]) { column, text in column == 1 ? console.red(text) : text }
        }
        fields.add(["tokens", String(balance.tokens)])
        fields.add(["tokensUsed", String(balance.tokensUsed)])
        fields.add(["tokensPurchased", String(balance.tokensPurchased)])
        fields.add(["tokensTransferred", String(balance.tokensTransferred)])
        fields.add(["lastPurchase", balance.lastPurchase.map(Timestamps.day) ?? "-"])
        fields.add(["transferDate", balance.transferDate.map(Timestamps.day) ?? "-"])
        console.write(fields.render(bold: console.bold))
        console.write("")
        if summary.recentEntries.isEmpty {
            console.write("no ledger entries")
            return
        }
        var entries = TextTable(["id", "created", "kind", "delta", "actor", "reference", "key", "reason"])
        for entry in summary.recentEntries {
            entries.add([
                String(entry.id ?? 0), Timestamps.timestamp(entry.createdAt), entry.kind.rawValue,
                entry.delta > 0 ? "+\(entry.delta)" : String(entry.delta), entry.actor,
                entry.reference ?? "-", entry.idempotencyKey, entry.reason ?? "-",
            ])
        }
        console.write(entries.render(bold: console.bold))
        if !sessions.isEmpty {
            console.write("")
            var table = TextTable(["session", "transferred", "tokens moved", "used"])
            for session in sessions {
                table.add([
                    session.id, session.transferredAt.map(Timestamps.timestamp) ?? "-", String(session.transferredTokens ?? 0), String(session.used),
                ])
            }
            console.write(table.render(bold: console.bold))
        }
        if !events.isEmpty {
            console.write("")
            // The cause sits beside a failed event: the operator needs no second command to see it.
            var table = TextTable(["event", "source", "type", "status", "received", "last error"])
            for event in events {
                let error = event.status == .failed ? event.lastError.map { $0.count > 100 ? $0.prefix(99) + "…" : $0 } ?? "-" : "-"
                table.add(
                    [event.eventId, event.source.rawValue, event.type, event.status.rawValue, Timestamps.timestamp(event.receivedAt), error],
                    style: { column, text in column == 3 && event.status == .failed ? console.red(text) : text }
                )
            }
            console.write(table.render(bold: console.bold))
        }
    }
}

/// An anonymous session in console JSON.
struct SessionDocument: Encodable {
    var sessionId: String
    var granted: Int
    var used: Int
    var lastSeenAt: String
    var transferredTo: String?
    var transferredAt: String?
    var transferredTokens: Int?

    init(_ session: AnonymousSession) {
        sessionId = session.id
        granted = session.granted
        used = session.used
        lastSeenAt = Timestamps.timestamp(session.lastSeenAt)
        transferredTo = session.transferredTo
        transferredAt = session.transferredAt.map(Timestamps.timestamp)
        transferredTokens = session.transferredTokens
    }
}

/// A webhook event in console JSON.
struct WebhookDocument: Encodable {
    var eventId: String
    var source: String
    var type: String
    var status: String
    var receivedAt: String
    var attempts: Int
    var outcome: String?
    var lastError: String?
    var entryIds: [Int64]?
    var headers: [String: String]?
    var body: String?

    init(_ event: WebhookEvent) {
        eventId = event.eventId
        source = event.source.rawValue
        type = event.type
        status = event.status.rawValue
        receivedAt = Timestamps.timestamp(event.receivedAt)
        attempts = event.attempts
        outcome = event.outcome
    }
}

/// `customer show --json`: the API's balance fields at the top level, plus the customer and
/// its entries.
struct CustomerShowDocument: Encodable {
    var balance: BalanceFields
    var email: String?
    var stripeCustomerId: String?
    var createdAt: String
    var deletedAt: String?
    var entries: [EntryDocument]
    var sessions: [SessionDocument] = []
    var webhookEvents: [WebhookDocument] = []

    init(_ summary: CustomerSummary) {
        balance = BalanceFields(summary.balance)
        email = summary.customer.email
        stripeCustomerId = summary.customer.stripeCustomerId
        createdAt = Timestamps.timestamp(summary.customer.createdAt)
        deletedAt = summary.customer.deletedAt.map(Timestamps.timestamp)
        entries = summary.recentEntries.map(EntryDocument.init)
    }

    func encode(to encoder: any Encoder) throws {
        try balance.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(email, forKey: .email)
        try container.encode(stripeCustomerId, forKey: .stripeCustomerId)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(deletedAt, forKey: .deletedAt)
        try container.encode(entries, forKey: .entries)
        try container.encode(sessions, forKey: .sessions)
        try container.encode(webhookEvents, forKey: .webhookEvents)
    }

    enum CodingKeys: String, CodingKey {
        case email, stripeCustomerId, createdAt, deletedAt, entries, sessions, webhookEvents
    }
}

/// One ledger entry as the console prints it in JSON.
struct EntryDocument: Encodable {
    var id: Int64
    var kind: String
    var delta: Int
    var idempotencyKey: String
    var reference: String?
    var actor: String
    var reason: String?
    var requestId: String?
    var createdAt: String
    var shortfall: Int

    init(_ entry: LedgerEntry) {
        shortfall = entry.shortfall
        id = entry.id ?? 0
        kind = entry.kind.rawValue
        delta = entry.delta
        idempotencyKey = entry.idempotencyKey
        reference = entry.reference
        actor = entry.actor
        reason = entry.reason
        requestId = entry.requestId
        createdAt = Timestamps.timestamp(entry.createdAt)
    }
}
