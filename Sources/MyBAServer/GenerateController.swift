import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MyBAOps
import Synchronization

/// `POST /api/generate`: one AI ticket for one token (none with the caller's own key). With
/// `Accept: text/event-stream` the ticket is streamed as Server-Sent Events.
struct GenerateController {
    let generator: TicketGenerator

    var endpoints: RouteCollection<MyBARequestContext> {
        RouteCollection(context: MyBARequestContext.self)
            .post(use: generate)
    }

    struct GenerateRequest: Decodable {
        var input: String
        var sessionId: String?
        var provider: String?
        var apiKey: String?
        var model: String?
    }

    @Sendable func generate(_ request: Request, context: MyBARequestContext) async throws -> Response {
        let body = try await request.decodeJSON(as: GenerateRequest.self, context: context)
        guard let provider = GenerationProvider(rawValue: body.provider ?? "myba") else {
            throw APIError(.badRequest, code: "invalid_input", message: "provider must be \"myba\", \"openai\" or \"anthropic\"")
        }
        let generation = GenerationRequest.fromCaller(
            input: body.input,
            provider: provider,
            apiKey: body.apiKey,
            model: body.model,
            signedInUserId: context.user?.userId,
            sessionId: body.sessionId,
            requestKey: try request.idempotencyKey(context: context),
            requestId: context.requestId,
            clientAddress: context.clientAddress
        )
        if request.headers[.accept]?.contains("text/event-stream") == true {
            return try await stream(generation, context: context)
        }
        let answer = try await generator.answer(generation, logger: context.logger)
        logGenerated(answer.result, logger: context.logger)
        // The JSON stored for replays is the body: encoded once, and a replay is byte for byte
        // the first answer.
        return Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: answer.json))
        )
    }

    /// One event on the wire.
    enum StreamEvent: Sendable {
        case started
        case delta(String)
        case ticket(String)
        case failed(any Error)
    }

    /// The ticket as Server-Sent Events: `delta` events with the text as the provider writes it,
    /// then one `ticket` event (the JSON the plain answer carries) or one `error` event.
    ///
    /// The generation runs in a task of its own, not the request's: a client that goes away
    /// mid-stream does not stop it, the ticket is stored and charged once, and a retry with the
    /// same `Idempotency-Key` gets it (as a stream holding only the `ticket` event). A failure
    /// before the token is charged (bad input, no tokens, a cap) is an ordinary JSON error answer.
    private func stream(_ generation: GenerationRequest, context: MyBARequestContext) async throws -> Response {
        let (events, continuation) = AsyncStream<StreamEvent>.makeStream()
        let opening = StreamOpening()
        let generator = self.generator
        let logger = context.logger
        Task {
            do {
                let answer = try await generator.answer(generation, logger: logger) { progress in
                    switch progress {
                    case .started:
                        continuation.yield(.started)
                        opening.settle(nil)
                    case .delta(let text):
                        continuation.yield(.delta(text))
                    }
                }
                logGenerated(answer.result, logger: logger)
                continuation.yield(.ticket(answer.json))
            } catch {
                // Before the charge, the error is the HTTP answer; after, an event of the stream.
                if !opening.settle(error) { continuation.yield(.failed(error)) }
            }
            continuation.finish()
        }
        if let error = await opening.outcome() { throw error }
        let requestId = context.requestId
        return Response(
            status: .ok,
            headers: .eventStream,
            body: ResponseBody { writer in
                for await event in events {
                    guard let text = Self.encode(event, requestId: requestId) else { continue }
                    // A client gone: stop writing; the generation goes on and is stored.
                    do { try await writer.write(ByteBuffer(string: text)) } catch { return }
                }
                try await writer.finish(nil)
            }
        )
    }

    /// The SSE text of one event; nil for what the wire does not carry.
    static func encode(_ event: StreamEvent, requestId: String) -> String? {
        switch event {
        case .started:
            // A comment: proxies and clients see the stream open at once.
            return ": started\n\n"
        case .delta(let text):
            let data = (try? JSONSerialization.data(withJSONObject: ["text": text])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return "event: delta\ndata: \(data)\n\n"
        case .ticket(let json):
            return "event: ticket\ndata: \(json)\n\n"
        case .failed(let error):
            let apiError = APIError(from: error)
            let body = ["error": ["code": apiError.code, "message": apiError.message, "requestId": requestId]]
            let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return "event: error\ndata: \(data)\n\n"
        }
    }
}

private func logGenerated(_ result: TicketResponse, logger: Logger) {
    logger.info(
        "ticket generated",
        metadata: [
            "ai.provider": .string(result.provider), "ai.model": .string(result.model),
            "tokens.remaining": .stringConvertible(result.tokensRemaining),
        ]
    )
}

/// Whether a streamed generation got as far as its charge (nil) or failed before it: settled
/// once, by whichever comes first.
private final class StreamOpening: Sendable {
    private enum State {
        case waiting(CheckedContinuation<(any Error)?, Never>?)
        case settled((any Error)?)
    }

    private let state = Mutex<State>(.waiting(nil))

    /// Settles with `error` (nil: started); false when it was settled already.
    @discardableResult
    func settle(_ error: (any Error)?) -> Bool {
        let waiter: CheckedContinuation<(any Error)?, Never>?? = state.withLock { state in
            guard case .waiting(let waiter) = state else { return nil }
            state = .settled(error)
            return .some(waiter)
        }
        guard let waiter else { return false }
        waiter?.resume(returning: error)
        return true
    }

    func outcome() async -> (any Error)? {
        await withCheckedContinuation { continuation in
            let settled: (any Error)?? = state.withLock { state in
                switch state {
                case .settled(let error): return .some(error)
                case .waiting:
                    state = .waiting(continuation)
                    return nil
                }
            }
            if let settled { continuation.resume(returning: settled) }
        }
    }
}

extension HTTPFields {
    /// The head of a Server-Sent Events answer: never cached, never buffered by a proxy.
    static let eventStream: HTTPFields = [
        .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache", HTTPField.Name("X-Accel-Buffering")!: "no",
    ]
}
