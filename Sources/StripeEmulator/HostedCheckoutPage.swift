import Foundation

/// The emulator's stand-in for Stripe's hosted checkout page: what a buyer sees between
/// "Buy" and the return to MyBA. Every value shown is escaped.
enum HostedCheckoutPage {
    static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func amount(_ minor: Int, currency: String) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .currency
        formatter.currencyCode = currency.uppercased()
        formatter.locale = Locale(identifier: "en_US")
        return formatter.string(from: NSNumber(value: Double(minor) / 100)) ?? "\(minor) \(currency)"
    }

    static let style = """
        body{font-family:system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0;display:flex;justify-content:center;padding:2rem 1rem}
        main{background:#fff;border:1px solid #e3e8ee;border-radius:12px;padding:1.5rem;width:min(420px,100%)}
        .test{background:#ffde92;color:#5a3d00;border-radius:6px;padding:.25rem .5rem;font-size:.8rem;font-weight:600;display:inline-block}
        .amount{font-size:2rem;font-weight:700;margin:.25rem 0}
        button{font:inherit;font-weight:600;width:100%;padding:.7rem;border-radius:8px;border:1px solid #635bff;margin-top:.75rem;cursor:pointer}
        .pay{background:#635bff;color:#fff}.cancel{background:#fff;color:#635bff}
        """

    static func page(_ session: HostedSession) -> String {
        let total = session.amountTotal
        let currency = session.currency
        let status = session.status
        let product = session.product
        let escapedId = escape(session.id)
        let actions =
            status == "open"
            ? """
            <form method="post" action="/checkout/\(escapedId)/pay"><button class="pay" type="submit" data-test="emulator-pay">Pay \(escape(amount(total, currency: currency)))</button></form>
            <form method="post" action="/checkout/\(escapedId)/cancel"><button class="cancel" type="submit" data-test="emulator-cancel">Cancel and go back</button></form>
            """
            : "<p>This checkout is \(escape(status)) and can no longer be paid.</p>"
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Checkout (Stripe emulator)</title><style>\(style)</style></head><body><main>
            <span class="test">TEST MODE · Stripe emulator</span>
            <h1>\(escape(product))</h1>
            <p class="amount" data-test="emulator-amount">\(escape(amount(total, currency: currency)))</p>
            <p>Checkout Session <code>\(escapedId)</code>. No card is needed: Pay completes the session and sends the signed webhook.</p>
            \(actions)
            </main></body></html>
            """
    }

    static func message(title: String, text: String) -> String {
        """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title><style>\(style)</style></head>
        <body><main><h1>\(escape(title))</h1><p>\(escape(text))</p></main></body></html>
        """
    }
}
