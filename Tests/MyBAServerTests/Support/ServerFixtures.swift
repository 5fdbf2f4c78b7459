import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import MyBATestSupport
import NIOCore
import StripeEmulator
import Testing

@testable import MyBAOps
@testable import MyBAServer

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A server built exactly as `main` builds it, on a temporary directory, logging into memory.
struct ServerFixture {
    let directory: TemporaryDirectory
    let settings: MyBASettings
    let logs = CapturedLines()

    init(plansFile: String? = nil, configure: (inout MyBASettings) -> Void = { _ in }) throws {
        directory = try TemporaryDirectory("myba-server")
        var settings = MyBASettings(
            port: 0,
            databasePath: directory.file("data/myba.sqlite"),
            logFile: directory.file("logs/myba.jsonl"),
            plansFile: plansFile,
            maxBodyBytes: 4096
        )
        configure(&settings)
        self.settings = settings
    }

    func application() async throws -> some ApplicationProtocol {
        let logs = self.logs
        let logger = Logger(label: "myba.server") { label in JSONLogHandler(label: label, level: .debug, destination: logs.destination) }
        return try await buildApplication(settings: settings, logger: logger)
    }

    func database() throws -> AppDatabase {
        try AppDatabase.openFile(at: settings.databasePath, options: .init(createIfMissing: false))
    }

    func logLines() throws -> [[String: Any]] {
        try logs.all.map(jsonObject)
    }
}

func webhookFixture(_ configure: (inout MyBASettings) -> Void = { _ in }) throws -> ServerFixture {
    try ServerFixture { settings in
        settings.stripe.webhookSecret = stripeWebhookSecret
        settings.auth.webhookSecret = clerkWebhookSecret
        settings.maxBodyBytes = 64 * 1024
        configure(&settings)
    }
}

/// `myba-server` started as a process; its port is read from the `server listening` log line.
struct RunningServer {
    let process: ChildProcess
    let port: Int

    static func start(environment: [String: String], currentDirectory: String? = nil) async throws -> RunningServer {
        let process = try ChildProcess.start(
            BuiltProduct.path("myba-server"),
            [],
            environment: environment.merging(["PATH": "/usr/bin:/bin"]) { a, _ in a },
            currentDirectory: currentDirectory
        )
        do {
            let output = try await process.waitForOutput("\"server listening\"")
            for line in output.split(separator: "\n") {
                if let object = try? jsonObject(String(line)), object["msg"] as? String == "server listening", let port = object["http.port"] as? Int
                {
                    return RunningServer(process: process, port: port)
                }
            }
            throw TestSupportError("myba-server printed no port: \(output)")
        } catch {
            process.send(SIGKILL)
            throw error
        }
    }

    func post(_ path: String, body: String, headers: HTTPFields) async throws -> (Int, Data) {
        try await send("POST", path, body: body, headers: headers)
    }

    func get(_ path: String, headers: HTTPFields = [:]) async throws -> (Int, Data) {
        try await send("GET", path, body: nil, headers: headers)
    }

    func send(_ method: String, _ path: String, body: String?, headers: HTTPFields) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        for field in headers { request.setValue(field.value, forHTTPHeaderField: field.name.rawName) }
        request.httpBody = body.map { Data($0.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, data)
    }

    func stop() {
        // Called from `defer`: SIGTERM only, the process ends on its own.
        process.send(SIGTERM)
    }
}

func jsonBody(_ object: [String: Any]) -> ByteBuffer {
    ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
}

func bearer(_ token: String) -> HTTPFields {
    [.authorization: "Bearer \(token)", .contentType: "application/json"]
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]

/// Runs a Stripe emulator on a free port for the duration of `body`.
func withStripeEmulator<T: Sendable>(
    _ emulator: StripeEmulator = StripeEmulator(),
    _ body: @Sendable (StripeEmulator, URL) async throws -> T
) async throws -> T {
    try await emulator.application().test(.live) { client in
        try await body(emulator, URL(string: "http://127.0.0.1:\(client.port!)")!)
    }
}

func stripeClient(_ base: URL, key: String = "sk_test_myba") throws -> StripeClient {
    try StripeClient(settings: StripeSettings(secretKey: key, apiBase: base), http: CurlHTTPClient(), retryDelayScale: 0.01)
}

/// A server whose AI providers (OpenRouter, OpenAI, Anthropic) are the local `FakeUpstream` at
/// `base`. A provider call's deadline is generous: a loaded machine must not turn a quick answer
/// into a timeout; a test of timeouts sets its own.
func providerFixture(upstream base: URL, models: [String], key: String? = "sk-or-server-secret-123", timeout: Double = 10) throws -> ServerFixture {
    try ServerFixture { settings in
        settings.ai.openRouterKey = key
        settings.ai.models = models
        settings.ai.openRouterBase = base.appendingPathComponent("api/v1")
        settings.ai.openAIBase = base.appendingPathComponent("v1")
        settings.ai.anthropicBase = base.appendingPathComponent("v1")
        settings.ai.timeoutSeconds = timeout
        settings.ai.publicURL = "https://myba.example"
    }
}
