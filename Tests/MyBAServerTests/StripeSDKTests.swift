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
        try #require(
            FileManager.default.isExecutableFile(atPath: python),
            "no .venv: run the tests with scripts/test.sh, which installs stripe-python"
        )
        let script = root.appendingPathComponent("Tests/sdk/stripe_sdk_check.py").path
        let output = try await withStripeEmulator { _, base in
            let result = try await ChildProcess.start(python, [script, base.absoluteString]).wait(timeout: .seconds(180))
            return (result.status, result.stdout + result.stderr)
        }
        #expect(output.0 == 0, "\(output.1)")
        #expect(output.1.contains("6 passed, 0 failed"), "\(output.1)")
    }
}
