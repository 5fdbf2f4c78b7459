import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Where JSON log lines go.
public struct LogDestination: Sendable {
    let writeLine: @Sendable ([UInt8]) -> Void

    public init(_ writeLine: @escaping @Sendable ([UInt8]) -> Void) {
        self.writeLine = writeLine
    }

    /// Standard output.
    public static let standardOutput = LogDestination { line in
        // One write(2) per line keeps lines whole when several threads log at once.
        line.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(STDOUT_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 { if errno == EINTR { continue } else { return } }
                offset += written
            }
        }
    }

    /// A size-rotated file.
    public static func file(_ writer: RotatingFileWriter) -> LogDestination {
        LogDestination { writer.write($0) }
    }

    /// Every line to each of `destinations`.
    public static func all(_ destinations: [LogDestination]) -> LogDestination {
        LogDestination { line in for destination in destinations { destination.writeLine(line) } }
    }
}

/// A swift-log handler writing one JSON object per line:
/// `{"ts":"2026-11-25T14:03:07.123Z","level":"info","msg":"…","label":"…","request.id":"…",…}`.
/// Nested metadata is flattened with dotted keys.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    public let label: String
    private let destination: LogDestination

    public init(label: String, level: Logger.Level = .info, destination: LogDestination, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.destination = destination
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        if let error = event.error, merged["error.message"] == nil { merged["error.message"] = "\(error)" }
        destination.writeLine(Self.render(date: Date(), level: event.level, message: event.message.description, label: label, metadata: merged))
    }

    /// One JSON line, ending in a newline. Fixed keys first, then metadata sorted by key so the
    /// same event always renders the same way.
    public static func render(date: Date, level: Logger.Level, message: String, label: String, metadata: Logger.Metadata) -> [UInt8] {
        var out = JSONLineBuilder()
        out.field("ts", string: Timestamps.timestamp(date))
        out.field("level", string: level.rawValue)
        out.field("msg", string: message)
        out.field("label", string: label)
        var flat: [(String, Logger.Metadata.Value)] = []
        flatten(metadata, prefix: "", into: &flat)
        for (key, value) in flat.sorted(by: { $0.0 < $1.0 }) where !reservedKeys.contains(key) {
            out.field(key, value: value)
        }
        return out.finish()
    }

    private static let reservedKeys: Set<String> = ["ts", "level", "msg", "label"]

    private static func flatten(_ metadata: Logger.Metadata, prefix: String, into flat: inout [(String, Logger.Metadata.Value)]) {
        for (key, value) in metadata {
            let fullKey = prefix.isEmpty ? key : "\(prefix).\(key)"
            if case .dictionary(let nested) = value {
                flatten(nested, prefix: fullKey, into: &flat)
            } else {
                flat.append((fullKey, value))
            }
        }
    }
}

/// Builds a JSON object on one line without Foundation's encoder, so key order is ours and a
/// log line costs one small allocation.
struct JSONLineBuilder {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var first = true

    mutating func field(_ key: String, string: String) {
        separator()
        appendString(key)
        bytes.append(UInt8(ascii: ":"))
        appendString(string)
    }

    mutating func field(_ key: String, value: Logger.Metadata.Value) {
        separator()
        appendString(key)
        bytes.append(UInt8(ascii: ":"))
        appendValue(value)
    }

    mutating func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    private mutating func separator() {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
    }

    private mutating func appendValue(_ value: Logger.Metadata.Value) {
        switch value {
        case .string(let text):
            appendString(text)
        case .stringConvertible(let convertible):
            // Numbers and booleans keep their JSON type, so `duration.ms` can be compared.
            switch convertible {
            case let number as any BinaryInteger: bytes.append(contentsOf: Array("\(number)".utf8))
            case let number as Double where number.isFinite: bytes.append(contentsOf: Array("\(number)".utf8))
            case let flag as Bool: bytes.append(contentsOf: Array((flag ? "true" : "false").utf8))
            default: appendString(convertible.description)
            }
        case .array(let values):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                appendValue(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .dictionary(let nested):
            var inner = JSONLineBuilder()
            for (key, element) in nested.sorted(by: { $0.key < $1.key }) { inner.field(key, value: element) }
            inner.bytes.append(UInt8(ascii: "}"))
            bytes.append(contentsOf: inner.bytes)
        }
    }

    private mutating func appendString(_ text: String) {
        JSONText.appendString(text, to: &bytes)
    }
}

/// JSON written by hand, for the hot paths where Foundation's encoder costs more than the work
/// it reports on (log lines, generation answers).
enum JSONText {
    /// Appends `text` as a JSON string literal, quotes included.
    static func appendString(_ text: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        // Runs of bytes that need no escape are copied whole: one byte at a time, this was the
        // largest item of our own code in a profile of mock generations.
        text.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5C || byte == 0x7F {
                bytes.append(contentsOf: utf8[runStart..<index])
                appendEscape(of: byte, to: &bytes)
                runStart = index + 1
            }
            bytes.append(contentsOf: utf8[runStart...])
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func appendEscape(of byte: UInt8, to bytes: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "\""): bytes.append(contentsOf: [92, 34])
        case UInt8(ascii: "\\"): bytes.append(contentsOf: [92, 92])
        case UInt8(ascii: "\n"): bytes.append(contentsOf: [92, 110])
        case UInt8(ascii: "\r"): bytes.append(contentsOf: [92, 114])
        case UInt8(ascii: "\t"): bytes.append(contentsOf: [92, 116])
        default:
            bytes.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48])
            bytes.append(contentsOf: [byte].lowercaseHex.utf8)
        }
    }

    /// Appends `"key":`.
    static func appendKey(_ key: String, to bytes: inout [UInt8]) {
        appendString(key, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// Appends a JSON array of strings.
    static func appendStrings(_ values: [String], to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            appendString(value, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }
}
