import GRDB

extension AppDatabase {
    /// The names of every migration, in order.
    static var migrationNames: [String] { migrator.migrations }

    /// Every schema change, in order. A shipped migration is never edited: add a new one.
    /// Migrations use raw table and column names, never app types, so they stay valid as the
    /// Swift code evolves.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()

        migrator.registerMigration("2026-11-25 customers, ledger entries, balances") { db in
            try db.create(table: "customers") { t in
                t.primaryKey("user_id", .text).check { length($0) > 0 }
                t.column("email", .text)
                t.column("stripe_customer_id", .text).unique()
                t.column("created_at", .datetime).notNull()
                t.column("deleted_at", .datetime)
            }
            try db.create(index: "customers_on_email", on: "customers", columns: ["email"])

            try db.create(table: "ledger_entries") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .text).notNull().references("customers", onDelete: .restrict)
                t.column("kind", .text).notNull()
                    .check(sql: "kind IN ('welcome','transfer','purchase','consume','release','adjust','refund_credit','payment_refund','import')")
                // The signed change of `tokens`, then the entry's effect on the other projection
                // fields. Stored explicitly so `verify` can recompute every field by summing.
                t.column("delta", .integer).notNull()
                t.column("used_delta", .integer).notNull().defaults(to: 0)
                t.column("purchased_delta", .integer).notNull().defaults(to: 0)
                t.column("transferred_delta", .integer).notNull().defaults(to: 0)
                t.column("sets_last_purchase", .datetime)
                t.column("sets_transfer_date", .datetime)
                t.column("idempotency_key", .text).notNull().unique().check { length($0) > 0 }
                t.column("reference", .text)
                t.column("actor", .text).notNull()
                t.column("reason", .text)
                t.column("request_id", .text)
                t.column("created_at", .datetime).notNull()
            }
            try db.create(index: "ledger_entries_on_user", on: "ledger_entries", columns: ["user_id", "id"])
            // Partial: most entries have no reference, and every index costs each write a page.
            try db.create(index: "ledger_entries_on_reference", on: "ledger_entries", columns: ["reference"], condition: Column("reference") != nil)
            try db.create(index: "ledger_entries_on_request", on: "ledger_entries", columns: ["request_id"], condition: Column("request_id") != nil)
            // The ledger is append-only, for everyone holding the file, not only for this code.
            try db.execute(
                sql: """
                    CREATE TRIGGER ledger_entries_are_append_only_update BEFORE UPDATE ON ledger_entries
                    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
                    CREATE TRIGGER ledger_entries_are_append_only_delete BEFORE DELETE ON ledger_entries
                    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
                    """
            )

            try db.create(table: "balances") { t in
                t.primaryKey("user_id", .text).references("customers", onDelete: .restrict)
                t.column("tokens", .integer).notNull().defaults(to: 0).check { $0 >= 0 }
                t.column("tokens_used", .integer).notNull().defaults(to: 0).check { $0 >= 0 }
                t.column("tokens_purchased", .integer).notNull().defaults(to: 0).check { $0 >= 0 }
                t.column("tokens_transferred", .integer).notNull().defaults(to: 0).check { $0 >= 0 }
                t.column("last_purchase", .datetime)
                t.column("transfer_date", .datetime)
                t.column("updated_at", .datetime).notNull()
            }
        }

        migrator.registerMigration("2026-11-25 anonymous sessions, their charges, generations") { db in
            try db.create(table: "anonymous_sessions") { t in
                t.primaryKey("id", .text)
                // Salted SHA-256 of the browser fingerprint: the raw value is never stored.
                t.column("fingerprint_hash", .text).notNull().unique()
                // Salted SHA-256 of the client address, for the per-address creation limit.
                t.column("client_address_hash", .text)
                t.column("granted", .integer).notNull().check { $0 >= 0 }
                t.column("used", .integer).notNull().defaults(to: 0)
                t.column("created_at", .datetime).notNull()
                t.column("last_seen_at", .datetime).notNull()
                t.column("transferred_to", .text).references("customers", onDelete: .restrict)
                t.column("transferred_at", .datetime)
                t.column("transferred_tokens", .integer)
                t.check(sql: "used >= 0 AND used <= granted")
            }
            try db.create(index: "anonymous_sessions_on_address", on: "anonymous_sessions", columns: ["client_address_hash", "created_at"])
            try db.create(index: "anonymous_sessions_on_last_seen", on: "anonymous_sessions", columns: ["last_seen_at"])

            // The sessions' own small ledger: +n per charge, −n per release, keys unique forever.
            try db.create(table: "anonymous_charges") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("session_id", .text).notNull().references("anonymous_sessions", onDelete: .cascade)
                t.column("amount", .integer).notNull().check { $0 != 0 }
                t.column("idempotency_key", .text).notNull().unique()
                t.column("request_id", .text)
                t.column("created_at", .datetime).notNull()
            }
            try db.create(index: "anonymous_charges_on_session", on: "anonymous_charges", columns: ["session_id"])

            // One row per generation request key: what was charged and what was answered, so a
            // retried request is never charged twice and gets the same ticket back.
            try db.create(table: "generations") { t in
                t.primaryKey("idempotency_key", .text)
                t.column("payer_kind", .text).notNull().check(sql: "payer_kind IN ('account','session','own_key')")
                t.column("payer_id", .text).notNull()
                t.column("input_hash", .text).notNull()
                t.column("status", .text).notNull().check(sql: "status IN ('reserved','completed','failed')")
                t.column("attempts", .integer).notNull().defaults(to: 1)
                t.column("request_id", .text)
                t.column("provider", .text)
                t.column("model", .text)
                t.column("response", .text)
                t.column("error", .text)
                t.column("created_at", .datetime).notNull()
                t.column("updated_at", .datetime).notNull()
            }
            try db.create(index: "generations_on_status", on: "generations", columns: ["status", "updated_at"])
        }

        migrator.registerMigration("2026-11-25 webhook inbox, payments, Stripe outbox, refund shortfall") { db in
            // Tokens a payment_refund could not take back because the customer had spent them.
            try db.alter(table: "ledger_entries") { t in
                t.add(column: "shortfall", .integer).notNull().defaults(to: 0)
            }

            try db.create(table: "webhook_events") { t in
                t.column("source", .text).notNull().check(sql: "source IN ('stripe','clerk')")
                t.column("event_id", .text).notNull()
                t.primaryKey(["source", "event_id"])
                t.column("type", .text).notNull()
                t.column("body", .text).notNull()
                t.column("headers", .text).notNull()
                t.column("received_at", .datetime).notNull()
                t.column("request_id", .text)
                t.column("status", .text).notNull().check(sql: "status IN ('received','processed','ignored','failed')")
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("last_error", .text)
                t.column("next_attempt_at", .datetime)
                t.column("processed_at", .datetime)
                t.column("outcome", .text)
            }
            try db.create(index: "webhook_events_on_status", on: "webhook_events", columns: ["status", "next_attempt_at"])
            try db.create(index: "webhook_events_on_received", on: "webhook_events", columns: ["received_at"])

            try db.create(table: "webhook_event_entries") { t in
                t.column("source", .text).notNull()
                t.column("event_id", .text).notNull()
                t.column("entry_id", .integer).notNull().references("ledger_entries")
                t.primaryKey(["source", "event_id", "entry_id"])
                t.foreignKey(["source", "event_id"], references: "webhook_events")
            }

            // One row per paid Checkout Session: what refunds are measured against.
            try db.create(table: "payments") { t in
                t.primaryKey("checkout_session_id", .text)
                t.column("payment_intent_id", .text).unique()
                t.column("user_id", .text).notNull().references("customers")
                t.column("plan_id", .text)
                t.column("tokens", .integer).notNull().check { $0 > 0 }
                t.column("amount_total", .integer).notNull().check { $0 >= 0 }
                t.column("currency", .text).notNull()
                t.column("refunded_amount", .integer).notNull().defaults(to: 0)
                t.column("refunded_tokens", .integer).notNull().defaults(to: 0)
                t.column("created_at", .datetime).notNull()
                t.check(sql: "refunded_tokens <= tokens AND refunded_amount <= amount_total")
            }
            try db.create(index: "payments_on_user", on: "payments", columns: ["user_id"])

            // Customers whose Stripe metadata must be brought up to date: one row per customer,
            // written in the transaction of every balance change. `changes` counts the changes so
            // the worker deletes the row only if nothing changed while it was pushing.
            try db.create(table: "stripe_outbox") { t in
                t.primaryKey("user_id", .text).references("customers")
                t.column("changes", .integer).notNull().defaults(to: 1)
                t.column("pending_since", .datetime).notNull()
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("next_attempt_at", .datetime).notNull()
                t.column("last_error", .text)
            }
            try db.create(index: "stripe_outbox_on_next_attempt", on: "stripe_outbox", columns: ["next_attempt_at"])
        }

        migrator.registerMigration("2026-11-25 operator audit log") { db in
            // Every console mutation, written in the transaction of its ledger entries.
            try db.create(table: "audit_log") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .datetime).notNull()
                t.column("operator", .text).notNull()
                t.column("command", .text).notNull()
                t.column("reason", .text)
                t.column("user_id", .text)
                t.column("entry_ids", .text)
                t.column("idempotency_key", .text)
                t.column("outcome", .text).notNull()
            }
            try db.create(index: "audit_log_on_user", on: "audit_log", columns: ["user_id", "id"])
            try db.create(index: "audit_log_on_operator", on: "audit_log", columns: ["operator", "id"])
        }

        migrator.registerMigration("2026-12-04 anonymous sessions by receiving account") { db in
            // The cap on sessions one account may receive counts them at every transfer.
            try db.create(
                index: "anonymous_sessions_on_transferred_to",
                on: "anonymous_sessions",
                columns: ["transferred_to"],
                condition: Column("transferred_to") != nil
            )
        }

        migrator.registerMigration("2026-12-04 payment disputes") { db in
            // One row per Stripe dispute: what it held back and where it stands, so that its
            // events apply once each in whatever order they arrive.
            try db.create(table: "disputes") { t in
                t.primaryKey("id", .text)
                t.column("checkout_session_id", .text).notNull().references("payments", column: "checkout_session_id")
                t.column("user_id", .text).notNull()
                t.column("amount", .integer).notNull()
                t.column("status", .text).notNull().check(sql: "status IN ('open','won','lost')")
                // Whether the hold was applied (tokens taken back, or the shortfall recorded).
                t.column("held", .boolean).notNull().defaults(to: false)
                t.column("taken", .integer).notNull().defaults(to: 0)
                t.column("shortfall", .integer).notNull().defaults(to: 0)
                t.column("created_at", .datetime).notNull()
                t.column("updated_at", .datetime).notNull()
            }
            try db.create(index: "disputes_on_user", on: "disputes", columns: ["user_id"])
        }

        migrator.registerMigration("2026-12-04 checkout sessions") { db in
            // Sessions opened by the API, so that at most one discounted one can ever be paid.
            try db.create(table: "checkout_sessions") { t in
                t.autoIncrementedPrimaryKey("seq")
                t.column("id", .text).notNull().unique()
                t.column("user_id", .text).notNull()
                t.column("plan_id", .text).notNull()
                t.column("amount", .integer).notNull()
                t.column("discounted", .boolean).notNull()
                t.column("status", .text).notNull().check(sql: "status IN ('open','expired','complete')")
                t.column("created_at", .datetime).notNull()
            }
            try db.create(index: "checkout_sessions_on_user", on: "checkout_sessions", columns: ["user_id", "created_at"])
        }

        migrator.registerMigration("2026-12-04 own-key generations by client") { db in
            // Generations on the caller's own AI key cost no token; they are limited per client
            // address (a salted hash, like anonymous sessions') and per account instead.
            try db.alter(table: "generations") { t in t.add(column: "client_key", .text) }
            try db.create(
                index: "generations_own_key_by_client",
                on: "generations",
                columns: ["client_key", "created_at"],
                condition: Column("payer_kind") == "own_key"
            )
            try db.create(
                index: "generations_own_key_by_payer",
                on: "generations",
                columns: ["payer_id", "created_at"],
                condition: Column("payer_kind") == "own_key"
            )
        }

        migrator.registerMigration("2026-12-04 application id") { db in
            // Marks the file as MyBA's, so no MyBA program mistakes another application's
            // database for its own (AppDatabase.checkIsMyBAFile).
            try db.execute(sql: "PRAGMA application_id = \(AppDatabase.applicationId)")
        }

        migrator.registerMigration("2026-12-04 Stripe customers unlinked") { db in
            // Stripe customers deleted at Stripe and forgotten here; their count gives the next
            // one a creation key of its own.
            try db.create(table: "stripe_customer_unlinks") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("user_id", .text).notNull().indexed()
                t.column("stripe_customer_id", .text).notNull()
                t.column("at", .datetime).notNull()
            }
        }

        migrator.registerMigration("2026-12-04 reserved generations by payer") { db in
            // The session reap spares sessions with a generation still reserved; this keeps that
            // check to the few reserved rows.
            try db.create(
                index: "generations_reserved_on_payer",
                on: "generations",
                columns: ["payer_id"],
                condition: Column("status") == "reserved"
            )
        }

        migrator.registerMigration("2026-12-05 refund snapshots and failed refunds") { db in
            // Stripe's charge snapshots (`charge.refunded`) are applied newest first by their
            // event's `created`; an older one arriving late changes nothing.
            try db.alter(table: "payments") { t in
                t.add(column: "refund_snapshot_at", .integer)
            }
            // Refunds Stripe reports failed or canceled. Keyed by PaymentIntent, not by purchase:
            // a failure may arrive before the purchase it belongs to.
            try db.create(table: "failed_refunds") { t in
                t.primaryKey("refund_id", .text)
                t.column("payment_intent_id", .text).notNull().indexed()
                t.column("amount", .integer).notNull().check { $0 > 0 }
                t.column("status", .text).notNull().check(sql: "status IN ('failed','canceled')")
                t.column("refund_created", .integer).notNull()
                t.column("failed_at", .integer).notNull()
                t.column("recorded_at", .datetime).notNull()
            }
        }

        migrator.registerMigration("2026-12-05 legacy balances awaiting import") { db in
            // A Stripe customer found carrying the user's legacy balance before `import
            // from-stripe` took it over: the mirror must not write over that balance until then.
            try db.create(table: "legacy_balance_holds") { t in
                t.primaryKey("user_id", .text)
                t.column("stripe_customer_id", .text).notNull()
                t.column("found_at", .datetime).notNull()
            }
        }

        migrator.registerMigration("2026-12-05 plan catalogs") { db in
            // The catalog in force is the newest row; none means the built-in plans. Kept whole
            // (never updated), so a version number names exactly what a decision used.
            try db.create(table: "plan_catalogs") { t in
                t.autoIncrementedPrimaryKey("version")
                t.column("catalog", .text).notNull()
                t.column("source", .text).notNull()
                t.column("installed_by", .text).notNull()
                t.column("reason", .text)
                t.column("installed_at", .datetime).notNull()
            }
        }

        return migrator
    }
}
