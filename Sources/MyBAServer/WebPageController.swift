import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import MyBAOps
import NIOCore

/// The customer web page: `/`, `/pricing` and `/payment-success` are the one HTML document, and
/// `/app/{file}` its modules, style and icon, compiled into the binary from `Resources/web`.
/// `GET /api/config` tells the page how to sign in and whether payments are on.
///
/// Every answer carries a strict Content-Security-Policy: scripts, styles and connections from
/// this origin only, plus Clerk's Frontend API (and what Clerk's SDK documents it needs) when a
/// publishable key is set. Files are revalidated (`no-cache` with an ETag), so a new binary's
/// page is never mixed with an old module.
struct WebPageController {
    let settings: MyBASettings

    struct WebFile: Sendable {
        let bytes: [UInt8]
        let contentType: String
        let etag: String

        init(_ bytes: [UInt8], contentType: String) {
            self.bytes = bytes
            self.contentType = contentType
            let digest = SHA256.hash(data: bytes).prefix(12).map { String(format: "%02x", $0) }.joined()
            etag = "\"\(digest)\""
        }
    }

    static let document = WebFile(PackageResources.index_html, contentType: "text/html; charset=utf-8")
    static let assets: [String: WebFile] = [
        "app.js": WebFile(PackageResources.app_js, contentType: "text/javascript; charset=utf-8"),
        "api.js": WebFile(PackageResources.api_js, contentType: "text/javascript; charset=utf-8"),
        "auth.js": WebFile(PackageResources.auth_js, contentType: "text/javascript; charset=utf-8"),
        "ticket.js": WebFile(PackageResources.ticket_js, contentType: "text/javascript; charset=utf-8"),
        "app.css": WebFile(PackageResources.app_css, contentType: "text/css; charset=utf-8"),
        "icon.svg": WebFile(PackageResources.icon_svg, contentType: "image/svg+xml"),
    ]

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .get("/", use: page)
            .get("/pricing", use: page)
            .get("/payment-success", use: page)
            .get("/app/{file}", use: asset)
            .get("/api/config", use: config)
    }

    /// The Content-Security-Policy of every page answer.
    static func contentSecurityPolicy(auth: AuthSettings) -> String {
        var scripts = ["'self'"]
        var connections = ["'self'"]
        var styles = ["'self'"]
        var images = ["'self'", "data:"]
        var frames = ["'none'"]
        if let sdk = auth.browserSDKScriptURL, let origin = origin(of: sdk) {
            // What Clerk's SDK documents it needs: its Frontend API for the script and its
            // requests, its image host, Cloudflare's bot check in a frame, and the styles its
            // components inject at run time.
            scripts += [origin, "https://challenges.cloudflare.com"]
            connections.append(origin)
            if let publishableKey = auth.publishableKey, let host = AuthSettings.frontendAPIHost(publishableKey: publishableKey),
                "https://\(host)" != origin
            {
                connections.append("https://\(host)")
            }
            styles.append("'unsafe-inline'")
            images.append("https://img.clerk.com")
            frames = ["https://challenges.cloudflare.com"]
        }
        return [
            "default-src 'none'",
            "script-src " + scripts.joined(separator: " "),
            "style-src " + styles.joined(separator: " "),
            "img-src " + images.joined(separator: " "),
            "connect-src " + connections.joined(separator: " "),
            "frame-src " + frames.joined(separator: " "),
            "worker-src 'self' blob:",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ].joined(separator: "; ")
    }

    static func origin(of url: URL) -> String? {
        guard let scheme = url.scheme, let host = url.host else { return nil }
        return url.port.map { "\(scheme)://\(host):\($0)" } ?? "\(scheme)://\(host)"
    }

    @Sendable func page(_ request: Request, context: MyBARequestContext) async throws -> Response {
        serve(Self.document, request: request)
    }

    @Sendable func asset(_ request: Request, context: MyBARequestContext) async throws -> Response {
        let name = try context.parameters.require("file")
        guard let file = Self.assets[name] else {
            throw APIError(.notFound, code: "not_found", message: "no such file: /app/\(name.prefix(80))")
        }
        return serve(file, request: request)
    }

    func serve(_ file: WebFile, request: Request) -> Response {
        var headers: HTTPFields = [
            .contentType: file.contentType,
            .cacheControl: "no-cache",
            .eTag: file.etag,
            .contentSecurityPolicy: Self.contentSecurityPolicy(auth: settings.auth),
            .xContentTypeOptions: "nosniff",
            .referrerPolicy: "strict-origin-when-cross-origin",
        ]
        if request.headers[values: .ifNoneMatch].contains(where: {
            $0.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == file.etag }
        }) {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
    }

    /// What the page needs to know before it can sign in or sell.
    struct PageConfig: ResponseEncodable {
        /// `development` (the page's sign-in form sends `Bearer dev:<id>`) or `clerk`.
        var authMode: String
        var clerkPublishableKey: String?
        var clerkScriptURL: String?
        var paymentsEnabled: Bool
        var anonymousTokens: Int
        var version: String
    }

    @Sendable func config(_ request: Request, context: MyBARequestContext) async throws -> PageConfig {
        PageConfig(
            authMode: settings.auth.isDevelopmentMode ? "development" : "clerk",
            clerkPublishableKey: settings.auth.isDevelopmentMode ? nil : settings.auth.publishableKey,
            clerkScriptURL: settings.auth.isDevelopmentMode ? nil : settings.auth.browserSDKScriptURL?.absoluteString,
            paymentsEnabled: settings.stripe.secretKey != nil,
            anonymousTokens: settings.anonymous.freeTokens,
            version: mybaVersion
        )
    }
}

extension HTTPField.Name {
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}
