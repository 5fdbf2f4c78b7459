import ArgumentParser
import Foundation
import MyBAOps

/// `tokens adjust <user> <+N|-N> --reason TEXT`: an operator's correction (`adjust` entry).
struct TokensAdjustCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "adjust",
        abstract: "Add or remove tokens (+N or -N); never below zero.",
        discussion: "Prints the plan, then asks on a terminal; --dry-run stops after the plan; scripts need --yes."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The customer: user id, email or cus_… id.", valueName: "user"))
    var user: String

    // Collected as "unrecognized" input so that -3 is read as a number, not as an option.
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("The change, signed: +5 or -3.", valueName: "+N|-N"))
    var changes: [String] = []

    var change: String { changes.first ?? "" }

    @OptionGroup var mutation: MutationOptions

    @Option(help: "Idempotency key, stored as operator:<key> (default: a fresh one); reuse it to make a retried script safe.")
    var key: String?

    @Option(
        help: ArgumentHelp(
            "The payment (cs_…) this credit stands for, when its purchase event is missing: when the event lands later, the purchase is granted and this credit settled against it, so the tokens are had once.",
            valueName: "cs_…"
        )
    )
    var payment: String?

    var delta: Int? {
        guard change.first == "+" || change.first == "-", let value = Int(change.dropFirst()), value > 0 else { return nil }
        return change.first == "-" ? -value : value
    }

    func validate() throws {
        guard changes.count == 1 else {
            throw ValidationError("give exactly one signed change, like +5 or -3; got \(changes.isEmpty ? "none" : changes.joined(separator: " "))")
        }
        guard delta != nil else { throw ValidationError("the change must be signed and non-zero, like +5 or -3; got \(change)") }
        if let payment {
            guard payment.hasPrefix("cs_") else { throw ValidationError("--payment takes the Checkout Session id (cs_…), got \(payment)") }
            guard (delta ?? 0) > 0 else { throw ValidationError("a credit for a payment adds tokens: +N") }
            guard key == nil else { throw ValidationError("--payment makes the key itself (one credit per payment); leave --key out") }
        }
        if let key, (try? OperatorKey.ledgerKey(key)) == nil {
            throw ValidationError("--key must be 1–200 characters without control characters")
        }
    }

    func execute(in console: Console) async throws {
        let userId = try await console.userId(for: user)
        let ledgerKey: String
        do {
            ledgerKey = try key.map(OperatorKey.ledgerKey) ?? "adjust:\(userId):\(UUID().uuidString)"
        } catch let error as LedgerError {
            throw ConsoleFailure(code: error.code, description: error.description)
        }
        if let payment {
            let posting = LedgerPosting(
                userId: userId,
                kind: .adjust,
                delta: delta!,
                idempotencyKey: ManualPurchaseCredit.key(payment),
                reference: payment,
                actor: "operator:\(console.operatorName)",
                reason: mutation.reasonText
            )
            let plan: MutationPlan
            do {
                plan = try await console.database().payments.planManualCredit(posting, checkoutSessionId: payment)
            } catch let error as LedgerError {
                throw ConsoleFailure(code: error.code, description: error.description)
            }
            guard try console.confirm(plan, options: mutation, title: "credit \(userId) \(change) for the payment \(payment)") else { return }
            let result: PostingResult
            do {
                result = try await console.database().payments.postManualCredit(
                    userId: userId,
                    tokens: delta!,
                    checkoutSessionId: payment,
                    by: console.operatorContext(reason: mutation.reasonText)
                )
            } catch let error as LedgerError {
                throw ConsoleFailure(code: error.code, description: error.description)
            }
            console.write(
                console.green(result.replayed ? "already credited" : "credited") + ": \(userId) now has \(result.balance.tokens); "
                    + "when the purchase of \(payment) arrives, it is granted and this credit settled against it"
            )
            return
        }
        let posting = LedgerPosting(
            userId: userId,
            kind: .adjust,
            delta: delta!,
            idempotencyKey: ledgerKey,
            actor: "operator:\(console.operatorName)",
            reason: mutation.reasonText
        )
        try await applyOperatorPosting(posting, title: "adjust \(userId) by \(change)", options: mutation, in: console)
    }
}

/// Plans, confirms, posts with an audit row, and reports — shared by the token commands.
func applyOperatorPosting(_ posting: LedgerPosting, title: String, options: MutationOptions, in console: Console) async throws {
    let database = try await console.database()
    let plan: MutationPlan
    do {
        plan = try await database.ledger.plan(posting)
    } catch let error as LedgerError {
        throw ConsoleFailure(code: error.code, description: error.description)
    }
    guard try console.confirm(plan, options: options, title: title) else { return }
    let result = try await database.ledger.postAsOperator(posting, by: console.operatorContext(reason: options.reasonText))
    if console.json {
        var document = PlanDocument(plan, title: title, applied: !result.replayed)
        document.after = BalanceFields(result.balance)
        try console.writeJSON(document)
    } else if result.replayed {
        console.write("nothing changed: entry #\(result.entry.id ?? 0) already has key \(posting.idempotencyKey)")
    } else {
        console.write(console.green("applied") + ": entry #\(result.entry.id ?? 0); \(result.balance.userId) now has \(result.balance.tokens) tokens")
    }
}
