// Hand-written to match the reference (cn-clip 1.6.0 `bert_tokenizer.load_vocab`) bit for bit.

import Essentials
import Foundation

/// A failure to load a WordPiece vocabulary; each case names the file (and token) at fault.
package enum TokenizerError: UserFacingError, Equatable {
    /// The vocabulary file could not be read (missing, a directory, no permission…).
    case vocabularyUnreadable(path: String, reason: String)
    /// The vocabulary file is not valid UTF-8 (the reference would raise `UnicodeDecodeError`).
    case vocabularyNotUTF8(path: String)
    /// The vocabulary lacks a special token the tokenizer needs (`[CLS]`, `[SEP]`, `[UNK]` or `[PAD]`).
    case missingSpecialToken(token: String, path: String)
    /// The vocabulary bundled with this module is absent from the built resources.
    case bundledVocabularyMissing

    /// A one-line message naming the file and token at fault.
    package var description: String {
        switch self {
        case let .vocabularyUnreadable(path, reason):
            return "cannot read vocabulary file '\(path)': \(reason)"
        case let .vocabularyNotUTF8(path):
            return "vocabulary file '\(path)' is not valid UTF-8"
        case let .missingSpecialToken(token, path):
            return "vocabulary file '\(path)' has no '\(token)' token"
        case .bundledVocabularyMissing:
            return "the Tokenization module's bundled vocab.txt resource is missing"
        }
    }
}

/// The token ⇄ id table, compared by exact code points.
///
/// Swift `String` equality is canonical equivalence (precomposed "한" equals its three jamo), while Python
/// compares code points; a `[String: Int]` would therefore find tokens the reference does not. Keys here
/// are raw UTF-8 bytes in an open-addressing table, which also lets lookups run on a scratch buffer
/// without allocating a `String` per candidate.
struct VocabularyTable: Sendable {
    /// Index → token, exactly as the reference's `inv_vocab` (the stripped line at that index).
    let tokens: [String]
    /// UTF-8 of every token, back to back; token `i` occupies `starts[i] ..< starts[i + 1]`.
    private let bytes: [UInt8]
    private let starts: [Int]
    /// Slots hold a token index or -1; `whole` keys on the full token, `continuation` on the text after a
    /// leading "##" so WordPiece can probe "##" + piece without building that string.
    private let whole: [Int32]
    private let continuation: [Int32]
    private let mask: Int
    /// Longest key in bytes per table, so WordPiece skips candidates that cannot match.
    let maxWholeBytes: Int
    let maxContinuationBytes: Int

    /// Builds the table from the file's bytes exactly as `load_vocab` reads it.
    ///
    /// `load_vocab` reads with universal newlines (`\n`, `\r\n` and `\r` all end a line), `strip()`s each
    /// line of Python whitespace, keeps empty lines as tokens, and lets a later duplicate win the id.
    init(fileBytes: [UInt8], path: String) throws {
        guard let text = String(validating: fileBytes, as: UTF8.self) else {
            throw TokenizerError.vocabularyNotUTF8(path: path)
        }
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        var previousWasCR = false
        for s in text.unicodeScalars {
            if s == "\n" && previousWasCR { previousWasCR = false; continue }
            previousWasCR = s == "\r"
            if s == "\n" || s == "\r" {
                lines.append(Self.pythonStrip(current))
                current = String.UnicodeScalarView()
            } else {
                current.append(s)
            }
        }
        // A last line without a newline still counts, as `readline()` returns it.
        if !current.isEmpty { lines.append(Self.pythonStrip(current)) }
        self.init(tokens: lines)
    }

    /// Builds the table from tokens already split and stripped; index `i` is token `i`.
    init(tokens: [String]) {
        self.tokens = tokens
        var bytes: [UInt8] = []
        var starts: [Int] = [0]
        starts.reserveCapacity(tokens.count + 1)
        for t in tokens {
            bytes.append(contentsOf: t.utf8)
            starts.append(bytes.count)
        }
        var capacity = 16
        while capacity < tokens.count * 2 { capacity <<= 1 }
        let mask = capacity - 1
        var whole = [Int32](repeating: -1, count: capacity)
        var continuation = [Int32](repeating: -1, count: capacity)
        var maxWhole = 0
        var maxContinuation = 0
        bytes.withUnsafeBufferPointer { all in
            for i in tokens.indices {
                let key = UnsafeBufferPointer(rebasing: all[starts[i]..<starts[i + 1]])
                Self.insert(Int32(i), key: key, into: &whole, mask: mask, bytes: all, starts: starts, skip: 0)
                maxWhole = max(maxWhole, key.count)
                if key.count >= 2 && key[0] == UInt8(ascii: "#") && key[1] == UInt8(ascii: "#") {
                    let rest = UnsafeBufferPointer(rebasing: key[2...])
                    Self.insert(Int32(i), key: rest, into: &continuation, mask: mask, bytes: all, starts: starts, skip: 2)
                    maxContinuation = max(maxContinuation, rest.count)
                }
            }
        }
        self.bytes = bytes
        self.starts = starts
        self.whole = whole
        self.continuation = continuation
        self.mask = mask
        self.maxWholeBytes = maxWhole
        self.maxContinuationBytes = maxContinuation
    }

    /// The id of the token whose UTF-8 is `key` (after "##" when `continuation`), or -1.
    @inline(__always)
    func lookup(_ key: UnsafeBufferPointer<UInt8>, continuation isContinuation: Bool) -> Int32 {
        let slots = isContinuation ? continuation : whole
        let skip = isContinuation ? 2 : 0
        var h = Self.hash(key) & mask
        return bytes.withUnsafeBufferPointer { all in
            while true {
                let id = slots[h]
                if id < 0 { return -1 }
                if Self.equal(key, all, from: starts[Int(id)] + skip, to: starts[Int(id) + 1]) { return id }
                h = (h + 1) & mask
            }
        }
    }

    /// The id of `token` compared by code points, or nil (the reference's `vocab[token]`).
    func id(of token: String) -> Int32? {
        var token = token
        let id = token.withUTF8 { lookup($0, continuation: false) }
        return id < 0 ? nil : id
    }

    private static func insert(
        _ id: Int32, key: UnsafeBufferPointer<UInt8>, into slots: inout [Int32], mask: Int,
        bytes: UnsafeBufferPointer<UInt8>, starts: [Int], skip: Int
    ) {
        var h = hash(key) & mask
        while true {
            let other = slots[h]
            if other < 0 { slots[h] = id; return }
            // A later line with the same text takes over the id, as a Python dict assignment does.
            if equal(key, bytes, from: starts[Int(other)] + skip, to: starts[Int(other) + 1]) { slots[h] = id; return }
            h = (h + 1) & mask
        }
    }

    @inline(__always)
    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    @inline(__always)
    private static func equal(_ key: UnsafeBufferPointer<UInt8>, _ all: UnsafeBufferPointer<UInt8>, from a: Int, to b: Int) -> Bool {
        guard b - a == key.count else { return false }
        var i = 0
        while i < key.count {
            if key[i] != all[a + i] { return false }
            i += 1
        }
        return true
    }

    private static func pythonStrip(_ line: String.UnicodeScalarView) -> String {
        var lo = line.startIndex
        var hi = line.endIndex
        while lo < hi && PythonUnicode.isPythonSpace(line[lo].value) { lo = line.index(after: lo) }
        while hi > lo && PythonUnicode.isPythonSpace(line[line.index(before: hi)].value) { hi = line.index(before: hi) }
        return String(String.UnicodeScalarView(line[lo..<hi]))
    }
}
