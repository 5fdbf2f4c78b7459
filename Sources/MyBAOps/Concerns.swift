/// The database's public API, by concern. Each value is a view of one `AppDatabase` (a copy
/// costs nothing): the rules of its concern, run through `AppDatabase`'s transactions. A rule
/// that spans concerns still commits in one transaction.

/// Customers, balances and the append-only ledger: posting, consuming, accounts, verification.
public struct Ledger: Sendable {
    let database: AppDatabase
}

/// Anonymous visitors' sessions and their free tokens.
public struct AnonymousSessions: Sendable {
    let database: AppDatabase
}

/// Generation reservations: the sweep of abandoned ones, own-key pruning, credit checks.
public struct Generations: Sendable {
    let database: AppDatabase
}

/// Stored webhook events: storing deliveries, reading, listing, pruning.
public struct WebhookInbox: Sendable {
    let database: AppDatabase
}

/// Customers whose Stripe metadata is behind the ledger.
public struct StripeOutbox: Sendable {
    let database: AppDatabase
}

/// Purchases, refunds, disputes and the Checkout Sessions opened.
public struct Payments: Sendable {
    let database: AppDatabase
}

/// MyBA's customers at Stripe: linking, creating, reconciling and importing legacy balances.
public struct StripeCustomers: Sendable {
    let database: AppDatabase
}

/// The plan catalog in force and its history.
public struct PlanCatalogs: Sendable {
    let database: AppDatabase
}

/// The operator audit log.
public struct AuditLog: Sendable {
    let database: AppDatabase
}

/// What the console and the health and metrics endpoints read across concerns.
public struct ConsoleQueries: Sendable {
    let database: AppDatabase
}

/// Checks, status, backups and erasure of the database as a whole.
public struct Maintenance: Sendable {
    let database: AppDatabase
}

extension AppDatabase {
    public var ledger: Ledger { Ledger(database: self) }
    public var sessions: AnonymousSessions { AnonymousSessions(database: self) }
    public var generations: Generations { Generations(database: self) }
    public var inbox: WebhookInbox { WebhookInbox(database: self) }
    public var outbox: StripeOutbox { StripeOutbox(database: self) }
    public var payments: Payments { Payments(database: self) }
    public var stripeCustomers: StripeCustomers { StripeCustomers(database: self) }
    public var plans: PlanCatalogs { PlanCatalogs(database: self) }
    public var audit: AuditLog { AuditLog(database: self) }
    public var queries: ConsoleQueries { ConsoleQueries(database: self) }
    public var maintenance: Maintenance { Maintenance(database: self) }
}
