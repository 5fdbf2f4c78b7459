@preconcurrency import CCurl
import Foundation
import Synchronization

/// Limits of the outbound HTTP client.
public struct OutboundHTTPSettings: Equatable, Sendable {
    /// Connections open to one host at most; transfers beyond it wait for a free one (their
    /// deadline runs while they wait). `MYBA_HTTP_MAX_CONNECTIONS_PER_HOST`.
    public var maxConnectionsPerHost = 512
    /// Idle connections are all closed once no transfer has run for this long, so a peer that
    /// closed its end leaves no CLOSE-WAIT socket behind. `MYBA_HTTP_IDLE_CLOSE_MS`.
    public var idleCloseSeconds: Double = 5
    /// A response body larger than this fails the transfer instead of growing memory.
    public var maxResponseBytes = 8 << 20

    public init(maxConnectionsPerHost: Int = 512, idleCloseSeconds: Double = 5, maxResponseBytes: Int = 8 << 20) {
        self.maxConnectionsPerHost = maxConnectionsPerHost
        self.idleCloseSeconds = idleCloseSeconds
        self.maxResponseBytes = maxResponseBytes
    }
}

/// `OutboundHTTPClient` on libcurl's multi interface, driven by one dedicated thread.
///
/// Why not Foundation's URLSession (which is libcurl too): on Linux, cancelling its async
/// `data(for:)` runs `URLSessionTask.cancel()` inside Swift's cancellation handler, under the
/// task's status lock, and that does a `DispatchQueue.sync` onto the queue that is at the same
/// moment completing the transfer and resuming the same task: a lock-order deadlock that
/// wedged both threads of the cooperative pool (issue 25). Here no caller ever blocks: `send`
/// hands a transfer to the thread under a short lock and suspends; cancellation only sets a
/// flag and wakes the thread; continuations are resumed by the thread holding no lock.
///
/// Deadlines are libcurl's own total timeout (`CURLOPT_TIMEOUT_MS`, counted from the moment the
/// transfer is handed over, waiting for a connection included). Connections are kept in
/// libcurl's pool, at most `maxConnectionsPerHost` per host, and all closed when the client has
/// been idle for `idleCloseSeconds`.
public final class CurlHTTPClient: OutboundHTTPClient {
    private let engine: CurlEngine

    public init(settings: OutboundHTTPSettings = OutboundHTTPSettings()) {
        engine = CurlEngine(settings: settings)
        let engine = self.engine
        let thread = Thread { engine.run() }
        thread.name = "myba-http"
        thread.start()
    }

    deinit {
        engine.stop()
    }

    public func send(_ request: OutboundRequest) async throws -> OutboundResponse {
        try await send(request, onChunk: nil)
    }

    /// Streams: `onChunk` runs on the client's thread as each piece arrives, so it must only hand
    /// the bytes over (to an `AsyncStream`, say), never wait.
    public func send(_ request: OutboundRequest, onChunk: @escaping @Sendable ([UInt8]) -> Void) async throws -> OutboundResponse {
        try await send(request, onChunk: Optional(onChunk))
    }

    private func send(_ request: OutboundRequest, onChunk: (@Sendable ([UInt8]) -> Void)?) async throws -> OutboundResponse {
        let transfer = CurlTransfer(request: request)
        transfer.onChunk = onChunk
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                transfer.continuation = continuation
                engine.submit(transfer)
            }
        } onCancel: {
            // Runs under the task's status lock: only a flag and a wake-up, nothing that waits.
            transfer.cancelled.store(true, ordering: .releasing)
            engine.noticeCancellation()
        }
    }

    /// Fails every transfer in flight with `OutboundHTTPError.shuttingDown`, and every later one at
    /// once: what a server does when its shutdown deadline comes.
    public func cancelAll() {
        engine.refuseAll()
    }

    /// Transfers handed to the client and not yet answered.
    public var inFlight: Int { engine.inFlight }
}

/// One request and, as it arrives, its response. Mutable fields belong to the engine's thread.
final class CurlTransfer: @unchecked Sendable {
    let request: OutboundRequest
    var continuation: CheckedContinuation<OutboundResponse, any Error>?
    let cancelled = Atomic<Bool>(false)

