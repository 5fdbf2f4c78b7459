import Foundation
import PostgresNIO

/// PostgreSQL's schema, versioned like SQLite's: each migration has a name, runs once, and is
/// recorded in `myba_migrations`. Shipped migrations are never edited.
///
/// The tables mirror SQLite's (the same names, columns and checks); dates are `timestamptz`,
/// counts `bigint`, flags `boolean`. Two columns have no SQLite twin: `lease_until` on
/// `webhook_events` and `stripe_outbox`, the leases several servers claim work with.
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
        (
            "2026-12-05 charges, generations, webhook inbox, payments, Stripe customers, plans, audit log, leases",
            [
                // SQLite's instr(), so the stores' text searches are one statement on both backends.
                """
                CREATE FUNCTION instr(haystack text, needle text) RETURNS integer LANGUAGE sql IMMUTABLE STRICT
                AS $$ SELECT strpos(haystack, needle) $$
                """,
                """
                CREATE TABLE anonymous_charges (
                    id bigserial PRIMARY KEY,
                    session_id text NOT NULL REFERENCES anonymous_sessions ON DELETE CASCADE,
                    amount bigint NOT NULL CHECK (amount <> 0),
                    idempotency_key text NOT NULL UNIQUE,
                    request_id text,
                    created_at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX anonymous_charges_on_session ON anonymous_charges (session_id)",
                """
                CREATE TABLE generations (
                    idempotency_key text PRIMARY KEY,
                    payer_kind text NOT NULL CHECK (payer_kind IN ('account','session','own_key')),
                    payer_id text NOT NULL,
                    input_hash text NOT NULL,
                    status text NOT NULL CHECK (status IN ('reserved','completed','failed')),
                    attempts bigint NOT NULL DEFAULT 1,
                    request_id text,
                    provider text,
                    model text,
                    response text,
                    error text,
                    created_at timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL,
                    client_key text
                )
                """,
                "CREATE INDEX generations_on_status ON generations (status, updated_at)",
                "CREATE INDEX generations_on_request ON generations (request_id) WHERE request_id IS NOT NULL",
                "CREATE INDEX generations_own_key_by_client ON generations (client_key, created_at) WHERE payer_kind = 'own_key'",
                "CREATE INDEX generations_own_key_by_payer ON generations (payer_id, created_at) WHERE payer_kind = 'own_key'",
                "CREATE INDEX generations_reserved_on_payer ON generations (payer_id) WHERE status = 'reserved'",
                // `lease_until`: the retry worker of one server holds the event until then.
                """
                CREATE TABLE webhook_events (
                    source text NOT NULL CHECK (source IN ('stripe','clerk')),
                    event_id text NOT NULL,
                    type text NOT NULL,
                    body text NOT NULL,
                    headers text NOT NULL,
                    received_at timestamptz NOT NULL,
                    request_id text,
                    status text NOT NULL CHECK (status IN ('received','processed','ignored','failed')),
                    attempts bigint NOT NULL DEFAULT 0,
                    last_error text,
                    next_attempt_at timestamptz,
                    processed_at timestamptz,
                    outcome text,
                    lease_until timestamptz,
                    PRIMARY KEY (source, event_id)
                )
                """,
                "CREATE INDEX webhook_events_on_status ON webhook_events (status, next_attempt_at)",
                "CREATE INDEX webhook_events_on_received ON webhook_events (received_at)",
                "CREATE INDEX webhook_events_on_request ON webhook_events (request_id) WHERE request_id IS NOT NULL",
                """
                CREATE TABLE webhook_event_entries (
                    source text NOT NULL,
                    event_id text NOT NULL,
                    entry_id bigint NOT NULL REFERENCES ledger_entries,
                    PRIMARY KEY (source, event_id, entry_id),
                    FOREIGN KEY (source, event_id) REFERENCES webhook_events
                )
                """,
                """
                CREATE TABLE payments (
                    checkout_session_id text PRIMARY KEY,
                    payment_intent_id text UNIQUE,
                    user_id text NOT NULL REFERENCES customers,
                    plan_id text,
                    tokens bigint NOT NULL CHECK (tokens > 0),
                    amount_total bigint NOT NULL CHECK (amount_total >= 0),
                    currency text NOT NULL,
                    refunded_amount bigint NOT NULL DEFAULT 0,
                    refunded_tokens bigint NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL,
                    refund_snapshot_at bigint,
                    CHECK (refunded_tokens <= tokens AND refunded_amount <= amount_total)
                )
                """,
                "CREATE INDEX payments_on_user ON payments (user_id)",
                """
                CREATE TABLE failed_refunds (
                    refund_id text PRIMARY KEY,
                    payment_intent_id text NOT NULL,
                    amount bigint NOT NULL CHECK (amount > 0),
                    status text NOT NULL CHECK (status IN ('failed','canceled')),
                    refund_created bigint NOT NULL,
                    failed_at bigint NOT NULL,
                    recorded_at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX failed_refunds_on_payment_intent ON failed_refunds (payment_intent_id)",
                """
                CREATE TABLE disputes (
                    id text PRIMARY KEY,
                    checkout_session_id text NOT NULL REFERENCES payments (checkout_session_id),
                    user_id text NOT NULL,
                    amount bigint NOT NULL,
                    status text NOT NULL CHECK (status IN ('open','won','lost')),
                    held boolean NOT NULL DEFAULT false,
                    taken bigint NOT NULL DEFAULT 0,
                    shortfall bigint NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX disputes_on_user ON disputes (user_id)",
                """
                CREATE TABLE checkout_sessions (
                    seq bigserial PRIMARY KEY,
                    id text NOT NULL UNIQUE,
                    user_id text NOT NULL,
                    plan_id text NOT NULL,
                    amount bigint NOT NULL,
                    discounted boolean NOT NULL,
                    status text NOT NULL CHECK (status IN ('open','expired','complete')),
                    created_at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX checkout_sessions_on_user ON checkout_sessions (user_id, created_at)",
                """
                CREATE TABLE stripe_customer_unlinks (
                    id bigserial PRIMARY KEY,
                    user_id text NOT NULL,
                    stripe_customer_id text NOT NULL,
                    at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX stripe_customer_unlinks_on_user ON stripe_customer_unlinks (user_id)",
                """
                CREATE TABLE legacy_balance_holds (
                    user_id text PRIMARY KEY,
                    stripe_customer_id text NOT NULL,
                    found_at timestamptz NOT NULL
                )
                """,
                """
                CREATE TABLE plan_catalogs (
                    version bigserial PRIMARY KEY,
                    catalog text NOT NULL,
                    source text NOT NULL,
                    installed_by text NOT NULL,
                    reason text,
                    installed_at timestamptz NOT NULL
                )
                """,
                """
                CREATE TABLE audit_log (
                    id bigserial PRIMARY KEY,
                    at timestamptz NOT NULL,
                    operator text NOT NULL,
                    command text NOT NULL,
                    reason text,
                    user_id text,
                    entry_ids text,
                    idempotency_key text,
                    outcome text NOT NULL
                )
                """,
                "CREATE INDEX audit_log_on_user ON audit_log (user_id, id)",
                "CREATE INDEX audit_log_on_operator ON audit_log (operator, id)",
                // The outbox drain of one server holds a customer's row until then.
                "ALTER TABLE stripe_outbox ADD COLUMN lease_until timestamptz",
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
