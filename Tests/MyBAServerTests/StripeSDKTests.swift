import Foundation
import MyBATestSupport
import StripeEmulator
import Testing

/// The emulator must behave as Stripe does, not only as our client expects: the official
/// stripe-python SDK (installed in `.venv` by `scripts/test.sh`) runs MyBA's calls against it.
@Suite("Stripe emulator with the official SDK")
struct StripeSDKTests {
    @Test("stripe-python's customers, pagination, idempotency, errors, checkout, refunds, events and Webhook.construct_event all work")
    func officialSDK() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python), "no .venv: run the tests with scripts/test.sh, which installs stripe-python")
        let script = root.appendingPathComponent("Tests/sdk/stripe_sdk_check.py").path
        let output = try await withStripeEmulator { _, base in
            try await Task.detached {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: python)
                process.arguments = [script, base.absoluteString]
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = pipe
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                return (process.terminationStatus, String(decoding: data, as: UTF8.self))
            }.value
        }
        #expect(output.0 == 0, "\(output.1)")
        #expect(output.1.contains("6 passed, 0 failed"), "\(output.1)")
    }
}
