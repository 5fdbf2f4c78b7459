import Foundation
import MyBATestSupport
import Testing

/// The tree keeps Hummingbird's `.swift-format` settings (`swift format format -i -r Sources Tests Package.swift` fixes it).
@Suite("Formatting")
struct FormattingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("swift format lint --strict finds nothing in Sources, Tests and Package.swift")
    func formatted() async throws {
        let result = try await ChildProcess.start(
            "/usr/bin/env",
            ["swift", "format", "lint", "--strict", "-r", "Sources", "Tests", "Package.swift"],
            currentDirectory: Self.root.path
        ).wait(timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stderr.prefix(4000))")
    }
}
