import Foundation

/// The installed plan catalogs (`plan_catalogs`): the newest row is in force, none means the
/// built-in plans. Rows are kept whole, never updated, so a version names exactly what a
/// decision used.
struct PlanCatalogStore {
    let sql: SQLConnection

    /// The catalog in force.
    func installed() throws -> InstalledPlans {
        guard let row = try sql.fetchOne("SELECT * FROM plan_catalogs ORDER BY version DESC LIMIT 1") else { return .builtIn }
        return try Self.installedPlans(row: row)
    }

    /// Every catalog installed, newest first (the built-in one is not listed).
    func history(limit: Int) throws -> [InstalledPlans] {
        try sql.fetchAll("SELECT * FROM plan_catalogs ORDER BY version DESC LIMIT ?", [limit]).map(Self.installedPlans(row:))
    }

    /// The newest catalog installed from a plans file; nil when there is none or it cannot be read.
    func lastCatalogFromFile() throws -> PlanCatalog? {
        guard let row = try sql.fetchOne("SELECT * FROM plan_catalogs WHERE source LIKE 'file:%' ORDER BY version DESC LIMIT 1") else {
            return nil
        }
        return (try? Self.installedPlans(row: row))?.catalog
    }

    /// Installs the catalog stored as `text`; returns the catalog in force afterwards.
    func insert(_ text: String, source: String, by actor: String, reason: String?) throws -> InstalledPlans {
        try sql.execute(
            "INSERT INTO plan_catalogs (catalog, source, installed_by, reason, installed_at) VALUES (?, ?, ?, ?, ?)",
            [text, source, actor, reason, Date()]
        )
        return try installed()
    }

    private static func installedPlans(row: SQLRow) throws -> InstalledPlans {
        let text: String = try row.get("catalog")
        let catalog = try JSONDecoder().decode(PlanCatalog.self, from: Data(text.utf8))
        return InstalledPlans(
            version: try row.get("version"),
            catalog: catalog,
            source: try row.get("source"),
            installedAt: try row.get("installed_at"),
            installedBy: try row.get("installed_by")
        )
    }
}
