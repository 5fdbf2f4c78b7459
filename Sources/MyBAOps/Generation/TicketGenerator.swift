import Crypto
import Foundation
import Logging
import Synchronization

/// Which AI the caller asked for.
public enum GenerationProvider: String, Codable, Sendable {
    /// MyBA's own AI: OpenRouter with the server's key, or mock templates without one. Costs a token.
    case myba
    /// The caller's own OpenAI key. Costs no token.
    case openai
    /// The caller's own Anthropic key. Costs no token.
    case anthropic
}

/// One `/api/generate` call.
public struct GenerationRequest: Sendable {
    public var input: String
    public var provider: GenerationProvider
    /// The caller's own provider key: never logged, stored or echoed.
    public var apiKey: String?
    public var model: String?
    public var userId: String?
    public var sessionId: String?
    /// Same key → same charge and same answer (the `Idempotency-Key` header, else the request id).
    public var idempotencyKey: String
    public var requestId: String
    /// The client's address (`ClientAddress`), for the limits on own-key generations.
    public var clientAddress: String?

    /// `idempotencyKey` as logs may carry it: an anonymous session's id (a bearer credential)
    /// replaced by its digest.
    public var loggableKey: String {
        userId == nil ? Self.loggable(key: idempotencyKey, payerKind: "session", payerId: sessionId ?? "") : idempotencyKey
    }

    /// A stored generation key as logs may carry it (see `loggableKey`).
    static func loggable(key: String, payerKind: String, payerId: String) -> String {
        guard payerKind == "session", !payerId.isEmpty, key.hasPrefix(payerId) else { return key }
        return SessionDigest.of(payerId) + key.dropFirst(payerId.count)
    }

    public init(
        input: String,
        provider: GenerationProvider = .myba,
        apiKey: String? = nil,
        model: String? = nil,
        userId: String? = nil,
        sessionId: String? = nil,
        idempotencyKey: String,
        requestId: String,
        clientAddress: String? = nil
    ) {
        self.clientAddress = clientAddress
        self.input = input
        self.provider = provider
        self.apiKey = apiKey
        self.model = model
        self.userId = userId
        self.sessionId = sessionId
        self.idempotencyKey = idempotencyKey
        self.requestId = requestId
    }

    /// A request as a caller makes it. The payer is the signed-in account when there is one (a
    /// session id sent beside a sign-in is ignored: the account pays), else the anonymous
    /// session named. The caller's key (`Idempotency-Key`, else the request id) is scoped to
    /// the payer, so two payers' equal keys never meet.
    public static func fromCaller(
        input: String,
        provider: GenerationProvider,
        apiKey: String?,
        model: String?,
        signedInUserId: String?,
        sessionId: String?,
        requestKey: String,
        requestId: String,
        clientAddress: String?
    ) -> GenerationRequest {
        let session = signedInUserId == nil ? sessionId : nil
        return GenerationRequest(
            input: input,
            provider: provider,
            apiKey: apiKey,
            model: model,
            userId: signedInUserId,
            sessionId: session,
            idempotencyKey: "\(signedInUserId ?? session ?? "-"):\(requestKey)",
            requestId: requestId,
            clientAddress: clientAddress
        )
    }
}

/// What `/api/generate` answers.
public struct TicketResponse: Codable, Equatable, Sendable {
    public var ticket: Ticket
    public var markdown: String
    public var provider: String
    public var model: String
    public var tokensRemaining: Int
}

/// A generation's answer with its JSON, encoded once: the same text is stored for replays and
/// sent as the response body.
public struct EncodedTicketResponse: Sendable {
    public var result: TicketResponse
    /// `result` as JSON (`JSONEncoder` defaults, as the API has always sent it).
    public var json: String
    /// True when the key had already been answered: nothing was charged or written.
    public var replayed: Bool
}

