import Foundation
import PostgresNIO

/// Anonymous sessions on PostgreSQL, behind `SessionStore` (which answers with SQLite's
/// otherwise): what starting a session needs.
enum PostgresSessionStatements {
    static let columns = "id, granted, used, created_at, last_seen_at, transferred_to, transferred_at, transferred_tokens"

    static func session(id: String, in session: PostgresSession) throws -> AnonymousSession? {
        try session.rows("SELECT \(unescaped: columns) FROM anonymous_sessions WHERE id = \(id)").first.map(anonymousSession)
    }

    static func session(fingerprintHash: String, in session: PostgresSession) throws -> AnonymousSession? {
        try session.rows("SELECT \(unescaped: columns) FROM anonymous_sessions WHERE fingerprint_hash = \(fingerprintHash)").first.map(
            anonymousSession
        )
    }

    static func anonymousSession(_ row: PostgresRow) throws -> AnonymousSession {
        let (id, granted, used, createdAt, lastSeenAt, transferredTo, transferredAt, transferredTokens) =
            try row.decode((String, Int, Int, Date, Date, String?, Date?, Int?).self)
        return AnonymousSession(
            id: id,
            granted: granted,
            used: used,
            createdAt: createdAt,
            lastSeenAt: lastSeenAt,
            transferredTo: transferredTo,
            transferredAt: transferredAt,
            transferredTokens: transferredTokens
        )
    }

    static func touch(id: String, at now: Date, in session: PostgresSession) throws {
        try session.rows("UPDATE anonymous_sessions SET last_seen_at = \(now) WHERE id = \(id)")
    }

    /// Creation times as SQLite stores them (`SQLTimestamp`), so the rule that reads them is
    /// the same on both backends.
    static func creationTimes(addressHash: String, since: String, limit: Int, in session: PostgresSession) throws -> [String] {
        guard let start = SQLTimestamp.date(since) else { throw LedgerError.invalidPosting("unreadable window start \(since)") }
        return try session.rows(
            """
            SELECT created_at FROM anonymous_sessions WHERE client_address_hash = \(addressHash) AND created_at > \(start)
            ORDER BY created_at LIMIT \(limit)
            """
        ).map { SQLTimestamp.string(try $0.decode(Date.self)) }
    }

    static func insert(_ anonymous: AnonymousSession, fingerprintHash: String, addressHash: String, in session: PostgresSession) throws {
        try session.rows(
            """
            INSERT INTO anonymous_sessions (id, fingerprint_hash, client_address_hash, granted, used, created_at, last_seen_at)
            VALUES (\(anonymous.id), \(fingerprintHash), \(addressHash), \(anonymous.granted), 0, \(anonymous.createdAt), \(anonymous.lastSeenAt))
            """
        )
    }

    /// Serialises session starts of one browser and of one address until commit, across servers:
    /// the count-then-insert of the hourly limit and the one-session-per-fingerprint rule are
    /// what SQLite's single writer gave for free. Fingerprint first, then address: one order, no
    /// deadlock.
    static func lockCreations(fingerprintHash: String, addressHash: String, in session: PostgresSession) throws {
        try session.rows("SELECT pg_advisory_xact_lock(hashtextextended(\("fingerprint:" + fingerprintHash), 0))")
        try session.rows("SELECT pg_advisory_xact_lock(hashtextextended(\("address:" + addressHash), 0))")
    }
}
