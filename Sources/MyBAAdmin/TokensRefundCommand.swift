import ArgumentParser
import Foundation
import MyBAOps

/// `tokens refund <user> <N> --reason TEXT [--request ID]`: credit back tokens for failed work.
struct TokensRefundCommand: ConsoleCommand {
    var changesData: Bool { !mutation.dryRun }
    var auditReason: String { mutation.reasonText }
    static let configuration = CommandConfiguration(
        commandName: "refund",
        abstract: "Credit back N tokens for failed work (refund_credit entry).",
        discussion: "With --request, the credit is keyed to that request: crediting the same request twice changes nothing."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The customer: user id, email or cus_… id.", valueName: "user"))
    var user: String

    @Argument(help: ArgumentHelp("Tokens to credit back (positive).", valueName: "N"))
    var amount: Int

    @Option(name: .customLong("request"), help: ArgumentHelp("The request id of the failed work.", valueName: "request-id"))
    var requestId: String?

    @OptionGroup var mutation: MutationOptions

    func validate() throws {
        guard (1...LedgerLimits.maxAbsoluteDelta).contains(amount) else {
            throw ValidationError("N must be a positive number of tokens, got \(amount)")
        }
    }

    func execute(in console: Console) async throws {
        let userId = try await console.userId(for: user)
        if let requestId {
            let settings = console.settings
            do {
                try await console.database().generations.checkManualCredit(
                    forRequest: requestId,
                    deadlineSeconds: ReservationDeadline.seconds(ai: settings.ai, busyTimeoutSeconds: settings.busyTimeoutSeconds)
                )
            } catch let refusal as ManualCreditRefusal {
                throw ConsoleFailure(code: refusal.code, description: refusal.description)
            }
        }
        let key = requestId.map { "refund_credit:\(userId):\($0)" } ?? "refund_credit:\(userId):\(UUID().uuidString)"
        let posting = LedgerPosting(
            userId: userId,
            kind: .refundCredit,
            delta: amount,
            idempotencyKey: key,
            reference: requestId,
            actor: "operator:\(console.operatorName)",
            reason: mutation.reasonText,
            requestId: requestId
        )
        try await applyOperatorPosting(posting, title: "credit \(amount) tokens back to \(userId)", options: mutation, in: console)
    }
}
