import Foundation
import MyBATestSupport
import Synchronization
import Testing

@testable import MyBAOps

@Suite("Generation answers and accounts on the hot path")
struct GenerationAnswerTests {
    static let awkward = [
        "plain", "", "quotes \" and \\ backslashes", "new\nline\ttab\rreturn", "control \u{01}\u{1F}\u{7F} bytes",
        "unicode é ü 日本語 🚀 \u{200B}zero-width", "slash / and </script>", "\u{2028}line separator\u{2029}",
        "\"\\\n\u{00}", "ends with an escape\u{7F}", "\"starts and ends quoted\"", String(repeating: "long run ", count: 200) + "\\",
    ]

    @Test("the hand-written answer decodes to the same result as Foundation's encoding, for awkward strings and any balance")
    func preparedAnswerMatchesEncoder() throws {
        for (index, text) in Self.awkward.enumerated() {
            let ticket = Ticket(
                title: "Fix: \(text)",
                description: text,
                acceptanceCriteria: index % 2 == 0 ? [] : [text, "second"],
                priority: "High",
                storyPoints: index,
                labels: index % 3 == 0 ? [] : ["bug", text]
            )
            let prepared = TicketResponseDraft(ticket: ticket, provider: "mock", model: text.isEmpty ? "m" : text)
            for remaining in [0, 1, 5, 9_999_999, Int(Int32.max)] {
                let answer = prepared.answer(tokensRemaining: remaining)
                let expected = TicketResponse(
                    ticket: ticket,
                    markdown: ticket.markdown,
                    provider: "mock",
                    model: text.isEmpty ? "m" : text,
                    tokensRemaining: remaining
                )
                #expect(answer.result == expected)
                #expect(try JSONDecoder().decode(TicketResponse.self, from: Data(answer.json.utf8)) == expected, "\(answer.json)")
                let ours = try JSONSerialization.jsonObject(with: Data(answer.json.utf8)) as? NSDictionary
                let foundations = try JSONSerialization.jsonObject(with: JSONEncoder().encode(expected)) as? NSDictionary
                #expect(ours == foundations)
                #expect(answer.json.hasPrefix("{\"ticket\":{\"title\":"), "keys in the order the type declares them")
            }
        }
    }

    @Test("mock keywords: bug words, urgency and labels are found anywhere in the text, in any case, beside non-ASCII text")
    func mockKeywords() {
        let bug = MockTickets.ticket(for: "Le bouton « Payer » CRASHES on the checkout PAGE — urgent, production 🚨")
        #expect(bug.title.hasPrefix("Fix: "))
        #expect(bug.priority == "High")
        #expect(bug.labels == ["bug", "frontend"])
        let feature = MockTickets.ticket(for: "Add an API endpoint so the server exports tests; slow is fine")
        #expect(feature.title.hasPrefix("Implement: "))
        #expect(feature.priority == "Medium")
        #expect(feature.labels == ["feature", "backend", "testing", "performance"])
        let plain = MockTickets.ticket(for: "Écrire la documentation")
        #expect(plain.labels == ["feature"])
        #expect([UInt8]("abc".utf8).containsSubsequence([UInt8]("bc".utf8)))
        #expect(![UInt8]("ab".utf8).containsSubsequence([UInt8]("abc".utf8)))
    }

    @Test("mock tickets trim, take the first line and count words as Foundation and Character would")
    func mockTextHandling() {
        let inputs = [
            "  \t Add search\r\nto the dashboard page\n\n",
            "\u{3000}全角スペース で 始まる テキスト\u{2028}second line",
            "one\u{85}two three\u{A0}four",
            " \n\t ",
            "",
            String(repeating: "word ", count: 120) + "\u{1F6A8}",
            "Fix the 🇫🇷 flag e\u{301}mojis — \u{2029}then more",
        ]
        for input in inputs {
            let text = input.trimmingCharacters(in: .whitespacesAndNewlines)
            let firstLine = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? text
            let words = text.split(whereSeparator: { $0.isWhitespace }).count
            let ticket = MockTickets.ticket(for: input)
            #expect(ticket.description == text, "\(input.debugDescription)")
            #expect(ticket.title.hasSuffix(firstLine.count > 72 ? String(firstLine.prefix(69)) + "…" : firstLine), "\(input.debugDescription)")
            #expect(ticket.storyPoints == (words < 15 ? 2 : words < 40 ? 3 : words < 100 ? 5 : 8), "\(input.debugDescription)")
        }
    }

    @Test("a user's first requests, arriving together, open the account and grant the welcome tokens exactly once; later ones change nothing")
    func accountOpenedOnce() async throws {
        let fixture = try LedgerFixture()
        defer { fixture.directory.remove() }
        let database = fixture.database
        // Every call must succeed: one opens the account, the others see it open. An error (a
        // busy database, a constraint) is a failure, never a quiet "not granted".
        let results = await withTaskGroup(of: Result<Bool, any Error>.self) { group in
            for index in 0..<20 {
                group.addTask {
                    do {
                        return .success(
                            try await database.ledger.openAccountOnFirstRequest(userId: "user_new", actor: "api", requestId: "req_\(index)") != nil
                        )
                    } catch {
                        return .failure(error)
                    }
                }
            }
            return await group.reduce(into: [Result<Bool, any Error>]()) { $0.append($1) }
        }
        let failures = results.compactMap { if case .failure(let error) = $0 { "\(error)" } else { nil } }
        #expect(failures.isEmpty, "\(failures)")
        let grants = results.filter { if case .success(true) = $0 { true } else { false } }.count
        #expect(grants == 1)
        #expect(try await database.ledger.balance(userId: "user_new")?.tokens == 6)
        #expect(try await database.ledger.openAccountOnFirstRequest(userId: "user_new", actor: "api", requestId: "req_late") == nil)
        // An account opened by another process (the Clerk webhook, the console) is seen too.
        let elsewhere = try AppDatabase.openFile(at: database.path)
        _ = try await elsewhere.ledger.openAccount(userId: "user_other", email: nil, actor: "webhook:clerk")
        #expect(try await database.ledger.openAccountOnFirstRequest(userId: "user_other", actor: "api", requestId: nil) == nil)
        #expect(try await fixture.entryCount() == 2)
    }
}
