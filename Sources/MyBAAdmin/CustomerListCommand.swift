import ArgumentParser
import MyBAOps

/// `customer list`: customers by newest or by tokens.
struct CustomerListCommand: ConsoleCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List customers, newest first or by tokens.")

    enum Sort: String, ExpressibleByArgument, CaseIterable {
        case tokens, created
    }

    @OptionGroup var global: GlobalOptions

    @Option(help: "How many customers (1–10000).")
    var limit = 50

    @Option(help: "Order: created (newest first) or tokens (most first).")
    var sort: Sort = .created

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000, got \(limit)") }
    }

    func execute(in console: Console) async throws {
        try printCustomers(try await console.database().queries.listCustomers(limit: limit, sortByTokens: sort == .tokens), in: console)
    }
}

/// Prints customers as a table or JSON (`customer list` and `customer find`).
func printCustomers(_ customers: [CustomerListing], in console: Console) throws {
    if console.json {
        try console.writeJSON(customers)
        return
    }
    var table = TextTable(["user", "email", "stripe", "tokens", "created", "deleted"])
    for customer in customers {
        table.add([
            customer.userId, customer.email ?? "-", customer.stripeCustomerId ?? "-", String(customer.tokens),
            Timestamps.timestamp(customer.createdAt), customer.deleted ? "yes" : "-",
        ])
    }
    console.write(table.render(bold: console.bold))
    console.write("\(customers.count) customer(s)")
}
