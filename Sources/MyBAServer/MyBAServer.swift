import Foundation
import Hummingbird
import Logging
import MyBAOps

@main
struct MyBAServer {
    static func main() async {
        let settings: MyBASettings
        let logWriter: RotatingFileWriter
        do {
            settings = try MyBASettings.fromEnvironment()
            logWriter = try RotatingFileWriter(path: settings.logFile, maxBytes: settings.logMaxBytes, maxFiles: settings.logMaxFiles)
        } catch {
            fail("myba-server: \(error)")
        }
        let level = Logger.Level(name: settings.logLevel) ?? .info
        let destination = LogDestination.all([.standardOutput, .file(logWriter)])
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level, destination: destination) }
        let logger = Logger(label: "myba.server")
        do {
            let app = try await buildApplication(settings: settings, logger: logger)
            try await app.runService()
            logger.info("server stopped")
        } catch {
            logger.critical("server failed", metadata: ["error.message": "\(error)"])
            fail("myba-server: \(error)")
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
}
