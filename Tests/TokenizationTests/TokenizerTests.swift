// Parity tests against the reference tokenizer's golden outputs (Tests/Fixtures/tokenizer, made by
// shared/reference/make_fixtures.py from cn-clip 1.6.0).

import Foundation
import Synchronization
import XCTest

@testable import Tokenization

final class TokenizerTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let tokens: [String]
        let ids_52: [Int32]
        let ids_24: [Int32]
    }

    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func loadCases() throws -> [Case] {
        let url = fixtures.appendingPathComponent("tokenizer/cases.jsonl")
        let data = try Data(contentsOf: url)
        // Split on the newline byte: a text may hold U+2028 or other separators that String.split
        // on Character would also treat as line breaks.
        return try data.split(separator: 0x0A).map { try JSONDecoder().decode(Case.self, from: Data($0)) }
    }

    func testFixtureCount() throws {
        XCTAssertEqual(try Self.loadCases().count, 400)
    }

    func testWordPiecesMatchReference() throws {
        let tokenizer = try Tokenizer.bundled()
        var failures = 0
        for (i, c) in try Self.loadCases().enumerated() {
            let actual = tokenizer.wordPieces(c.text)
            if actual != c.tokens {
                failures += 1
                XCTFail("case \(i) text \(c.text.debugDescription)\n expected \(c.tokens)\n actual   \(actual)")
            }
        }
        XCTAssertEqual(failures, 0)
    }

    func testClipTokenizeMatchesReference() throws {
        let tokenizer = try Tokenizer.bundled()
        let cases = try Self.loadCases()
        for (length, expected) in [(52, cases.map(\.ids_52)), (24, cases.map(\.ids_24))] {
            let rows = tokenizer.tokenize(cases.map(\.text), contextLength: length)
            let flat = tokenizer.tokenizeFlat(cases.map(\.text), contextLength: length)
            XCTAssertEqual(flat.count, cases.count * length)
            for i in cases.indices {
                let single = tokenizer.encode(cases[i].text, contextLength: length)
                let flatRow = Array(flat[i * length..<(i + 1) * length])
                if rows[i] != expected[i] || single != expected[i] || flatRow != expected[i] {
                    XCTFail(
                        """
                        case \(i) context \(length) text \(cases[i].text.debugDescription)
                         expected \(expected[i])
                         rows     \(rows[i])
                         encode   \(single)
                         flat     \(flatRow)
                        """)
                }
            }
        }
    }

    func testBundledVocabularyIsTheReferenceOne() throws {
        let tokenizer = try Tokenizer.bundled()
        XCTAssertEqual(tokenizer.vocabularySize, 21128)
        XCTAssertEqual(tokenizer.padID, 0)
        XCTAssertEqual(tokenizer.unkID, 100)
        XCTAssertEqual(tokenizer.clsID, 101)
        XCTAssertEqual(tokenizer.sepID, 102)
        XCTAssertEqual(tokenizer.token(forID: 101), "[CLS]")
        XCTAssertNil(tokenizer.token(forID: 21128))
        let path = Self.fixtures.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/Tokenization/Resources/vocab.txt").path
        let fromPath = try Tokenizer(vocabularyPath: path)
        XCTAssertEqual(fromPath.vocabularyPath, path)
        XCTAssertEqual(fromPath.tokenize(["皮卡丘 Pikachu"]), tokenizer.tokenize(["皮卡丘 Pikachu"]))
    }

    func testSepIndexAndTruncation() throws {
        let tokenizer = try Tokenizer.bundled()
        let cat = try XCTUnwrap(tokenizer.id(forToken: "猫"))
        let row = tokenizer.encode(String(repeating: "猫", count: 100), contextLength: 8)
        XCTAssertEqual(row, [101] + Array(repeating: cat, count: 6) + [102])
        XCTAssertEqual(tokenizer.sepIndex(in: row), 7)
        XCTAssertEqual(tokenizer.encode("", contextLength: 2), [101, 102])
        XCTAssertEqual(tokenizer.encode("猫猫", contextLength: 2), [101, 102])
    }

    /// Vocabulary keys compare by code points, as Python's dict does; Swift's `String ==` is canonical
    /// equivalence and would match the precomposed syllable against its NFD jamo.
    func testLookupIsByCodePoints() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tok-nfc-\(UUID().uuidString).txt")
        try Data("[PAD]\n[UNK]\n[CLS]\n[SEP]\n\u{D55C}\n\u{E9}\n".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let t = try Tokenizer(vocabularyURL: url)
        XCTAssertEqual(t.id(forToken: "\u{E9}"), 5)
        XCTAssertNil(t.id(forToken: "e\u{301}"))
        XCTAssertEqual(t.id(forToken: "\u{D55C}"), 4)
        XCTAssertNil(t.id(forToken: "\u{1112}\u{1161}\u{11AB}"))
        // The reference decomposes 한 to jamo, none of which this vocabulary holds.
        XCTAssertEqual(t.wordPieces("\u{D55C}"), ["[UNK]"])
    }

    // MARK: - Unicode-version edge cases (expected values observed from the reference under Python 3.11/3.12)

    func testControlsJoinNeighboursAndLineSeparatorsSplit() throws {
        let t = try Tokenizer.bundled()
        XCTAssertEqual(t.wordPieces("Ab\u{0B}cd"), ["abc", "##d"])
        XCTAssertEqual(t.wordPieces("Ab\u{2028}cd"), ["ab", "cd"])
    }

    /// Characters whose properties Swift's newer tables changed keep their Unicode 14 behaviour.
    func testCharactersChangedAfterUnicode14KeepReferenceBehaviour() throws {
        let t = try Tokenizer.bundled()
        XCTAssertEqual(t.wordPieces("Ab\u{1171E}cd"), ["abc", "##d"])
        XCTAssertEqual(t.wordPieces("\u{391}\u{1171E}\u{3A3} a"), ["α", "##ς", "a"])
        XCTAssertEqual(Tokenizer.prepareCaption("A\u{295}\u{3A3}"), "a\u{295}\u{3C2}")
    }

    /// A code point assigned after the frozen version is unassigned to that Python, so it stays put:
    /// U+11B00 DEVANAGARI HEAD MARK (Po) arrived in Unicode 15.0, so only Python 3.12+ splits on it.
    func testUnicodeVersionGatesNewerCharacters() throws {
        let py311 = try Tokenizer.bundled()
        let py312 = try Tokenizer(vocabularyURL: Tokenizer.bundledVocabularyURL(), unicodeVersion: (15, 0))
        XCTAssertEqual(py311.wordPieces("Ab\u{11B00}cd"), ["[UNK]"])
        XCTAssertEqual(py312.wordPieces("Ab\u{11B00}cd"), ["ab", "[UNK]", "cd"])
    }

    // MARK: - Caption preprocessing

    func testPrepareCaptionLowercasesAndMapsCurlyQuotes() {
        XCTAssertEqual(Tokenizer.prepareCaption("“Hello”, 世界 ‘OK’"), "\"hello\", 世界 ‘ok’")
        // Python's full mappings and final-sigma rule, not per-scalar simple mappings.
        XCTAssertEqual(Tokenizer.prepareCaption("İ"), "i\u{307}")
        XCTAssertEqual(Tokenizer.prepareCaption("ΟΔΟΣ ΟΔΟΣ."), "οδος οδος.")
        XCTAssertEqual(Tokenizer.prepareCaption("ΣΑ Σ"), "σα σ")
        XCTAssertEqual(Tokenizer.prepareCaption("ÀÉ ＡＢ"), "àé ａｂ")
    }

    func testPrepareCaptionThenTokenizeMatchesReferencePipeline() throws {
        let tokenizer = try Tokenizer.bundled()
        // “ and ” are not in the vocabulary ([UNK]); after preparation they are plain quotes.
        XCTAssertEqual(tokenizer.wordPieces("“引号”"), ["[UNK]", "引", "号", "[UNK]"])
        XCTAssertEqual(tokenizer.wordPieces(Tokenizer.prepareCaption("“引号”")), ["\"", "引", "号", "\""])
    }

    // MARK: - Loading errors

    func testMissingVocabularyNamesThePath() {
        let path = "/nonexistent/dir/vocab.txt"
        XCTAssertThrowsError(try Tokenizer(vocabularyPath: path)) { error in
            guard case let TokenizerError.vocabularyUnreadable(p, _) = error else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertEqual(p, path)
            XCTAssertTrue("\(error)".contains(path))
        }
    }

    func testMissingSpecialTokenNamesTheToken() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for missing in ["[CLS]", "[SEP]", "[UNK]", "[PAD]"] {
            let lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"].filter { $0 != missing }
            let url = dir.appendingPathComponent("vocab-\(missing).txt")
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: url)
            XCTAssertThrowsError(try Tokenizer(vocabularyURL: url)) { error in
                XCTAssertEqual(error as? TokenizerError, .missingSpecialToken(token: missing, path: url.path))
                XCTAssertTrue("\(error)".contains(missing))
                XCTAssertTrue("\(error)".contains(url.path))
            }
        }
    }

    func testInvalidUTF8VocabularyIsRejected() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tok-bad-\(UUID().uuidString).txt")
        try Data([0x5B, 0x50, 0x41, 0x44, 0x5D, 0x0A, 0xFF, 0x0A]).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try Tokenizer(vocabularyURL: url)) { error in
            XCTAssertEqual(error as? TokenizerError, .vocabularyNotUTF8(path: url.path))
        }
    }

    /// `load_vocab` reads universal newlines, strips Python whitespace, keeps blank lines, last duplicate wins.
    func testVocabularyFileParsingFollowsLoadVocab() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tok-vocab-\(UUID().uuidString).txt")
        let text = "[PAD]\r\n[UNK]\r[CLS]\n [SEP]\u{3000}\n\nab\n##c\nab\nlast"
        try Data(text.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let t = try Tokenizer(vocabularyURL: url)
        XCTAssertEqual(t.vocabularySize, 9)
        XCTAssertEqual([t.padID, t.unkID, t.clsID, t.sepID], [0, 1, 2, 3])
        XCTAssertEqual(t.token(forID: 4), "")
        XCTAssertEqual(t.id(forToken: "ab"), 7)
        XCTAssertEqual(t.id(forToken: "last"), 8)
        XCTAssertEqual(t.wordPieces("abc AB x"), ["ab", "##c", "ab", "[UNK]"])
    }

    func testConcurrentUseGivesTheSameResults() throws {
        let tokenizer = try Tokenizer.bundled()
        let texts = try Self.loadCases().map(\.text)
        let expected = tokenizer.tokenizeFlat(texts)
        let mismatches = Atomic(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            if tokenizer.tokenizeFlat(texts) != expected { mismatches.add(1, ordering: .relaxed) }
        }
        XCTAssertEqual(mismatches.load(ordering: .relaxed), 0)
    }
}
