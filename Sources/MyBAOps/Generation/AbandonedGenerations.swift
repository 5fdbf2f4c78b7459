import Foundation

/// How long a generation may hold its reserved token. A live generation never holds it longer:
/// every model of the chain runs to its own deadline at most (waiting for a connection
/// included), then the write that completes it waits at most the busy timeout. Past this the
/// process that reserved it has died (a crash, a kill, a lost write), and the reservation sweep
/// gives the token back.
public enum ReservationDeadline {
    public static func seconds(ai: AISettings, busyTimeoutSeconds: Double) -> Double {
        ai.timeoutSeconds * Double(max(ai.models.count, 1)) + busyTimeoutSeconds + 5
    }
}

/// What one pass of the reservation sweep did.
public struct AbandonedGenerationsReport: Equatable, Sendable {
    /// Reservations whose token went back to their payer.
    public var released: Int
    /// Reservations that were closed without a release, with why (the payer is gone: a session
    /// reaped by an older version, or removed by hand). Recorded in the generation's `error`.
    public var unapplied: [String]
}

extension Generations {
    /// Gives back the token of every generation still `reserved` since before `cutoff` (at most
    /// `limit` a pass): its process died between charging and answering. The row becomes
    /// `failed`, so a retry with the same key charges a new attempt. Each release is its own
    /// savepoint: one that cannot be applied is recorded on its row, never stops the others.
    /// Safe beside other servers and the console: a row is taken only while still `reserved`,
    /// in the writer's transaction, and release keys are unique.
    @discardableResult
    public func releaseAbandoned(reservedBefore cutoff: Date, limit: Int = 200) async throws -> AbandonedGenerationsReport {
        try await database.write { tx in
            let now = Date().truncatedToMilliseconds
            var report = AbandonedGenerationsReport(released: 0, unapplied: [])
            // Payers in one order, sessions before accounts (a transfer locks its session, then
            // the account): two sweeps, or a sweep and a transfer, on several servers never
            // wait for each other in a circle.
            let rows = try tx.generations.reserved(before: cutoff, limit: limit).sorted {
                ($0.payerKind == "session" ? 0 : 1, $0.payerId, $0.key) < ($1.payerKind == "session" ? 0 : 1, $1.payerId, $1.key)
            }
            for row in rows {
                var problem: String?
                do {
                    try tx.savepoint {
                        try Self.releaseCharge(
                            key: row.key,
                            attempt: row.attempts,
                            payerKind: row.payerKind,
                            payerId: row.payerId,
                            requestId: row.requestId,
                            actor: "system",
                            reason: "generation abandoned",
                            now: now,
                            in: tx
                        )
                    }
                } catch  where StorageError.isTransient(error) {
                    // A deadlock or serialization failure is not this release's fault: the whole
                    // sweep runs again rather than close the reservation without its token.
                    throw error
                } catch {
                    // Session ids are bearer credentials: the report (which is logged) names the digest.
                    problem =
                        row.payerKind == "session"
                        ? "\(error)".replacingOccurrences(of: row.payerId, with: SessionDigest.of(row.payerId)) : "\(error)"
                }
                let note = problem.map { "\(Self.unreleasedNote): \($0)" } ?? "abandoned: the server stopped before answering"
                try tx.generations.closeAbandoned(key: row.key, note: note, at: now)
                if let problem {
                    report.unapplied.append(
                        "\(GenerationRequest.loggable(key: row.key, payerKind: row.payerKind, payerId: row.payerId)): \(problem)"
                    )
                } else {
                    report.released += 1
                }
            }
            return report
        }
    }

    /// How the `error` of a generation closed without its release begins: its token was not
    /// given back, so an operator may still credit it.
    static let unreleasedNote = "abandoned; its token could not be given back"

    /// Gives back the token charged for attempt `attempt` of generation `key`, once (the release
    /// key is unique), to the payer that was charged.
    static func releaseCharge(
        key: String,
        attempt: Int,
        payerKind: String,
        payerId: String,
        requestId: String?,
        actor: String,
        reason: String,
        now: Date,
        in tx: StorageTransaction
    ) throws {
        let chargeKey = TicketGenerator.chargeKey(key, attempt: attempt)
        switch payerKind {
        case "account":
            if try tx.ledger.entry(idempotencyKey: chargeKey) != nil {
                _ = try Ledger.post(
                    LedgerPosting(
                        userId: payerId,
                        kind: .release,
                        delta: 1,
                        idempotencyKey: "release:\(chargeKey)",
                        reference: key,
                        actor: actor,
                        reason: reason,
                        requestId: requestId
                    ),
                    now: now,
                    in: tx
                )
            }
        case "session":
            _ = try AnonymousSessions.releaseSessionCharge(sessionId: payerId, chargeKey: chargeKey, requestId: requestId, now: now, in: tx)
        default:
            break
        }
    }

    /// Refuses an operator's credit for a request whose generation gives its token back by
    /// itself: one still reserved is released by the sweep (by the time given), one failed
    /// already was. A completed one, or a request with no generation, may be credited.
    public func checkManualCredit(forRequest requestId: String, deadlineSeconds: Double) async throws {
        let found = try await database.read { tx in try tx.generations.latest(requestId: requestId) }
        guard let (status, updatedAt, error) = found else { return }
        switch status {
        case "reserved":
            throw ManualCreditRefusal.stillReserved(releaseBy: updatedAt.addingTimeInterval(deadlineSeconds))
        case "failed" where !(error ?? "").hasPrefix(Self.unreleasedNote):
            throw ManualCreditRefusal.alreadyReleased
        default:
            return
        }
    }
}

/// Why an operator may not credit a token for a request by hand.
public enum ManualCreditRefusal: Error, CustomStringConvertible, Sendable {
    case stillReserved(releaseBy: Date)
    case alreadyReleased

    public var code: String {
        switch self {
        case .stillReserved: return "generation_reserved"
        case .alreadyReleased: return "already_released"
        }
    }

    public var description: String {
        switch self {
        case .stillReserved(let date):
            return
                "refused: this request's generation still holds its token; the reservation sweep gives it back by \(Timestamps.timestamp(date)) at the latest, so a credit now would pay it twice"
        case .alreadyReleased:
            return "refused: this request's generation failed and its token was already given back (a release entry); nothing to credit"
        }
    }
}

extension Generations {
    /// Removes finished own-key generations created before `cutoff`, at most `limit` a call. They
    /// cost no token and hold the caller's ticket only for replays of the same key, so they need
    /// not outlive the hour their limits count plus a day of retries; without this every free
    /// call would add a row forever. Returns how many were removed.
    @discardableResult
    public func pruneOwnKey(createdBefore cutoff: Date, limit: Int = 1000) async throws -> Int {
        try await database.write { tx in try tx.generations.pruneOwnKey(createdBefore: cutoff, limit: limit) }
    }
}
