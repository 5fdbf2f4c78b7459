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

    /// The SQLite connection of a concern that has no PostgreSQL store yet.
    private func sqliteOnly(_ concern: String) throws -> Database {
        try Self.sqlite(sqlite, for: concern)
    }

    /// `sqlite`, or, on PostgreSQL (nil), the error naming the `concern` that has no
    /// PostgreSQL statement yet. Shared by the stores that answer on both backends.
    static func sqlite(_ sqlite: Database?, for concern: String) throws -> Database {
        guard let sqlite else { throw StorageError.notOnPostgres(concern: concern) }
        return sqlite
    }

    /// The PostgreSQL connection (migrations, and PostgreSQL's own statements).
    var postgresSession: PostgresSession {
        get throws {
            guard let postgres else { throw StorageError.notOnPostgres(concern: "a PostgreSQL statement on SQLite") }
            return postgres
        }
    }

    /// Customers, their balances and the append-only ledger entries.
    var ledger: LedgerStore { LedgerStore(sqlite: sqlite, postgres: postgres) }
    /// Anonymous sessions and their charges.
    var sessions: SessionStore { SessionStore(sqlite: sqlite, postgres: postgres) }
    /// Generation requests: reservations, answers, own-key generations.
    var generations: GenerationStore { get throws { GenerationStore(db: try sqliteOnly("generations")) } }
    /// Stored webhook events and the entries they posted.
    var inbox: WebhookInboxStore { get throws { WebhookInboxStore(db: try sqliteOnly("the webhook inbox")) } }
    /// Customers whose Stripe metadata is behind the ledger.
    var outbox: StripeOutboxStore { StripeOutboxStore(sqlite: sqlite, postgres: postgres) }
    /// Stripe customers forgotten, and legacy balances awaiting import.
    var stripeCustomers: StripeCustomerStore { get throws { StripeCustomerStore(db: try sqliteOnly("Stripe customers")) } }
    /// Payments, their refunds and disputes, and the Checkout Sessions opened.
    var payments: PaymentStore { get throws { PaymentStore(db: try sqliteOnly("payments")) } }
    /// The installed plan catalogs.
    var plans: PlanCatalogStore { get throws { PlanCatalogStore(db: try sqliteOnly("plan catalogs")) } }
    /// The operator audit log.
    var audit: AuditStore { get throws { AuditStore(db: try sqliteOnly("the audit log")) } }
    /// Read-only questions that span tables: console listings, stats, timelines, checks.
    var queries: OperatorQueries { get throws { OperatorQueries(db: try sqliteOnly("operator queries")) } }
    /// The file itself: integrity, schema version, row counts.
    var maintenance: MaintenanceStore { get throws { MaintenanceStore(db: try sqliteOnly("maintenance")) } }

    /// Runs `action` once this write's changes commit, never when they are rolled back (in a
    /// group commit: its own savepoint).
    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        if let sqlite { sqlite.afterCommit(action) } else { postgres?.afterCommit(action) }
    }

    /// Runs `body` in a savepoint: when it throws, only its changes are undone and the error is
    /// rethrown; the rest of the transaction goes on.
    func savepoint(_ body: () throws -> Void) throws {
        try sqliteOnly("savepoints").inSavepoint {
            try body()
            return .commit
        }
    }
}
