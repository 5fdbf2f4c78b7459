import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An advisory exclusive lock on a file (`flock`), shared by every process on the host.
struct FileLock {
    let path: String

    init(path: String) throws {
        self.path = path
    }

    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.lockFailed(path: path, errno: errno) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw StorageError.lockFailed(path: path, errno: errno) }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}
