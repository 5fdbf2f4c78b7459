import Foundation
import MyBATestSupport
import Testing

/// The web page in a real browser: `Tests/browser/journey.py` drives Debian's Chromium through
/// Selenium (installed in `.venv` by `scripts/test.sh`; `.ci/run` installs the browser and its
/// driver) against the built `myba-server` and `stripe-emulator`, with local stand-ins for
/// Clerk's browser SDK and OpenAI. What it walks is listed at the top of the script.
@Suite("The web page in Chromium")
struct BrowserJourneyTests {
    @Test(
        "anonymous to zero tokens, sign-in with transfer, purchase and cancel through the emulator's checkout page, own key, Clerk stand-in, phone width, keyboard; no console errors"
    )
    func journey() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python), "no .venv: run the tests with scripts/test.sh, which installs Selenium")
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            try #require(
                FileManager.default.isExecutableFile(atPath: tool),
                "\(tool) is missing: apt install chromium chromium-driver (.ci/run does)"
            )
        }
        let screenshots = try TemporaryDirectory("myba-screenshots")
        defer { screenshots.remove() }
        let binaries = URL(fileURLWithPath: BuiltProduct.path("myba-server")).deletingLastPathComponent().path
        let script = root.appendingPathComponent("Tests/browser/journey.py").path
        let result = try await ChildProcess.start(python, [script, "--bin", binaries, "--screenshots", screenshots.path]).wait(timeout: .seconds(300))
        let output = result.stdout + result.stderr
        #expect(result.status == 0, "\(output)")
        #expect(output.contains("browser journey: 6 passed, 0 failed"), "\(output)")
        for name in ["ticket", "out-of-tokens", "pricing", "payment-success", "own-key", "phone"] {
            #expect(FileManager.default.fileExists(atPath: screenshots.file(name + ".png")), "no screenshot of \(name)")
        }
    }
}
