import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Appends lines to a file and rotates it by size: `myba.jsonl` → `myba.jsonl.1` → `.2` …,
/// keeping at most `maxFiles` rotated files. Safe to share between threads.
public final class RotatingFileWriter: Sendable {
    public let path: String
    public let maxBytes: Int
    public let maxFiles: Int

    private struct State {
        var fd: Int32
        var size: Int
    }

    private let state: Mutex<State>

    /// Opens (creating with its directories) the file at `path` for appending.
    public init(path: String, maxBytes: Int, maxFiles: Int) throws {
        precondition(maxBytes > 0 && maxFiles >= 0)
        self.path = path
        self.maxBytes = maxBytes
        self.maxFiles = maxFiles
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = try Self.openForAppend(path)
        self.state = Mutex(State(fd: fd, size: Self.fileSize(fd)))
    }

    deinit {
        state.withLock { _ = close($0.fd) }
    }

    /// Writes `line` (which must end in a newline), rotating first when it would not fit.
    public func write(_ line: [UInt8]) {
        state.withLock { state in
            if state.size > 0 && state.size + line.count > maxBytes {
                rotate(&state)
            }
            line.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(state.fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
            state.size += line.count
        }
    }

    /// The current file and its rotated predecessors that exist, newest first.
    public static func existingFiles(forLog path: String) -> [String] {
        var files: [String] = []
        if FileManager.default.fileExists(atPath: path) { files.append(path) }
        var index = 1
        while FileManager.default.fileExists(atPath: "\(path).\(index)") {
            files.append("\(path).\(index)")
            index += 1
        }
        return files
    }

    private func rotate(_ state: inout State) {
        close(state.fd)
        if maxFiles == 0 {
            unlink(path)
        } else {
            unlink("\(path).\(maxFiles)")
            for index in stride(from: maxFiles - 1, through: 1, by: -1) {
                rename("\(path).\(index)", "\(path).\(index + 1)")
            }
            rename(path, "\(path).1")
        }
        // If reopening fails there is nowhere to report it; keep writing to stdout only.
        state.fd = (try? Self.openForAppend(path)) ?? -1
        state.size = 0
    }

    private static func openForAppend(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path, NSLocalizedDescriptionKey: String(cString: strerror(errno))])
        }
        return fd
    }

    private static func fileSize(_ fd: Int32) -> Int {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_size) : 0
    }
}
