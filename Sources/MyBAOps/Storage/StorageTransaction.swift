import GRDB

/// One read or one transaction on the database, by concern.
///
/// Rule code receives it from ``AppDatabase/read(_:)``, ``AppDatabase/write(_:)`` or
/// ``AppDatabase/writeAlone(_:)`` and reaches the tables only through its stores, each of which
/// owns its SQL. Every store of one value shares the same transaction, so a rule that spans
/// concerns (a purchase writes the ledger, the outbox and the inbox) still commits all of it or
/// nothing. A second backend provides the same stores over its own connection.
struct StorageTransaction {
    /// SQLite's connection, inside GRDB's transaction; nil on PostgreSQL.
    private let sqlite: Database?
    /// PostgreSQL's connection, inside its transaction; nil on SQLite.
    private let postgres: PostgresSession?

    init(_ db: Database) {
        sqlite = db
        postgres = nil
    }

    init(postgres: PostgresSession) {
        sqlite = nil
        self.postgres = postgres
    }

    /// `sqlite`, or, on PostgreSQL (nil), the error naming the `what` that only SQLite has.
    static func sqlite(_ sqlite: Database?, for what: String) throws -> Database {
        guard let sqlite else { throw StorageError.notOnPostgres(concern: what) }
        return sqlite
    }

    /// The PostgreSQL connection (migrations, and PostgreSQL's own statements).
    var postgresSession: PostgresSession {
        get throws {
            guard let postgres else { throw StorageError.notOnPostgres(concern: "a PostgreSQL statement on SQLite") }
            return postgres
        }
    }

    /// The connection for statements written once for both backends.
    var sql: SQLConnection { SQLConnection(sqlite: sqlite, postgres: postgres) }

    /// Customers, their balances and the append-only ledger entries.
    var ledger: LedgerStore { LedgerStore(sqlite: sqlite, postgres: postgres) }
    /// Anonymous sessions and their charges.
    var sessions: SessionStore { SessionStore(sql: sql) }
    /// Generation requests: reservations, answers, own-key generations.
    var generations: GenerationStore { GenerationStore(sql: sql) }
    /// Stored webhook events and the entries they posted.
    var inbox: WebhookInboxStore { WebhookInboxStore(sql: sql) }
    /// Customers whose Stripe metadata is behind the ledger.
    var outbox: StripeOutboxStore { StripeOutboxStore(sql: sql) }
    /// Stripe customers forgotten, and legacy balances awaiting import.
    var stripeCustomers: StripeCustomerStore { StripeCustomerStore(sql: sql) }
    /// Payments, their refunds and disputes, and the Checkout Sessions opened.
    var payments: PaymentStore { PaymentStore(sql: sql) }
    /// The installed plan catalogs.
    var plans: PlanCatalogStore { PlanCatalogStore(sql: sql) }
    /// The operator audit log.
    var audit: AuditStore { AuditStore(sql: sql) }
    /// Read-only questions that span tables: console listings, stats, timelines, checks.
    var queries: OperatorQueries { OperatorQueries(sql: sql) }
    /// The database as a whole: integrity, schema version, row counts.
    var maintenance: MaintenanceStore { MaintenanceStore(sql: sql) }

    /// Runs `action` once this write's changes commit, never when they are rolled back (in a
    /// group commit: its own savepoint).
    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        if let sqlite { sqlite.afterCommit(action) } else { postgres?.afterCommit(action) }
    }

    /// Runs `body` in a savepoint: when it throws, only its changes are undone and the error is
    /// rethrown; the rest of the transaction goes on.
    func savepoint(_ body: () throws -> Void) throws {
        try sql.savepoint(body)
    }
}
