import Hummingbird
import Logging

/// The per-request context: Hummingbird's core storage plus MyBA's request id and body cap.
struct MyBARequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// Set by `RequestIDMiddleware` before anything else runs.
    var requestId: String = ""
    var bodyLimit: Int = 1024 * 1024

    init(source: Source) {
        self.coreContext = .init(source: source)
    }

    var maxUploadSize: Int { bodyLimit }
}
