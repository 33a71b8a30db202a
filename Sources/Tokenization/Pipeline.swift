// Hand-written to match the reference (cn-clip 1.6.0 `bert_tokenizer.py`, Google's BERT tokenization with
// do_lower_case=True) bit for bit: BasicTokenizer, then WordpieceTokenizer, as FullTokenizer chains them.

import Foundation

/// Reusable buffers for one thread's work, so a batch allocates once rather than per word.
struct Scratch {
    var word: [Unicode.Scalar] = []
    var lowered: [Unicode.Scalar] = []
    var decomposed: [Unicode.Scalar] = []
    var piece: [Unicode.Scalar] = []
    var utf8: [UInt8] = []
    var bounds: [Int] = []
    var stop = false
}

/// BERT's basic tokenization and WordPiece over Unicode scalars (Python's `list(text)` is code points,
/// never grapheme clusters).
struct Pipeline: Sendable {
    let vocab: VocabularyTable
    let unicode: PythonUnicode
    let unkID: Int32
    let maxInputCharsPerWord: Int

    /// Appends the WordPiece ids of `text` to `ids`, stopping once `limit` ids were added.
    ///
    /// Stopping early is exact: WordPiece emits whole words left to right, so ids past the limit cannot
    /// change the ones before it, and truncating callers throw them away.
    func appendIDs(of text: String, limit: Int = .max, scratch: inout Scratch, to ids: inout [Int32]) {
        let base = ids.count
        scratch.stop = false
        var wp = (utf8: scratch.utf8, bounds: scratch.bounds)
        scratch.utf8 = []
        scratch.bounds = []
        forEachBasicToken(in: text, &scratch) { piece in
            appendWordPieceIDs(piece, &wp.utf8, &wp.bounds, to: &ids)
            return ids.count - base < limit
        }
        scratch.utf8 = wp.utf8
        scratch.bounds = wp.bounds
    }

    /// Calls `emit` with each token of `BasicTokenizer.tokenize(text)`, until it returns false.
    func forEachBasicToken(
        in text: String, _ s: inout Scratch, _ emit: (UnsafeBufferPointer<Unicode.Scalar>) -> Bool
    ) {
        s.word.removeAll(keepingCapacity: true)
        for c in text.unicodeScalars {
            let v = c.value
            if v < 0x80 {
                if v == 0x20 || v == 0x09 || v == 0x0A || v == 0x0D {
                    flushWord(&s, emit)
                } else if v >= 0x21 && v != 0x7F {
                    s.word.append(c)
                }
                // Other ASCII controls (NUL, \x0b, \x0c, \x1c–\x1f, DEL) are Cc: `_clean_text` drops
                // them before its whitespace check, so they join their neighbours instead of splitting.
            } else if PythonUnicode.isCJKIdeograph(v) {
                flushWord(&s, emit)
                s.word.append(c)
                flushWord(&s, emit)
            } else if v == 0xFFFD || unicode.isControl(c) {
                continue
            } else if unicode.isBertWhitespace(c) || PythonUnicode.isPythonSpace(v) {
                // U+2028/U+2029 (Zl/Zp) survive `_clean_text` but `str.split()` still splits on them.
                flushWord(&s, emit)
            } else {
                s.word.append(c)
            }
            if s.stop { return }
        }
        flushWord(&s, emit)
    }

    @inline(__always)
    private func flushWord(_ s: inout Scratch, _ emit: (UnsafeBufferPointer<Unicode.Scalar>) -> Bool) {
        guard !s.word.isEmpty, !s.stop else { return }
        processWord(&s, emit)
        s.word.removeAll(keepingCapacity: true)
    }