/// An answer written as JSON before the transaction that charges for it, so that the single
/// writer only appends `tokensRemaining`, which it alone knows, to the rest. The JSON is written
/// by hand (Foundation's encoder was a tenth of a mock generation's CPU) with the keys in the
/// order `TicketResponse` declares them; it decodes to the same `TicketResponse`.
struct TicketResponseDraft: Sendable {
    let ticket: Ticket
    let markdown: String
    let provider: String
    let model: String
    /// `{"ticket":{…},"markdown":…,"provider":…,"model":…,"tokensRemaining":`
    private let head: [UInt8]

    init(ticket: Ticket, provider: String, model: String) {
        self.ticket = ticket
        self.markdown = ticket.markdown
        self.provider = provider
        self.model = model
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 * (markdown.utf8.count + ticket.description.utf8.count) + 256)
        bytes.append(UInt8(ascii: "{"))
        JSONText.appendKey("ticket", to: &bytes)
        bytes.append(UInt8(ascii: "{"))
        JSONText.appendKey("title", to: &bytes)
        JSONText.appendString(ticket.title, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        JSONText.appendKey("description", to: &bytes)
        JSONText.appendString(ticket.description, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        JSONText.appendKey("acceptanceCriteria", to: &bytes)
        JSONText.appendStrings(ticket.acceptanceCriteria, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        JSONText.appendKey("priority", to: &bytes)
        JSONText.appendString(ticket.priority, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        JSONText.appendKey("storyPoints", to: &bytes)
        bytes.append(contentsOf: String(ticket.storyPoints).utf8)
        bytes.append(UInt8(ascii: ","))
        JSONText.appendKey("labels", to: &bytes)
        JSONText.appendStrings(ticket.labels, to: &bytes)
        bytes.append(contentsOf: "},".utf8)
        for (key, value) in [("markdown", markdown), ("provider", provider), ("model", model)] {
            JSONText.appendKey(key, to: &bytes)
            JSONText.appendString(value, to: &bytes)
            bytes.append(UInt8(ascii: ","))
        }
        JSONText.appendKey("tokensRemaining", to: &bytes)
        head = bytes
    }

    func answer(tokensRemaining: Int) -> EncodedTicketResponse {
        var bytes = head
        bytes.append(contentsOf: String(tokensRemaining).utf8)
        bytes.append(UInt8(ascii: "}"))
        let result = TicketResponse(ticket: ticket, markdown: markdown, provider: provider, model: model, tokensRemaining: tokensRemaining)
        return EncodedTicketResponse(result: result, json: String(decoding: bytes, as: UTF8.self), replayed: false)
    }
}

/// Why a generation was refused or failed. A charged token has been given back for `.providerFailed`.
public enum GenerationError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidInput(String)
    case signInRequired
    case providerFailed(String)
    case inProgress
    case idempotencyKeyReused
    /// `provider: myba` with a model MyBA does not offer (`MYBA_AI_MODELS`): MyBA pays for its
    /// own AI, so the caller chooses among its models only.
    case unknownModel(String, allowed: [String])
    /// Too many generations on the caller's own key from this address or account within the hour.
    case rateLimited(retryAfterSeconds: Int)
    /// This caller already has `limit` generations waiting for a provider.
    case tooManyInFlight(limit: Int)
    /// The server has as many generations waiting for providers as it takes.
    case overloaded

    public var description: String {
        switch self {
        case .invalidInput(let why): return why
        case .signInRequired: return "sign in, or send the sessionId of an anonymous session"
        case .providerFailed(let why): return "ticket generation failed, no token was spent: \(why)"
        case .inProgress: return "a generation with this idempotency key is still running"
        case .idempotencyKeyReused: return "this idempotency key was used for a different request"
        case .rateLimited(let seconds):
            return "too many generations with your own key from this address or account; retry in \(seconds) s"
        case .tooManyInFlight(let limit):
            return "you already have \(limit) generation\(limit == 1 ? "" : "s") in progress; wait for one to finish"
        case .overloaded:
            return "the server is generating as many tickets as it takes right now; retry shortly, nothing was spent"
        case .unknownModel(let model, let allowed):
            return
                "model \"\(model)\" is not one of MyBA's; use one of \(allowed.joined(separator: ", ")), or leave model out (with your own key, any model)"
        }
    }
}

/// Turns a request into a ticket: reserves a token (account or anonymous session) together with
/// a `generations` row, calls the provider chain, then records the answer — or gives the token
/// back with a `release` when every provider failed.
public struct TicketGenerator: Sendable {
    public static let maxInputCharacters = 10_000

    let database: AppDatabase
    let settings: AISettings
    let http: any OutboundHTTPClient
    /// Salts the stored hash of a client's address (`MYBA_FINGERPRINT_SECRET`).
    let addressSecret: String
    /// The in-flight caps on provider calls (`MYBA_MAX_GENERATIONS_IN_FLIGHT`, `…_PER_ACCOUNT`).
    let limiter: GenerationLimiter

    public init(
        database: AppDatabase,
        settings: AISettings,
        http: any OutboundHTTPClient,
        addressSecret: String = AnonymousSettings().fingerprintSecret
    ) {
        self.database = database
        self.settings = settings
        self.http = http
        self.addressSecret = addressSecret
        self.limiter = GenerationLimiter(total: settings.maxInFlight, perPayer: settings.maxInFlightPerAccount)
    }

    /// `"mock"` when no OpenRouter key is configured, else `"openrouter"`.
    public var defaultProviderName: String { settings.openRouterKey == nil ? "mock" : "openrouter" }

    enum Payer: Equatable {
        case account(String)
        case session(String)
        case ownKey(String)

        var kind: String {
            switch self {
            case .account: return "account"
            case .session: return "session"
            case .ownKey: return "own_key"
            }
        }

        var id: String {
            switch self {
            case .account(let id), .session(let id), .ownKey(let id): return id
            }
        }
    }

    enum Reservation {
        /// Charged and marked reserved: the provider is to be called.
        case charged(attempt: Int)
        /// Charged and answered in the same transaction (mock templates).
        case answered(EncodedTicketResponse)
        case replay(EncodedTicketResponse)
    }

    public func generate(_ request: GenerationRequest, logger: Logger) async throws -> TicketResponse {
        try await answer(request, logger: logger).result
    }

    /// What a streaming caller hears while its ticket is made.
    public enum Progress: Sendable, Equatable {
        /// The token is charged (or the answer is a replay): from here on the answer is a stream,
        /// and every failure is reported in it; before, a failure is an ordinary error answer.
        case started
        /// A piece of the ticket's text as the provider writes it.
        case delta(String)
    }

    /// Generates (or replays) the ticket of `request`, with the JSON to send. With `progress`,
    /// the provider is asked to stream and each piece of text is passed on as it comes; once a
    /// piece has been passed on, a failing model is not followed by the next one (the caller
    /// would see two tickets' text run together): the generation fails and its token is released.
    public func answer(
        _ request: GenerationRequest,
        logger: Logger,
        progress: (@Sendable (Progress) -> Void)? = nil
    ) async throws -> EncodedTicketResponse {
        let input = request.input
        // Zero-width and direction marks are invisible: an input of only those is empty, and a
        // token spent on it would buy nothing.
        guard
            input.unicodeScalars.contains(where: { scalar in
                !scalar.properties.isWhitespace && ![.format, .control].contains(scalar.properties.generalCategory)
            })
        else { throw GenerationError.invalidInput("input is empty") }
        // Lengths count Unicode code points, as JSON Schema's maxLength does in our contract.
        guard input.unicodeScalars.count <= Self.maxInputCharacters else {
            throw GenerationError.invalidInput("input is \(input.unicodeScalars.count) characters; the limit is \(Self.maxInputCharacters)")
        }
        // An empty key is no key (forms send ""). Any other travels in an HTTP header to the
        // provider: printable ASCII only, so nothing a caller sends can break or inject into it.
        let ownKey = request.apiKey?.nilIfEmpty
        if let ownKey, !(1...512).contains(ownKey.utf8.count) || !ownKey.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) {
            throw GenerationError.invalidInput("apiKey must be 1–512 printable ASCII characters without spaces")
        }
        switch request.provider {
        case .myba where ownKey != nil:
            throw GenerationError.invalidInput("apiKey goes with provider \"openai\" or \"anthropic\"")
        case .openai where ownKey == nil, .anthropic where ownKey == nil:
            throw GenerationError.invalidInput("provider \"\(request.provider.rawValue)\" needs your apiKey")
        default:
            break
        }
        if let model = request.model, model.isEmpty || model.unicodeScalars.count > 200 {
            throw GenerationError.invalidInput("model must be 1–200 characters")
        }
        // MyBA's own AI costs MyBA money per call: only the models it offers, whatever the caller
        // names. Checked before anything is reserved, so a refusal spends nothing.
        if request.provider == .myba, let model = request.model, !settings.models.contains(model) {
            throw GenerationError.unknownModel(model, allowed: settings.models)
        }
        let caller: Payer
        if let userId = request.userId {
            caller = .account(userId)
        } else if let sessionId = request.sessionId {
            caller = .session(sessionId)
        } else {
            throw GenerationError.signInRequired
        }
        let payer: Payer = ownKey != nil ? .ownKey(caller.id) : caller
        if case .ownKey = payer, case .session(let sessionId) = caller,
            try await database.sessions.session(id: sessionId) == nil
        {
            throw AnonymousSessionError.sessionNotFound(sessionId)
        }
        let inputHash = Self.inputHash(request)

        if request.provider == .myba, ownKey == nil, settings.openRouterKey == nil {
            // Mock templates answer at once: charge and answer in one transaction, so a mock
            // generation costs one durable commit instead of two. A crash before the commit
            // leaves neither the charge nor the answer.
            // Everything but the remaining balance is encoded before the transaction, which keeps
            // the single writer's share of a request short.
            let prepared = TicketResponseDraft(ticket: MockTickets.ticket(for: input), provider: "mock", model: MockTickets.model)
            let answer = try await database.write { tx -> EncodedTicketResponse in
                switch try Self.reserve(request, payer: payer, inputHash: inputHash, answering: prepared, in: tx) {
                case .replay(let answer), .answered(let answer): return answer
                case .charged: throw GenerationError.providerFailed("a mock generation was reserved without its answer")
                }
            }
            if answer.replayed { logger.info("generation replayed", metadata: ["generation.key": .string(request.loggableKey)]) }
            if let progress {
                // Mock templates stream too: the ticket's text, a line at a time.
                progress(.started)
                if !answer.replayed {
                    for line in MockTickets.streamedText(of: answer.result.ticket) { progress(.delta(line)) }
                }
            }
            return answer
        }

        // A provider call takes seconds: past the caps the caller hears so at once, before
        // anything is reserved, rather than waiting in a queue.
        let payerKey = "\(payer.kind):\(payer.id)"
        do {
            try limiter.enter(payerKey)
        } catch let refusal as GenerationLimiter.Refusal {
            switch refusal {
            case .payer(let limit): throw GenerationError.tooManyInFlight(limit: limit)
            case .server: throw GenerationError.overloaded
            }
        }
        defer { limiter.leave(payerKey) }
        let attempt: Int
        switch try await reserve(request, payer: payer, inputHash: inputHash) {
        case .replay(let answer), .answered(let answer):
            if answer.replayed { logger.info("generation replayed", metadata: ["generation.key": .string(request.loggableKey)]) }
            progress?(.started)
            return answer
        case .charged(let number):
            attempt = number
        }
        progress?(.started)

        let outcome: Result<(text: String?, provider: String, model: String), GenerationError>
        do {
            var onDelta: (@Sendable (String) -> Void)?
            if let progress { onDelta = { @Sendable text in progress(.delta(text)) } }
            outcome = .success(try await callProviders(request, ownKey: ownKey, logger: logger, onDelta: onDelta))
        } catch let error as GenerationError {
            outcome = .failure(error)
        } catch {
            // A provider's error may quote the key it was sent: masked before it is logged.
            outcome = .failure(.providerFailed(Secrets.mask("\(error)")))
        }
        switch outcome {
        case .success(let reply):
            let ticket = reply.text.map { Ticket.parse(providerText: $0, input: input) } ?? MockTickets.ticket(for: input)
            guard let answer = try await complete(request, attempt: attempt, ticket: ticket, provider: reply.provider, model: reply.model) else {
                // The reservation outlived its deadline and the sweep gave the token back: the
                // ticket is not handed out for free. A retry with the same key runs anew.
                logger.warning(
                    "generation answered after its reservation was released; not charged, not answered",
                    metadata: [
                        "generation.key": .string(request.loggableKey)
                    ]
                )
                throw GenerationError.providerFailed("the answer came after the reservation's deadline")
            }
            return answer
        case .failure(let error):
            try await fail(request, payer: payer, attempt: attempt, error: error)
            logger.warning(
                "generation failed; token released",
                metadata: ["generation.key": .string(request.loggableKey), "error.message": .string(error.description)]
            )
            throw error
        }
    }

    /// What must be equal for a request to count as a retry of an earlier one with its key.
    static func inputHash(_ request: GenerationRequest) -> String {
        SHA256.hash(data: Data("\(request.provider.rawValue)\n\(request.model ?? "")\n\(request.input)".utf8)).lowercaseHex
    }

    /// The charge key of attempt `attempt` of a request key.
    static func chargeKey(_ key: String, attempt: Int) -> String { "generate:\(key):\(attempt)" }

    private func reserve(_ request: GenerationRequest, payer: Payer, inputHash: String) async throws -> Reservation {
        let limits: OwnKeyLimits?
        if case .ownKey = payer {
            let client = ClientAddress.limitKey(request.clientAddress ?? "unknown")
            limits = OwnKeyLimits(
                clientKey: AnonymousSessions.saltedHash("own-key-client", client, secret: addressSecret),
                perAddress: settings.ownKeyPerHourPerAddress,
                perAccount: settings.ownKeyPerHourPerAccount
            )
        } else {
            limits = nil
        }
        return try await database.write { tx in
            try Self.reserve(request, payer: payer, inputHash: inputHash, answering: nil, ownKey: limits, in: tx)
        }
    }

    /// The hourly limits on own-key generations, and the caller's hashed address.
    struct OwnKeyLimits: Sendable {
        var clientKey: String
        var perAddress: Int
        var perAccount: Int
    }

    /// Refuses a new own-key generation past either hourly limit, with the seconds until the
    /// oldest one counted leaves the window.
    private static func checkOwnKeyLimits(_ limits: OwnKeyLimits, payerId: String, now: Date, in tx: StorageTransaction) throws {
        let scopes: [(GenerationStore.OwnKeyScope, String, Int)] = [
            (.client, limits.clientKey, limits.perAddress), (.payer, payerId, limits.perAccount),
        ]
        // Several servers: each window's count and the insert after it take turns (in one order).
        for (scope, value, _) in scopes { try tx.generations.lockOwnKeyWindow(scope, value) }
        for (scope, value, limit) in scopes {
            let recent = try tx.generations.ownKeyCreationTimes(scope, value, since: HourlyWindow.start(now), limit: limit)
            if let retryAfter = HourlyWindow.retryAfter(oldestFirst: recent, limit: limit, now: now) {
                throw GenerationError.rateLimited(retryAfterSeconds: retryAfter)
            }
        }
    }

    /// Replays a completed request with this key, or charges a new attempt: marked reserved for
    /// the provider call, or — with `prepared` — completed with that answer at once.
    private static func reserve(
        _ request: GenerationRequest,
        payer: Payer,
        inputHash: String,
        answering prepared: TicketResponseDraft?,
        ownKey limits: OwnKeyLimits? = nil,
        in tx: StorageTransaction
    ) throws -> Reservation {
        let key = request.idempotencyKey
        let now = Date().truncatedToMilliseconds
        var attempt = 1
        if let row = try tx.generations.lookup(key: key) {
            guard row.payerKind == payer.kind, row.payerId == payer.id, row.inputHash == inputHash else {
                throw GenerationError.idempotencyKeyReused
            }
            switch row.status {
            case "completed":
                let stored = row.response!
                let result = try JSONDecoder().decode(TicketResponse.self, from: Data(stored.utf8))
                return .replay(EncodedTicketResponse(result: result, json: stored, replayed: true))
            case "reserved":
                throw GenerationError.inProgress
            default:
                attempt = row.attempts + 1
            }
        }
        let chargeKey = Self.chargeKey(key, attempt: attempt)
        let remaining: Int?
        switch payer {
        case .account(let userId):
            // The sign-in check trusts what it saw for a few seconds; spending checks now.
            if try tx.ledger.isDeleted(userId: userId) { throw LedgerError.accountDeleted(userId: userId) }
            remaining = try Ledger.post(
                LedgerPosting(
                    userId: userId,
                    kind: .consume,
                    delta: -1,
                    idempotencyKey: chargeKey,
                    reference: key,
                    actor: "api",
                    requestId: request.requestId
                ),
                now: now,
                in: tx
            ).balance.tokens
        case .session(let sessionId):
            remaining = try AnonymousSessions.chargeSession(
                sessionId: sessionId,
                amount: 1,
                idempotencyKey: chargeKey,
                requestId: request.requestId,
                now: now,
                in: tx
            ).remaining
        case .ownKey:
            remaining = nil
        }
        let answer = prepared.map { $0.answer(tokensRemaining: remaining ?? 0) }
        let status = answer == nil ? "reserved" : "completed"
        if attempt == 1 {
            if let limits { try checkOwnKeyLimits(limits, payerId: payer.id, now: now, in: tx) }
            try tx.generations.insertFirstAttempt(
                key: key,
                payerKind: payer.kind,
                payerId: payer.id,
                inputHash: inputHash,
                status: status,
                requestId: request.requestId,
                provider: prepared?.provider,
                model: prepared?.model,
                response: answer?.json,
                at: now,
                clientKey: limits?.clientKey
            )
        } else {
            try tx.generations.updateForAttempt(
                key: key,
                attempt: attempt,
                status: status,
                requestId: request.requestId,
                provider: prepared?.provider,
                model: prepared?.model,
                response: answer?.json,
                at: now
            )
        }
        return answer.map(Reservation.answered) ?? .charged(attempt: attempt)
    }

    private func complete(
        _ request: GenerationRequest,
        attempt: Int,
        ticket: Ticket,
        provider: String,
        model: String
    ) async throws -> EncodedTicketResponse? {
        let prepared = TicketResponseDraft(ticket: ticket, provider: provider, model: model)
        return try await database.write { tx in try Self.complete(request, attempt: attempt, prepared, in: tx) }
    }

    /// Stores the answer of a reserved request and returns it with what the caller has left now
    /// (the provider call may have taken a while, and other requests spent meanwhile); nil when
    /// the reservation is no longer held.
    private static func complete(
        _ request: GenerationRequest,
        attempt: Int,
        _ prepared: TicketResponseDraft,
        in tx: StorageTransaction
    ) throws -> EncodedTicketResponse? {
        // The sweep may have released it (the call outlived the reservation's deadline).
        guard try tx.generations.isReserved(key: request.idempotencyKey, attempt: attempt) else { return nil }
        let now = Date().truncatedToMilliseconds
        let remaining: Int
        if let userId = request.userId {
            remaining = try tx.ledger.balance(userId: userId)?.tokens ?? 0
        } else if let sessionId = request.sessionId {
            remaining = try tx.sessions.session(id: sessionId)?.remaining ?? 0
        } else {
            remaining = 0
        }
        let answer = prepared.answer(tokensRemaining: remaining)
        try tx.generations.complete(key: request.idempotencyKey, provider: prepared.provider, model: prepared.model, response: answer.json, at: now)
        return answer
    }

    private func fail(_ request: GenerationRequest, payer: Payer, attempt: Int, error: GenerationError) async throws {
        try await database.write { tx in
            // Released already by the sweep (the call outlived the reservation's deadline):
            // nothing more to give back.
            guard try tx.generations.isReserved(key: request.idempotencyKey, attempt: attempt) else { return }
            let now = Date().truncatedToMilliseconds
            try Generations.releaseCharge(
                key: request.idempotencyKey,
                attempt: attempt,
                payerKind: payer.kind,
                payerId: payer.id,
                requestId: request.requestId,
                actor: "api",
                reason: "generation failed",
                now: now,
                in: tx
            )
            try tx.generations.fail(key: request.idempotencyKey, error: error.description, at: now)
        }
    }

    /// Returns the provider's text (nil for mock templates), the provider and the model used.
    private func callProviders(
        _ request: GenerationRequest,
        ownKey: String?,
        logger: Logger,
        onDelta: (@Sendable (String) -> Void)? = nil
    ) async throws -> (text: String?, provider: String, model: String) {
        // Whether any text has reached a streaming caller (then no other model may follow).
        let delivered = DeliveredFlag()
        var passOn: (@Sendable (String) -> Void)?
        if let onDelta {
            passOn = { @Sendable text in
                delivered.value.store(true, ordering: .relaxed)
                onDelta(text)
            }
        }
        switch request.provider {
        case .openai:
            let model = request.model ?? "gpt-4o-mini"
            let client = ChatCompletionsClient(
                providerName: "openai",
                baseURL: settings.openAIBase,
                apiKey: ownKey!,
                extraHeaders: [],
                timeout: settings.timeoutSeconds,
                http: http
            )
            do {
                let text =
                    if let passOn { try await client.stream(model: model, input: request.input, onDelta: passOn) } else {
                        try await client.complete(model: model, input: request.input)
                    }
                return (text, "openai", model)
            } catch let error as ProviderError {
                throw GenerationError.providerFailed(Self.redact(error.description, secret: ownKey!))
            }
        case .anthropic:
            let model = request.model ?? "claude-3-5-haiku-latest"
            let client = AnthropicClient(baseURL: settings.anthropicBase, apiKey: ownKey!, timeout: settings.timeoutSeconds, http: http)
            do {
                let text =
                    if let passOn { try await client.stream(model: model, input: request.input, onDelta: passOn) } else {
                        try await client.complete(model: model, input: request.input)
                    }
                return (text, "anthropic", model)
            } catch let error as ProviderError {
                throw GenerationError.providerFailed(Self.redact(error.description, secret: ownKey!))
            }
        case .myba:
            guard let serverKey = settings.openRouterKey else { return (nil, "mock", MockTickets.model) }
            let client = ChatCompletionsClient(
                providerName: "openrouter",
                baseURL: settings.openRouterBase,
                apiKey: serverKey,
                extraHeaders: [("HTTP-Referer", settings.publicURL), ("X-Title", "MyBA")],
                timeout: settings.timeoutSeconds,
                http: http
            )
            // A model the caller chose (one of ours, checked above) goes first.
            var chain = settings.models
            if let model = request.model {
                chain.removeAll { $0 == model }
                chain.insert(model, at: 0)
            }
            var failures: [String] = []
            for model in chain {
                do {
                    let text =
                        if let passOn { try await client.stream(model: model, input: request.input, onDelta: passOn) } else {
                            try await client.complete(model: model, input: request.input)
                        }
                    return (text, "openrouter", model)
                } catch let error as ProviderError {
                    let message = Self.redact(error.description, secret: serverKey)
                    logger.warning(
                        "AI model failed",
                        metadata: [
                            "ai.model": .string(model), "error.message": .string(message), "ai.retryable": .stringConvertible(error.retryable),
                        ]
                    )
                    failures.append("\(model): \(message)")
                    if !error.retryable || delivered.value.load(ordering: .relaxed) { break }
                }
            }
            throw GenerationError.providerFailed(Secrets.mask("every AI model failed (\(failures.joined(separator: "; ")))"))
        }
    }

    /// Removes a key (and anything shaped like a provider key) from a message that may be
    /// logged or returned.
    static func redact(_ message: String, secret: String) -> String {
        var text = message.replacingOccurrences(of: secret, with: "[redacted]")
        text = text.replacingOccurrences(of: #"(sk|sk-ant|sk-or)-[A-Za-z0-9_\-\*]{4,}"#, with: "[redacted]", options: .regularExpression)
        return text
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// Set once a streamed piece of text has reached the caller.
private final class DeliveredFlag: Sendable {
    let value = Atomic<Bool>(false)
}
