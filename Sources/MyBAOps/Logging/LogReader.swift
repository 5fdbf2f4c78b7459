import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Which log lines to keep. Cheap byte checks run before any JSON parsing.
public struct LogFilter: Sendable {
    public var requestId: String?
    public var userId: String?
    /// Keep this level and above (`trace` < `debug` < `info` < `notice` < `warning` < `error` < `critical`).
    public var minimumLevel: String?
    public var since: Date?
    /// Plain text the raw line must contain.
    public var text: String?

    public init(requestId: String? = nil, userId: String? = nil, minimumLevel: String? = nil, since: Date? = nil, text: String? = nil) {
        self.requestId = requestId
        self.userId = userId
        self.minimumLevel = minimumLevel
        self.since = since
        self.text = text
    }

    /// swift-log's levels, lowest first.
    public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// The exact bytes our JSON handler writes for a request id: matching them needs no parsing.
    static func needle(key: String, value: String) -> [UInt8] {
        Array("\"\(key)\":".utf8) + quoted(value)
    }

    /// `value` as a JSON string literal: what any encoder writes for it, however it spaces the
    /// line around it.
    static func quoted(_ value: String) -> [UInt8] {
        let data = (try? JSONSerialization.data(withJSONObject: [value], options: [.withoutEscapingSlashes])) ?? Data("[\"\(value)\"]".utf8)
        return Array(data.dropFirst().dropLast())
    }

    /// The byte search every filtered line must pass first: the id's JSON string, wherever it
    /// stands. Cheap, and never misses a line however it was re-encoded.
    var anchor: [UInt8]? {
        requestId.map(Self.quoted) ?? userId.map(Self.quoted)
    }

    func matches(_ line: UnsafeRawBufferPointer) -> Bool {
        // Our handler's own spelling (`"request.id":"…"`) is a match without parsing; a line
        // that only holds the value somewhere (re-encoded by a shipper with a space after the
        // colon, or the id inside another field) is confirmed by parsing it.
        var confirm: [(key: String, value: String)] = []
        for (key, value) in [("request.id", requestId), ("user.id", userId)] {
            guard let value else { continue }
            if contains(line, Self.needle(key: key, value: value)) { continue }
            guard contains(line, Self.quoted(value)) else { return false }
            confirm.append((key, value))
        }
        if let text, !contains(line, Array(text.utf8)) { return false }
        if !confirm.isEmpty || minimumLevel != nil || since != nil {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return false }
            for (key, value) in confirm where object[key] as? String != value { return false }
            if let minimumLevel, let level = object["level"] as? String,
                (Self.levels.firstIndex(of: level) ?? 0) < (Self.levels.firstIndex(of: minimumLevel) ?? 0)
            {
                return false
            }
            if let since, let ts = (object["ts"] as? String).flatMap(Timestamps.parse), ts < since { return false }
        }
        return true
    }

    func contains(_ haystack: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count, let base = haystack.baseAddress else { return needle.isEmpty }
        return findBytes(needle, in: base, count: haystack.count) != nil
    }
}

/// glibc's `memmem` (two-way search, vectorised), which Glibc's Swift module does not export.
@_silgen_name("memmem")
private func systemMemmem(
    _ haystack: UnsafeRawPointer?,
    _ haystackLength: Int,
    _ needle: UnsafeRawPointer?,
    _ needleLength: Int
) -> UnsafeMutableRawPointer?

/// The offset of the first occurrence of `needle` in `count` bytes at `base`.
func findBytes(_ needle: [UInt8], in base: UnsafeRawPointer, count: Int) -> Int? {
    guard !needle.isEmpty, count >= needle.count else { return nil }
    return needle.withUnsafeBytes { bytes in
        systemMemmem(base, count, bytes.baseAddress, needle.count).map { base.distance(to: UnsafeRawPointer($0)) }
    }
}

