import Foundation
import PostgresNIO

/// PostgreSQL's schema, versioned like SQLite's: each migration has a name, runs once, and is
/// recorded in `myba_migrations`. Shipped migrations are never edited.
///
/// The tables mirror SQLite's (the same names, columns and checks); dates are `timestamptz`,
/// counts `bigint`. Only some tables are here so far: the ledger's (customers, balances, the
/// append-only entries, the Stripe outbox every balance change writes) and anonymous sessions.
enum PostgresMigrations {
    /// The advisory lock every migrating process takes: "MyBA" in ASCII, as SQLite's
    /// application id. Servers starting together wait for one another and the later ones find
    /// nothing left to do.
    static let lockKey: Int64 = 0x4D79_4241

    static let all: [(name: String, statements: [String])] = [
        (
            "2026-12-05 customers, ledger entries, balances, Stripe outbox",
            [
                """
                CREATE TABLE customers (
                    user_id text PRIMARY KEY CHECK (length(user_id) > 0),
                    email text,
                    stripe_customer_id text UNIQUE,
                    created_at timestamptz NOT NULL,
                    deleted_at timestamptz
                )
                """,
                "CREATE INDEX customers_on_email ON customers (email)",
                """
                CREATE TABLE ledger_entries (
                    id bigserial PRIMARY KEY,
                    user_id text NOT NULL REFERENCES customers ON DELETE RESTRICT,
                    kind text NOT NULL CHECK (kind IN ('welcome','transfer','purchase','consume','release','adjust','refund_credit','payment_refund','import')),
                    delta bigint NOT NULL,
                    used_delta bigint NOT NULL DEFAULT 0,
                    purchased_delta bigint NOT NULL DEFAULT 0,
                    transferred_delta bigint NOT NULL DEFAULT 0,
                    sets_last_purchase timestamptz,
                    sets_transfer_date timestamptz,
                    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) > 0),
                    reference text,
                    actor text NOT NULL,
                    reason text,
                    request_id text,
                    created_at timestamptz NOT NULL,
                    shortfall bigint NOT NULL DEFAULT 0
                )
                """,
                "CREATE INDEX ledger_entries_on_user ON ledger_entries (user_id, id)",
                "CREATE INDEX ledger_entries_on_reference ON ledger_entries (reference) WHERE reference IS NOT NULL",
                "CREATE INDEX ledger_entries_on_request ON ledger_entries (request_id) WHERE request_id IS NOT NULL",
                // Append-only for everyone holding the database, not only for this code.
                """
                CREATE FUNCTION myba_ledger_entries_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'ledger entries are append-only';
                END
                $$
                """,
                """
                CREATE TRIGGER ledger_entries_are_append_only BEFORE UPDATE OR DELETE ON ledger_entries
                FOR EACH ROW EXECUTE FUNCTION myba_ledger_entries_are_append_only()
                """,
                """
                CREATE TABLE balances (
                    user_id text PRIMARY KEY REFERENCES customers ON DELETE RESTRICT,
                    tokens bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
                    tokens_used bigint NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
                    tokens_purchased bigint NOT NULL DEFAULT 0 CHECK (tokens_purchased >= 0),
                    tokens_transferred bigint NOT NULL DEFAULT 0 CHECK (tokens_transferred >= 0),
                    last_purchase timestamptz,
                    transfer_date timestamptz,
                    updated_at timestamptz NOT NULL
                )
                """,
                """
                CREATE TABLE stripe_outbox (
                    user_id text PRIMARY KEY REFERENCES customers,
                    changes bigint NOT NULL DEFAULT 1,
                    pending_since timestamptz NOT NULL,
                    attempts bigint NOT NULL DEFAULT 0,
                    next_attempt_at timestamptz NOT NULL,
                    last_error text
                )
                """,
                "CREATE INDEX stripe_outbox_on_next_attempt ON stripe_outbox (next_attempt_at)",
            ]
        ),
        (
            "2026-12-05 anonymous sessions",
            [
                """
                CREATE TABLE anonymous_sessions (
                    id text PRIMARY KEY,
                    fingerprint_hash text NOT NULL UNIQUE,
                    client_address_hash text,
                    granted bigint NOT NULL CHECK (granted >= 0),
                    used bigint NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL,
                    last_seen_at timestamptz NOT NULL,
                    transferred_to text REFERENCES customers ON DELETE RESTRICT,
                    transferred_at timestamptz,
                    transferred_tokens bigint,
                    CHECK (used >= 0 AND used <= granted)
                )
                """,
                "CREATE INDEX anonymous_sessions_on_address ON anonymous_sessions (client_address_hash, created_at)",
                "CREATE INDEX anonymous_sessions_on_last_seen ON anonymous_sessions (last_seen_at)",
                "CREATE INDEX anonymous_sessions_on_transferred_to ON anonymous_sessions (transferred_to) WHERE transferred_to IS NOT NULL",
            ]
        ),
    ]
}

extension PostgresEngine {
    /// Brings the schema up to date, in one transaction under the migration lock, and returns the
    /// names of the migrations this call applied (empty when another process had done them).
    @discardableResult
    public func migrate() async throws -> [String] {
        try await transaction(writing: true) { tx in
            let session = try tx.postgresSession
            try session.rows("SELECT pg_advisory_xact_lock(\(PostgresMigrations.lockKey))")
            try session.execute(
                "CREATE TABLE IF NOT EXISTS myba_migrations (identifier text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            let applied = Set(try session.rows("SELECT identifier FROM myba_migrations").map { try $0.decode(String.self) })
            var done: [String] = []
            for migration in PostgresMigrations.all where !applied.contains(migration.name) {
                for statement in migration.statements { try session.execute(statement) }
                try session.rows("INSERT INTO myba_migrations (identifier) VALUES (\(migration.name))")
                done.append(migration.name)
            }
            return done
        }
    }

    /// The migrations applied to the database, in the migrator's order (several are applied in
    /// one transaction, at one time; names of the same day do not sort in order).
    public func appliedMigrations() async throws -> [String] {
        let applied = try await transaction(writing: false) { tx in
            try tx.postgresSession.rows("SELECT identifier FROM myba_migrations").map { try $0.decode(String.self) }
        }
        let order = PostgresMigrations.all.map(\.name)
        return applied.sorted { (order.firstIndex(of: $0) ?? Int.max, $0) < (order.firstIndex(of: $1) ?? Int.max, $1) }
    }
}
