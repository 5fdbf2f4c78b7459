import Logging

extension Logger.Level {
    /// Parses a swift-log level name (`info`, `debug`, …).
    public init?(name: String) {
        self.init(rawValue: name.lowercased())
    }
}