/// Reads the JSON log file and its rotated predecessors (`myba.jsonl.1`, `.2`, …) in order.
public struct LogReader: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The files, oldest first.
    public var files: [String] { RotatingFileWriter.existingFiles(forLog: path).reversed() }

    /// Every line of `requestId`, in order, across rotated files. The file is searched as raw
    /// bytes for the id's JSON string; a line is a match when it holds our handler's exact
    /// `"request.id":"…"`, or when parsing it finds the id under `request.id` (a line another
    /// tool re-encoded).
    public func trace(requestId: String) throws -> [String] {
        try lines(matching: LogFilter(requestId: requestId))
    }

    /// The matching lines of all files, oldest first (the last `limit` when given).
    public func lines(matching filter: LogFilter, limit: Int? = nil) throws -> [String] {
        var result: [String] = []
        for file in files {
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: file), options: .alwaysMapped) else { continue }
            data.withUnsafeBytes { buffer in
                Self.forEachLine(buffer, filter: filter) { result.append(String(decoding: $0, as: UTF8.self)) }
            }
            if let limit, result.count > limit * 2 { result.removeFirst(result.count - limit) }
        }
        if let limit, result.count > limit { result.removeFirst(result.count - limit) }
        return result
    }

    /// Calls `body` with each matching line. With a request or user id the search jumps from one
    /// occurrence of the id's bytes to the next (memmem), so most of the file is never looked at
    /// line by line.
    static func forEachLine(_ buffer: UnsafeRawBufferPointer, filter: LogFilter, _ body: (UnsafeRawBufferPointer) -> Void) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let count = buffer.count
        let anchor = filter.anchor
        var position = 0
        while position < count {
            var lineStart = position
            if let anchor {
                guard let hit = findBytes(anchor, in: base + position, count: count - position) else { return }
                lineStart = position + hit
                while lineStart > 0 && base.load(fromByteOffset: lineStart - 1, as: UInt8.self) != 0x0A { lineStart -= 1 }
            }
            var lineEnd = lineStart
            if let newline = memchr(base + lineStart, 0x0A, count - lineStart) {
                lineEnd = base.distance(to: UnsafeRawPointer(newline))
            } else {
                lineEnd = count
            }
            let line = UnsafeRawBufferPointer(start: base + lineStart, count: lineEnd - lineStart)
            if !line.isEmpty && filter.matches(line) { body(line) }
            position = lineEnd + 1
        }
    }

    /// Follows the current file like `tail -F`: when the file is rotated (its path now names
    /// another inode, or it shrank), the old file is read to its end first, then the new one
    /// from its start, so no line written around a rotation is lost. Returns when `shouldStop`
    /// says so.
    public func follow(
        filter: LogFilter,
        pollInterval: Duration = .milliseconds(100),
        shouldStop: @Sendable () -> Bool = { false },
        onLine: (String) -> Void
    ) async throws {
        var handle = FileHandle(forReadingAtPath: path)
        _ = try handle?.seekToEnd()
        var inode = handle.map { Self.inode(of: $0.fileDescriptor) } ?? 0
        var pending = Data()
        func drain(_ handle: FileHandle) {
            pending.append(handle.readDataToEndOfFile())
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = pending[pending.startIndex..<newline]
                line.withUnsafeBytes { if filter.matches($0) { onLine(String(decoding: $0, as: UTF8.self)) } }
                pending.removeSubrange(pending.startIndex...newline)
            }
        }
        while !shouldStop() && !Task.isCancelled {
            if let current = handle { drain(current) }
            var info = stat()
            if stat(path, &info) == 0 {
                let rotated = UInt64(info.st_ino) != inode
                let truncated = handle.map { Int(info.st_size) < Int((try? $0.offset()) ?? 0) } ?? false
                if rotated || truncated || handle == nil, let next = FileHandle(forReadingAtPath: path) {
                    if let old = handle {
                        drain(old)
                        try? old.close()
                    }
                    pending.removeAll()
                    handle = next
                    inode = Self.inode(of: next.fileDescriptor)
                    drain(next)
                }
            }
            try await Task.sleep(for: pollInterval)
        }
        try? handle?.close()
    }

    private static func inode(of descriptor: Int32) -> UInt64 {
        var info = stat()
        return fstat(descriptor, &info) == 0 ? UInt64(info.st_ino) : 0
    }
}
