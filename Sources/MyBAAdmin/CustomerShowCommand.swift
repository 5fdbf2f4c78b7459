import ArgumentParser
import Foundation
import MyBAOps

/// `customer show USER_ID`: the balance fields and the newest ledger entries of one customer.
struct CustomerShowCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a customer's balance and newest ledger entries."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The customer's user id (user_…).", valueName: "user-id"))
    var userId: String

    @Option(name: .long, help: "How many of the newest ledger entries to list (1–1000).")
    var limit = 20

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be between 1 and 1000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        guard let summary = try await console.database().customerSummary(userId: userId, entryLimit: limit) else {
            throw ConsoleFailure(code: "unknown_customer", description: "no customer with id \(userId)")
        }
        if console.json {
            try console.writeJSON(CustomerShowDocument(summary))
            return
        }
        let balance = summary.balance
        var fields = TextTable(["field", "value"])
        fields.add(["userId", summary.customer.userId])
        fields.add(["email", summary.customer.email ?? "-"])
        fields.add(["stripeCustomerId", summary.customer.stripeCustomerId ?? "-"])
        fields.add(["created", LedgerDates.timestamp(summary.customer.createdAt)])
        if let deleted = summary.customer.deletedAt { fields.add(["deleted", console.red(LedgerDates.timestamp(deleted))]) }
        fields.add(["tokens", String(balance.tokens)])
        fields.add(["tokensUsed", String(balance.tokensUsed)])
        fields.add(["tokensPurchased", String(balance.tokensPurchased)])
        fields.add(["tokensTransferred", String(balance.tokensTransferred)])
        fields.add(["lastPurchase", balance.lastPurchase.map(LedgerDates.day) ?? "-"])
        fields.add(["transferDate", balance.transferDate.map(LedgerDates.day) ?? "-"])
        console.write(fields.render(bold: console.bold))
        console.write("")
        if summary.recentEntries.isEmpty {
            console.write("no ledger entries")
            return
        }
        var entries = TextTable(["id", "created", "kind", "delta", "actor", "reference", "key", "reason"])
        for entry in summary.recentEntries {
            entries.add([
                String(entry.id ?? 0), LedgerDates.timestamp(entry.createdAt), entry.kind.rawValue,
                entry.delta > 0 ? "+\(entry.delta)" : String(entry.delta), entry.actor,
                entry.reference ?? "-", entry.idempotencyKey, entry.reason ?? "-",
            ])
        }
        console.write(entries.render(bold: console.bold))
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

    init(_ summary: CustomerSummary) {
        balance = BalanceFields(summary.balance)
        email = summary.customer.email
        stripeCustomerId = summary.customer.stripeCustomerId
        createdAt = LedgerDates.timestamp(summary.customer.createdAt)
        deletedAt = summary.customer.deletedAt.map(LedgerDates.timestamp)
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
    }

    enum CodingKeys: String, CodingKey {
        case email, stripeCustomerId, createdAt, deletedAt, entries
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

    init(_ entry: LedgerEntry) {
        id = entry.id ?? 0
        kind = entry.kind.rawValue
        delta = entry.delta
        idempotencyKey = entry.idempotencyKey
        reference = entry.reference
        actor = entry.actor
        reason = entry.reason
        requestId = entry.requestId
        createdAt = LedgerDates.timestamp(entry.createdAt)
    }
}
