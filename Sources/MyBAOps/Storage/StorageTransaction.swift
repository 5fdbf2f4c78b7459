import GRDB

/// One read or one transaction on the database, by concern.
///
/// Rule code receives it from ``AppDatabase/read(_:)``, ``AppDatabase/write(_:)`` or
/// ``AppDatabase/writeAlone(_:)`` and reaches the tables only through its stores, each of which
/// owns its SQL. Every store of one value shares the same transaction, so a rule that spans
/// concerns (a purchase writes the ledger, the outbox and the inbox) still commits all of it or
/// nothing. A second backend provides the same stores over its own connection.
struct StorageTransaction {
    fileprivate let db: Database

    init(_ db: Database) {
        self.db = db
    }

    /// Customers, their balances and the append-only ledger entries.
    var ledger: LedgerStore { LedgerStore(db: db) }
    /// Anonymous sessions and their charges.
    var sessions: SessionStore { SessionStore(db: db) }
    /// Generation requests: reservations, answers, own-key generations.
    var generations: GenerationStore { GenerationStore(db: db) }
    /// Stored webhook events and the entries they posted.
    var inbox: WebhookInboxStore { WebhookInboxStore(db: db) }
    /// Customers whose Stripe metadata is behind the ledger.
    var outbox: StripeOutboxStore { StripeOutboxStore(db: db) }
    /// Stripe customers forgotten, and legacy balances awaiting import.
    var stripeCustomers: StripeCustomerStore { StripeCustomerStore(db: db) }
    /// Payments, their refunds and disputes, and the Checkout Sessions opened.
    var payments: PaymentStore { PaymentStore(db: db) }
    /// The installed plan catalogs.
    var plans: PlanCatalogStore { PlanCatalogStore(db: db) }
    /// The operator audit log.
    var audit: AuditStore { AuditStore(db: db) }
    /// Read-only questions that span tables: console listings, stats, timelines, checks.
    var queries: OperatorQueries { OperatorQueries(db: db) }
    /// The file itself: integrity, schema version, row counts.
    var maintenance: MaintenanceStore { MaintenanceStore(db: db) }

    /// Runs `action` once this write's changes commit, never when they are rolled back (in a
    /// group commit: its own savepoint).
    func afterCommit(_ action: @escaping @Sendable () -> Void) {
        db.afterCommit(action)
    }

    /// Runs `body` in a savepoint: when it throws, only its changes are undone and the error is
    /// rethrown; the rest of the transaction goes on.
    func savepoint(_ body: () throws -> Void) throws {
        try db.inSavepoint {
            try body()
            return .commit
        }
    }
}
