import Foundation

/// The plan catalog in force, with the version that identifies it.
///
/// The catalog lives in the database, so the server, its retry worker and a console replay
/// decide from the same plans: an operator's change (`plans set`) takes effect at once
/// everywhere, with no restart and no second file to keep in step.
public struct InstalledPlans: Codable, Equatable, Sendable {
    /// 0 for the built-in plans, then 1, 2, … for each catalog installed.
    public var version: Int
    public var catalog: PlanCatalog
    /// `built-in`, `file:<path>` (the server's `MYBA_PLANS_FILE`) or `console`.
    public var source: String
    public var installedAt: Date?
    public var installedBy: String?

    public static let builtIn = InstalledPlans(version: 0, catalog: .standard, source: "built-in", installedAt: nil, installedBy: nil)

    /// `version 3 (console, 2026-12-05T04:00:00Z)`: how replies and logs name a catalog.
    public var label: String {
        guard let installedAt else { return "version \(version) (\(source))" }
        return "version \(version) (\(source), \(Timestamps.timestamp(installedAt)))"
    }
}

/// What installing the `MYBA_PLANS_FILE` catalog at start-up did.
public enum PlansFileAdoption: Sendable, Equatable {
    /// The file differs from what the server last installed from it: it is the new version.
    case installed(InstalledPlans)
    /// The file is what the server installed from it before; the current catalog (perhaps
    /// changed since by an operator) stays.
    case unchanged(current: InstalledPlans)
}

extension PlanCatalog {
    /// The catalog as stored: keys sorted, so equal catalogs store equal text.
    var canonicalJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

extension PlanCatalogs {
    /// The catalog in force now.
    public func installed() async throws -> InstalledPlans {
        try await database.read { tx in try tx.plans.installed() }
    }

    /// Every catalog installed, newest first (the built-in one is not listed).
    public func history(limit: Int) async throws -> [InstalledPlans] {
        try await database.read { tx in try tx.plans.history(limit: limit) }
    }

    /// Installs the server's `MYBA_PLANS_FILE` catalog when the file changed since the server
    /// last installed it. A restart with an unchanged file therefore keeps a catalog an
    /// operator set since, and an edited file takes over at the next start.
    public func adoptFile(_ catalog: PlanCatalog, path: String) async throws -> PlansFileAdoption {
        let text = catalog.canonicalJSON
        return try await database.write { tx in
            // Compared as catalogs, not as text: a later build writing the same catalog another
            // way must not count as an edited file and undo an operator's `plans set`.
            if try tx.plans.lastCatalogFromFile() == catalog {
                return .unchanged(current: try tx.plans.installed())
            }
            return .installed(try tx.plans.insert(text, source: "file:\(path)", by: "server", reason: nil))
        }
    }

    /// An operator's new catalog (`plans set`), audited in the same transaction.
    public func install(_ catalog: PlanCatalog, by context: OperatorContext) async throws -> InstalledPlans {
        if let problem = catalog.problems.first { throw PlanCatalogError(path: "given", problem: problem) }
        return try await database.write { tx in
            let installed = try tx.plans.insert(
                catalog.canonicalJSON,
                source: "console",
                by: "operator:\(context.operatorName)",
                reason: context.reason
            )
            try AuditLog.insert(
                context: context,
                userId: nil,
                entryIds: [],
                idempotencyKey: nil,
                outcome: "installed plan catalog \(installed.label)",
                in: tx
            )
            return installed
        }
    }
}
