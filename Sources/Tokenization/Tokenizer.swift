// Hand-written to match the reference (cn-clip 1.6.0: `cn_clip.clip.tokenize`, `_tokenizer` =
// `FullTokenizer(default_vocab(), do_lower_case=True)`, and `_preprocess_text`) bit for bit.

import Foundation

/// Chinese-CLIP's text tokenizer: BERT basic tokenization, WordPiece over the BERT-Chinese vocabulary,
/// and `clip.tokenize`'s `[CLS] … [SEP]` framing with zero padding.
///
/// Immutable after loading, so one instance can serve any number of threads at once.
package final class Tokenizer: Sendable {
    /// The context length every released Chinese-CLIP model uses (`clip.tokenize`'s default).
    package static let defaultContextLength = 52
    /// Words with more Unicode scalars than this become one `[UNK]` (cn-clip's `WordpieceTokenizer` default).
    package static let maxInputCharsPerWord = 200
    /// The Unicode version of the Python (3.11) that produced the reference outputs.
    package static let referenceUnicodeVersion: Unicode.Version = (major: 14, minor: 0)

    /// Where the vocabulary was loaded from.
    package let vocabularyPath: String
    /// The id of `[CLS]`, put first in every row.
    package let clsID: Int32
    /// The id of `[SEP]`, put after the last kept WordPiece.
    package let sepID: Int32
    /// The id of `[UNK]`, emitted for words WordPiece cannot cover.
    package let unkID: Int32
    /// The id of `[PAD]`; rows are padded with literal 0 as in the reference, which is this id in its vocabulary.
    package let padID: Int32
    let pipeline: Pipeline

    /// Loads the vocabulary bundled with this module (cn-clip's `vocab.txt`, 21128 tokens).
    package convenience init() throws(TokenizerError) {
        try self.init(vocabularyURL: Tokenizer.bundledVocabularyURL())
    }

    /// Loads the vocabulary at a file path.
    package convenience init(vocabularyPath: String) throws(TokenizerError) {
        try self.init(vocabularyURL: URL(fileURLWithPath: vocabularyPath))
    }

    /// Loads a vocabulary file, optionally matching a Python built on a different Unicode version.
    package init(
        vocabularyURL: URL, unicodeVersion: Unicode.Version = Tokenizer.referenceUnicodeVersion
    ) throws(TokenizerError) {
        let path = vocabularyURL.path
        let data: Data
        do {
            data = try Data(contentsOf: vocabularyURL)
        } catch {
            throw .vocabularyUnreadable(path: path, reason: Tokenizer.reason(error))
        }
        let table: VocabularyTable
        do {
            table = try VocabularyTable(fileBytes: [UInt8](data), path: path)
        } catch let error as TokenizerError {
            throw error
        } catch {
            throw .vocabularyUnreadable(path: path, reason: Tokenizer.reason(error))
        }
        func special(_ token: String) throws(TokenizerError) -> Int32 {
            guard let id = table.id(of: token) else { throw .missingSpecialToken(token: token, path: path) }
            return id
        }
        vocabularyPath = path
        clsID = try special("[CLS]")
        sepID = try special("[SEP]")
        unkID = try special("[UNK]")
        padID = try special("[PAD]")
        pipeline = Pipeline(
            vocab: table, unicode: PythonUnicode(version: unicodeVersion), unkID: unkID,
            maxInputCharsPerWord: Tokenizer.maxInputCharsPerWord)
    }

    private static let sharedBundled = Result { () throws(TokenizerError) -> Tokenizer in try Tokenizer() }

    /// The process-wide tokenizer over the bundled vocabulary, loaded once on first use.
    package static func bundled() throws(TokenizerError) -> Tokenizer {
        try sharedBundled.get()
    }

    /// The URL of the bundled `vocab.txt`.
    package static func bundledVocabularyURL() throws(TokenizerError) -> URL {
        guard let url = Bundle.module.url(forResource: "vocab", withExtension: "txt") else {
            throw .bundledVocabularyMissing
        }
        return url
    }

    /// The number of lines in the vocabulary (ids run from 0 to this minus one).
    package var vocabularySize: Int { pipeline.vocab.tokens.count }

    /// The id of a vocabulary token, compared code point by code point as Python does, or nil.
    package func id(forToken token: String) -> Int32? {
        pipeline.vocab.id(of: token)
    }

    /// The vocabulary token with this id, or nil when out of range.
    package func token(forID id: Int32) -> String? {
        let tokens = pipeline.vocab.tokens
        return id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : nil
    }

    /// The basic tokens of `text` before WordPiece (`BasicTokenizer(do_lower_case=True).tokenize`).
    package func basicTokens(_ text: String) -> [String] {
        var scratch = Scratch()
        var out: [String] = []
        pipeline.forEachBasicToken(in: text, &scratch) { piece in
            var view = String.UnicodeScalarView()
            view.append(contentsOf: piece)
            out.append(String(view))
            return true
        }
        return out
    }

    /// The WordPiece strings of `text`, as the reference's `_tokenizer.tokenize(text)` returns them.
    package func wordPieces(_ text: String) -> [String] {
        wordPieceIDs(text).map { pipeline.vocab.tokens[Int($0)] }
    }

    /// The WordPiece ids of `text` without framing or truncation (`convert_tokens_to_ids(tokenize(text))`).
    package func wordPieceIDs(_ text: String) -> [Int32] {
        var scratch = Scratch()
        var ids: [Int32] = []
        pipeline.appendIDs(of: text, scratch: &scratch, to: &ids)
        return ids
    }

    /// One row of `clip.tokenize`: `[CLS]`, the first `contextLength - 2` WordPiece ids, `[SEP]`, zeros;
    /// shape `[contextLength]`.
    ///
    /// This does not lower-case or map curly quotes first; training and evaluation code of the reference
    /// does that with ``prepareCaption(_:unicodeVersion:)`` before calling it.
    package func encode(_ text: String, contextLength: Int = Tokenizer.defaultContextLength) -> [Int32] {
        var row = [Int32](repeating: 0, count: contextLength)
        var scratch = Scratch()
        var ids: [Int32] = []
        row.withUnsafeMutableBufferPointer { encodeRow(text, contextLength: contextLength, scratch: &scratch, ids: &ids, into: $0) }
        return row
    }

    /// `clip.tokenize(texts, context_length)` as rows; shape `[batch, contextLength]`.
    package func tokenize(_ texts: [String], contextLength: Int = Tokenizer.defaultContextLength) -> [[Int32]] {
        var scratch = Scratch()
        var ids: [Int32] = []
        return texts.map { text in
            var row = [Int32](repeating: 0, count: contextLength)
            row.withUnsafeMutableBufferPointer {
                encodeRow(text, contextLength: contextLength, scratch: &scratch, ids: &ids, into: $0)
            }
            return row
        }
    }

    /// `clip.tokenize(texts, context_length)` as one row-major buffer; shape `[batch, contextLength]`,
    /// row `i` at `i * contextLength`.
    package func tokenizeFlat(_ texts: [String], contextLength: Int = Tokenizer.defaultContextLength) -> [Int32] {
        var flat = [Int32](repeating: 0, count: texts.count * contextLength)
        var scratch = Scratch()
        var ids: [Int32] = []
        flat.withUnsafeMutableBufferPointer { all in
            for (i, text) in texts.enumerated() {
                let row = UnsafeMutableBufferPointer(rebasing: all[i * contextLength..<(i + 1) * contextLength])
                encodeRow(text, contextLength: contextLength, scratch: &scratch, ids: &ids, into: row)
            }
        }
        return flat
    }

    /// The position of `[SEP]` in a row made by this tokenizer (the reference's training `eos_index`).
    package func sepIndex(in row: [Int32]) -> Int? {
        row.firstIndex(of: sepID)
    }

    private func encodeRow(
        _ text: String, contextLength: Int, scratch: inout Scratch, ids: inout [Int32],
        into row: UnsafeMutableBufferPointer<Int32>
    ) {
        // The reference's slice `[:context_length - 2]` misbehaves below 2 and then fails its own assert.
        precondition(contextLength >= 2, "contextLength must be at least 2 (got \(contextLength))")
        ids.removeAll(keepingCapacity: true)
        pipeline.appendIDs(of: text, limit: contextLength - 2, scratch: &scratch, to: &ids)
        let kept = min(ids.count, contextLength - 2)
        row[0] = clsID
        for i in 0..<kept { row[1 + i] = ids[i] }
        row[1 + kept] = sepID
    }

    /// The reference's `_preprocess_text`: Python's `text.lower()`, then “ and ” replaced by `"`.
    ///
    /// cn-clip applies it to every caption before `clip.tokenize` in training (`training/data.py`),
    /// feature extraction (`eval/data.py`) and zero-shot prompts; plain `clip.tokenize` does not.
    /// The lower-casing is Python's (full mappings, final sigma), which differs from `String.lowercased()`.
    package static func prepareCaption(
        _ text: String, unicodeVersion: Unicode.Version = Tokenizer.referenceUnicodeVersion
    ) -> String {
        let scalars = Array(text.unicodeScalars)
        var lowered: [Unicode.Scalar] = []
        lowered.reserveCapacity(scalars.count)
        scalars.withUnsafeBufferPointer { PythonUnicode(version: unicodeVersion).appendLowercased($0, to: &lowered) }
        var view = String.UnicodeScalarView()
        for s in lowered {
            view.append(s == "\u{201C}" || s == "\u{201D}" ? "\"" : s)
        }
        return String(view)
    }

    private static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError {
            return "\(ns.localizedDescription) (\(underlying.localizedDescription))"
        }
        return ns.localizedDescription
    }
}
