import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// An advisory exclusive lock on a file (`flock`), shared by every process on the host. The
/// holder writes its pid and program into the file, so a process that waits too long can say
/// who holds it.
struct FileLock {
    let path: String
    /// How long to wait for the lock before giving up with `StorageError.lockTimedOut`.
    var timeout: Duration = .seconds(30)

    init(path: String, timeout: Duration = .seconds(30)) throws {
        self.path = path
        self.timeout = timeout
    }

    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.lockFailed(path: path, errno: errno) }
        defer { close(fd) }
        let deadline = ContinuousClock.now + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else { throw StorageError.lockFailed(path: path, errno: errno) }
            guard ContinuousClock.now < deadline else {
                throw StorageError.lockTimedOut(path: path, holder: Self.holder(fd: fd), waited: timeout)
            }
            usleep(20_000)
        }
        defer { flock(fd, LOCK_UN) }
        let note = "pid \(getpid()) (\(ProcessInfo.processInfo.processName))\n"
        _ = ftruncate(fd, 0)
        _ = note.withCString { pwrite(fd, $0, strlen($0), 0) }
        return try body()
    }

    /// What the holder wrote: `pid 123 (myba-server)`, or nil.
    static func holder(fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : TerminalText.escape(text)
    }
}