    var handle: UnsafeMutableRawPointer?
    var headerList: UnsafeMutablePointer<curl_slist>?
    /// libcurl writes its message here; it keeps the pointer for the handle's life.
    let errorBuffer: UnsafeMutablePointer<CChar> = {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: 257)
        buffer.initialize(repeating: 0, count: 257)
        return buffer
    }()
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var bodyLimit = 0
    var bodyTooLarge = false
    /// Called with each piece of the body as it arrives (streamed answers).
    var onChunk: (@Sendable ([UInt8]) -> Void)?

    init(request: OutboundRequest) {
        self.request = request
    }

    deinit {
        errorBuffer.deallocate()
    }

    var host: String { request.url.host ?? request.url.absoluteString }
}

/// The state and loop of the client's thread.
final class CurlEngine: @unchecked Sendable {
    private struct Inbox {
        var submitted: [CurlTransfer] = []
        var cancellationNoticed = false
        var refusing = false
        var stopping = false
        /// The multi handle, for `curl_multi_wakeup` from other threads; replaced only under
        /// this lock, so a wake-up never reaches a handle being cleaned up.
        var multi: MultiHandle?
        var inFlight = 0
    }

    /// A `CURLM *`; libcurl allows `curl_multi_wakeup` on it from any thread.
    private struct MultiHandle: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
    }

    private let settings: OutboundHTTPSettings
    private let inbox = Mutex(Inbox())

    // Owned by the engine's thread.
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private var connectionsMayBeOpen = false
    private var idleSince = ContinuousClock.now

    /// `curl_global_init(CURL_GLOBAL_ALL)`, once per process.
    private static let globalInit: Void = { _ = curl_global_init(3) }()

    init(settings: OutboundHTTPSettings) {
        self.settings = settings
        _ = Self.globalInit
        let multi = Self.makeMulti(settings)
        inbox.withLock { $0.multi = MultiHandle(pointer: multi) }
    }

    var inFlight: Int { inbox.withLock { $0.inFlight } }

    func submit(_ transfer: CurlTransfer) {
        let refused = inbox.withLock { state -> Bool in
            if state.refusing || state.stopping { return true }
            state.submitted.append(transfer)
            state.inFlight += 1
            if let multi = state.multi { curl_multi_wakeup(multi.pointer) }
            return false
        }
        if refused {
            transfer.continuation?.resume(throwing: OutboundHTTPError.shuttingDown(host: transfer.host))
            transfer.continuation = nil
        }
    }

    func noticeCancellation() {
        inbox.withLock { state in
            state.cancellationNoticed = true
            if let multi = state.multi { curl_multi_wakeup(multi.pointer) }
        }
    }

    func refuseAll() {
        inbox.withLock { state in
            state.refusing = true
            if let multi = state.multi { curl_multi_wakeup(multi.pointer) }
        }
    }

    func stop() {
        inbox.withLock { state in
            state.stopping = true
            state.refusing = true
            if let multi = state.multi { curl_multi_wakeup(multi.pointer) }
        }
    }

    private static func makeMulti(_ settings: OutboundHTTPSettings) -> UnsafeMutableRawPointer {
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed") }
        _ = myba_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, settings.maxConnectionsPerHost)
        _ = myba_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, settings.maxConnectionsPerHost)
        return multi
    }

    /// The thread's loop: take new transfers and cancellations, drive libcurl, hand finished
    /// transfers back. Resumes continuations only outside the inbox lock.
    func run() {
        var multi = inbox.withLock { $0.multi!.pointer }
        while true {
            let (new, checkCancellations, refusing, stopping) = inbox.withLock { state in
                defer {
                    state.submitted.removeAll(keepingCapacity: true)
                    state.cancellationNoticed = false
                }
                return (state.submitted, state.cancellationNoticed, state.refusing, state.stopping)
            }
            var finished: [(CurlTransfer, Result<OutboundResponse, any Error>)] = []
            for transfer in new {
                if refusing {
                    finished.append((transfer, .failure(OutboundHTTPError.shuttingDown(host: transfer.host))))
                } else if transfer.cancelled.load(ordering: .acquiring) {
                    finished.append((transfer, .failure(CancellationError())))
                } else if let problem = start(transfer, on: multi) {
                    finished.append((transfer, .failure(problem)))
                }
            }
            if refusing || checkCancellations {
                for (handle, transfer) in active {
                    if refusing {
                        remove(handle, from: multi)
                        finished.append((transfer, .failure(OutboundHTTPError.shuttingDown(host: transfer.host))))
                    } else if transfer.cancelled.load(ordering: .acquiring) {
                        remove(handle, from: multi)
                        finished.append((transfer, .failure(CancellationError())))
                    }
                }
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var queued: Int32 = 0
            while let message = curl_multi_info_read(multi, &queued) {
                var handle: UnsafeMutableRawPointer?
                var code = CURLE_OK
                guard myba_multi_message_done(message, &handle, &code) != 0, let handle, let transfer = active[handle] else { continue }
                let result = outcome(of: transfer, code: code)
                remove(handle, from: multi)
                finished.append((transfer, result))
            }
            if !finished.isEmpty {
                inbox.withLock { $0.inFlight -= finished.count }
                for (transfer, result) in finished {
                    transfer.continuation?.resume(with: result)
                    transfer.continuation = nil
                }
            }
            if stopping && active.isEmpty { break }

            let now = ContinuousClock.now
            if !active.isEmpty || !finished.isEmpty {
                idleSince = now
            } else if connectionsMayBeOpen, now - idleSince >= .milliseconds(Int(settings.idleCloseSeconds * 1000)) {
                // Closing the pool is the only way libcurl offers to drop idle connections whose
                // peer has closed (it prunes them only when it next connects).
                let fresh = MultiHandle(pointer: Self.makeMulti(settings))
                inbox.withLock { [multi] state in
                    curl_multi_cleanup(multi)
                    state.multi = fresh
                }
                multi = fresh.pointer
                connectionsMayBeOpen = false
            }
            var wait: Int = -1
            curl_multi_timeout(multi, &wait)
            let idleCheck = connectionsMayBeOpen && active.isEmpty ? Int(settings.idleCloseSeconds * 1000) : 1000
            let timeout = Int32(clamping: wait < 0 ? idleCheck : min(wait, idleCheck))
            curl_multi_poll(multi, nil, 0, timeout, nil)
        }
        inbox.withLock { [multi] state in
            curl_multi_cleanup(multi)
            state.multi = nil
        }
    }

    /// Sets up the easy handle of `transfer` and adds it; an error when that fails.
    private func start(_ transfer: CurlTransfer, on multi: UnsafeMutableRawPointer) -> (any Error)? {
        guard let handle = curl_easy_init() else {
            return OutboundHTTPError.connectionFailed(host: transfer.host, detail: "curl_easy_init failed")
        }
        transfer.handle = handle
        transfer.bodyLimit = settings.maxResponseBytes
        let request = transfer.request
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        _ = request.url.absoluteString.withCString { myba_easy_setopt_pointer(handle, CURLOPT_URL, $0) }
        _ = myba_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = "http,https".withCString { myba_easy_setopt_pointer(handle, CURLOPT_PROTOCOLS_STR, $0) }
        let timeoutMilliseconds = max(1, Int(request.timeout * 1000))
        _ = myba_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMilliseconds)
        _ = myba_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, min(timeoutMilliseconds, 10_000))
        _ = myba_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, transfer.errorBuffer)
        _ = myba_easy_setopt_callback(handle, CURLOPT_WRITEFUNCTION, curlBodyCallback)
        _ = myba_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context)
        _ = myba_easy_setopt_callback(handle, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
        _ = myba_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, context)
        _ = myba_easy_setopt_pointer(handle, CURLOPT_PRIVATE, context)

        let method = request.method.uppercased()
        if let body = request.body {
            _ = myba_easy_setopt_long(handle, CURLOPT_POSTFIELDSIZE_LARGE, body.count)
            _ = body.withUnsafeBytes { myba_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)) }
            if method != "POST" { _ = method.withCString { myba_easy_setopt_pointer(handle, CURLOPT_CUSTOMREQUEST, $0) } }
        } else if method == "HEAD" {
            _ = myba_easy_setopt_long(handle, CURLOPT_NOBODY, 1)
        } else if method != "GET" {
            _ = method.withCString { myba_easy_setopt_pointer(handle, CURLOPT_CUSTOMREQUEST, $0) }
        }
        // No `Expect: 100-continue` pause before bodies over 1 KiB.
        var list = curl_slist_append(nil, "Expect:")
        for (name, value) in request.headers {
            guard !name.utf8.contains(where: { $0 < 0x21 || $0 > 0x7E || $0 == UInt8(ascii: ":") }),
                !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 })
            else {
                curl_slist_free_all(list)
                curl_easy_cleanup(handle)
                transfer.handle = nil
                return OutboundHTTPError.connectionFailed(host: transfer.host, detail: "header \(name.prefix(40)) cannot be sent")
            }
            list = curl_slist_append(list, "\(name): \(value)")
        }
        transfer.headerList = list
        _ = myba_easy_setopt_pointer(handle, CURLOPT_HTTPHEADER, list)

        let added = curl_multi_add_handle(multi, handle)
        guard added == CURLM_OK else {
            curl_easy_cleanup(handle)
            curl_slist_free_all(list)
            transfer.handle = nil
            transfer.headerList = nil
            return OutboundHTTPError.connectionFailed(host: transfer.host, detail: String(cString: curl_multi_strerror(added)))
        }
        active[handle] = transfer
        connectionsMayBeOpen = true
        return nil
    }

    private func remove(_ handle: UnsafeMutableRawPointer, from multi: UnsafeMutableRawPointer) {
        guard let transfer = active.removeValue(forKey: handle) else { return }
        curl_multi_remove_handle(multi, handle)
        curl_easy_cleanup(handle)
        curl_slist_free_all(transfer.headerList)
        transfer.headerList = nil
        transfer.handle = nil
    }

    private func outcome(of transfer: CurlTransfer, code: CURLcode) -> Result<OutboundResponse, any Error> {
        switch code {
        case CURLE_OK:
            var status = 0
            _ = myba_easy_getinfo_long(transfer.handle, CURLINFO_RESPONSE_CODE, &status)
            return .success(OutboundResponse(status: status, headers: transfer.headers, body: Data(transfer.body)))
        case CURLE_OPERATION_TIMEDOUT:
            return .failure(OutboundHTTPError.timedOut(host: transfer.host))
        case CURLE_WRITE_ERROR where transfer.bodyTooLarge:
            return .failure(OutboundHTTPError.connectionFailed(host: transfer.host, detail: "response larger than \(transfer.bodyLimit) bytes"))
        default:
            let detail = String(cString: transfer.errorBuffer)
            return .failure(
                OutboundHTTPError.connectionFailed(host: transfer.host, detail: detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
            )
        }
    }
}

/// Appends response bytes; refuses (which fails the transfer) past the body limit.
private let curlBodyCallback: myba_data_callback = { data, size, count, context in
    guard let data, let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    if transfer.body.count + length > transfer.bodyLimit {
        transfer.bodyTooLarge = true
        return 0
    }
    data.withMemoryRebound(to: UInt8.self, capacity: length) { pointer in
        let chunk = UnsafeBufferPointer(start: pointer, count: length)
        transfer.body.append(contentsOf: chunk)
        transfer.onChunk?(Array(chunk))
    }
    return length
}

/// Collects header lines; a status line starts a new set (interim 1xx answers, redirects).
private let curlHeaderCallback: myba_data_callback = { data, size, count, context in
    guard let data, let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    let length = size * count
    let line = data.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }
    if line.hasPrefix("HTTP/") {
        transfer.headers = [:]
    } else if let colon = line.firstIndex(of: ":") {
        let name = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
        let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespacesAndNewlines)
        if !name.isEmpty { transfer.headers[name] = transfer.headers[name].map { "\($0), \(value)" } ?? value }
    }
    return length
}