    /// One whitespace-separated token: `lower()`, `_run_strip_accents`, `_run_split_on_punc`.
    private func processWord(_ s: inout Scratch, _ emit: (UnsafeBufferPointer<Unicode.Scalar>) -> Bool) {
        let word = s.word
        s.piece.removeAll(keepingCapacity: true)
        if word.allSatisfy({ $0.value < 0x80 }) {
            // ASCII needs no NFD and lower-cases by offset; only the punctuation split remains.
            for c in word {
                let v = c.value
                if PythonUnicode.isASCIIPunctuation(v) {
                    emitPiece(&s, emit)
                    s.piece.append(c)
                    emitPiece(&s, emit)
                } else {
                    s.piece.append(v >= 65 && v <= 90 ? Unicode.Scalar(UInt8(v + 32)) : c)
                }
            }
            emitPiece(&s, emit)
            return
        }
        if word.count == 1 && PythonUnicode.isInertIdeograph(word[0].value) {
            s.piece.append(word[0])
            emitPiece(&s, emit)
            return
        }
        s.lowered.removeAll(keepingCapacity: true)
        word.withUnsafeBufferPointer { unicode.appendLowercased($0, to: &s.lowered) }
        s.decomposed.removeAll(keepingCapacity: true)
        appendNFD(s.lowered, to: &s.decomposed)
        let decomposed = s.decomposed
        for c in decomposed {
            if unicode.isNonspacingMark(c) { continue }
            if PythonUnicode.isPythonSpace(c.value) {
                // Only reachable if NFD yields whitespace; the reference's second split would cut here.
                emitPiece(&s, emit)
            } else if unicode.isPunctuation(c) {
                emitPiece(&s, emit)
                s.piece.append(c)
                emitPiece(&s, emit)
            } else {
                s.piece.append(c)
            }
        }
        emitPiece(&s, emit)
    }

    @inline(__always)
    private func emitPiece(_ s: inout Scratch, _ emit: (UnsafeBufferPointer<Unicode.Scalar>) -> Bool) {
        guard !s.piece.isEmpty else { return }
        if !s.stop {
            let more = s.piece.withUnsafeBufferPointer { emit($0) }
            if !more { s.stop = true }
        }
        s.piece.removeAll(keepingCapacity: true)
    }

    /// `unicodedata.normalize("NFD", …)` with the reference's Unicode version.
    ///
    /// Scalars newer than that version are unassigned to Python: no decomposition and combining class 0,
    /// so they cut the text into runs that are normalised separately. Runs with nothing at or above
    /// U+00C0 (other than inert ideographs) are already in NFD and skip Foundation.
    private func appendNFD(_ src: [Unicode.Scalar], to out: inout [Unicode.Scalar]) {
        var i = 0
        while i < src.count {
            if src[i].value >= 0x80 && !unicode.isAssigned(src[i]) {
                out.append(src[i])
                i += 1
                continue
            }
            var j = i
            var needsNFD = false
            while j < src.count {
                let v = src[j].value
                if v >= 0x80 && !unicode.isAssigned(src[j]) { break }
                if v >= 0xC0 && !PythonUnicode.isInertIdeograph(v) { needsNFD = true }
                j += 1
            }
            if needsNFD {
                var run = String.UnicodeScalarView()
                run.append(contentsOf: src[i..<j])
                out.append(contentsOf: String(run).decomposedStringWithCanonicalMapping.unicodeScalars)
            } else {
                out.append(contentsOf: src[i..<j])
            }
            i = j
        }
    }

    /// `WordpieceTokenizer.tokenize` of one basic token: greedy longest match, "##" after the first piece,
    /// and a single `[UNK]` for a word that cannot be covered or has more than `maxInputCharsPerWord` scalars.
    func appendWordPieceIDs(
        _ piece: UnsafeBufferPointer<Unicode.Scalar>, _ utf8: inout [UInt8], _ bounds: inout [Int],
        to ids: inout [Int32]
    ) {
        let n = piece.count
        if n == 0 { return }
        if n > maxInputCharsPerWord {
            ids.append(unkID)
            return
        }
        utf8.removeAll(keepingCapacity: true)
        bounds.removeAll(keepingCapacity: true)
        bounds.append(0)
        for c in piece {
            UTF8.encode(c) { utf8.append($0) }
            bounds.append(utf8.count)
        }
        let mark = ids.count
        let bounds = bounds
        let covered: Bool = utf8.withUnsafeBufferPointer { buf in
            var start = 0
            while start < n {
                let continuation = start > 0
                let limit = continuation ? vocab.maxContinuationBytes : vocab.maxWholeBytes
                let a = bounds[start]
                var end = n
                var found: Int32 = -1
                while end > start {
                    let b = bounds[end]
                    if b - a <= limit {
                        let id = vocab.lookup(UnsafeBufferPointer(rebasing: buf[a..<b]), continuation: continuation)
                        if id >= 0 {
                            found = id
                            break
                        }
                    }
                    end -= 1
                }
                if found < 0 { return false }
                ids.append(found)
                start = end
            }
            return true
        }
        if !covered {
            ids.removeSubrange(mark...)
            ids.append(unkID)
        }
    }
}
