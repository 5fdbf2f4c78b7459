import Foundation

/// A token plan sold through Stripe Checkout.
public struct Plan: Codable, Equatable, Sendable {
    public var id: String
    public var name: String
    public var tokens: Int
    /// Price in the currency's minor unit (cents).
    public var amount: Int
    public var currency: String

    public init(id: String, name: String, tokens: Int, amount: Int, currency: String) {
        self.id = id
        self.name = name
        self.tokens = tokens
        self.amount = amount
        self.currency = currency
    }
}

/// The plans on sale and the first-purchase discount, in the shape `GET /api/plans` returns.
public struct PlanCatalog: Codable, Equatable, Sendable {
    public var plans: [Plan]
    public var firstPurchaseDiscountPercent: Int

    public init(plans: [Plan], firstPurchaseDiscountPercent: Int) {
        self.plans = plans
        self.firstPurchaseDiscountPercent = firstPurchaseDiscountPercent
    }

    /// Starter 10, Professional 50, Enterprise 200, 20 % off a first purchase.
    public static let standard = PlanCatalog(
        plans: [
            Plan(id: "starter", name: "Starter", tokens: 10, amount: 500, currency: "usd"),
            Plan(id: "professional", name: "Professional", tokens: 50, amount: 2000, currency: "usd"),
            Plan(id: "enterprise", name: "Enterprise", tokens: 200, amount: 6000, currency: "usd"),
        ],
        firstPurchaseDiscountPercent: 20
    )

    public func plan(id: String) -> Plan? { plans.first { $0.id == id } }

    /// What a first purchase of `plan` costs: the discount taken off, rounded down.
    public func firstPurchaseAmount(of plan: Plan) -> Int {
        plan.amount * (100 - firstPurchaseDiscountPercent) / 100
    }

    /// Reads and validates a plans file (`MYBA_PLANS_FILE`). The error names the file and the
    /// first problem found, so a bad deploy fails at start-up instead of at checkout.
    public static func load(contentsOf path: String) throws -> PlanCatalog {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PlanCatalogError(path: path, problem: "cannot be read (\((error as NSError).localizedDescription))")
        }
        let catalog: PlanCatalog
        do {
            catalog = try JSONDecoder().decode(PlanCatalog.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw PlanCatalogError(path: path, problem: "is missing \"\(key.stringValue)\"\(Self.location(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw PlanCatalogError(path: path, problem: "has a value of the wrong type\(Self.location(context.codingPath))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw PlanCatalogError(path: path, problem: "has a null value\(Self.location(context.codingPath))")
        } catch {
            throw PlanCatalogError(path: path, problem: "is not valid JSON of the form {\"plans\":[…],\"firstPurchaseDiscountPercent\":N}")
        }
        if let problem = catalog.problems.first {
            throw PlanCatalogError(path: path, problem: problem)
        }
        return catalog
    }

    /// Every rule the catalog breaks, empty when it is valid.
    public var problems: [String] {
        var problems: [String] = []
        if plans.isEmpty { problems.append("lists no plans") }
        var seen = Set<String>()
        for (index, plan) in plans.enumerated() {
            let at = "plan \(index + 1) (\"\(plan.id)\")"
            if plan.id.isEmpty || plan.id.count > 40
                || !plan.id.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") })
            {
                problems.append("\(at): id must be 1–40 characters of a–z, 0–9, - or _")
            }
            if !seen.insert(plan.id).inserted { problems.append("\(at): id is used twice") }
            if plan.name.trimmingCharacters(in: .whitespaces).isEmpty { problems.append("\(at): name is empty") }
            if !(1...1_000_000).contains(plan.tokens) { problems.append("\(at): tokens must be between 1 and 1000000") }
            // Stripe refuses card charges under 50 cents (or the equivalent).
            if !(50...99_999_999).contains(plan.amount) { problems.append("\(at): amount must be between 50 and 99999999 minor units") }
            if plan.currency.count != 3 || !plan.currency.allSatisfy({ $0.isASCII && $0.isLowercase }) {
                problems.append("\(at): currency must be a lowercase ISO 4217 code such as \"usd\"")
            }
        }
        if !(0...90).contains(firstPurchaseDiscountPercent) {
            problems.append("firstPurchaseDiscountPercent must be between 0 and 90")
        } else {
            // The discounted price is charged too: it must clear Stripe's minimum as well.
            for (index, plan) in plans.enumerated() where (50...99_999_999).contains(plan.amount) && firstPurchaseAmount(of: plan) < 50 {
                problems.append(
                    "plan \(index + 1) (\"\(plan.id)\"): with \(firstPurchaseDiscountPercent) % off a first purchase it costs \(firstPurchaseAmount(of: plan)), under Stripe's minimum charge of 50 minor units"
                )
            }
        }
        return problems
    }

    private static func location(_ path: [any CodingKey]) -> String {
        guard !path.isEmpty else { return "" }
        let rendered = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return " at \(rendered.hasPrefix(".") ? String(rendered.dropFirst()) : rendered)"
    }
}

/// A plans file that cannot be used.
public struct PlanCatalogError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var problem: String
    public var description: String { "plans file \(path) \(problem)" }
}
