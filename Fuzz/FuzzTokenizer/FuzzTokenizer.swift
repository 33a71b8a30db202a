// libFuzzer harness: the tokenizer — BERT basic tokenizer, WordPiece and caption preparation over arbitrary text, and
// the vocabulary file reader.
//
// First input byte modulo 4: 0–2 → the rest is text (UTF-8, invalid sequences replaced as Python's
// `errors="replace"` would not; the tokenizer sees Swift strings either way), tokenized at context length 52, 2 and
// the first byte + 2; 3 → the rest is a vocab.txt, loaded and used on a fixed sentence.
// Invariants: every row is [CLS] … [SEP] then 0s, of exactly the context length, with ids in the vocabulary.

import CLibFuzzer
import Foundation
import FuzzSupport
import Tokenization

let tokenizer: Tokenizer = try! Tokenizer.bundled()
let scratch = scratchFolder("tokenizer")
let vocabPath = "\(scratch)/vocab.txt"

func check(_ t: Tokenizer, _ text: String, context: Int) {
    let row = t.encode(text, contextLength: context)
    precondition(row.count == context, "row of \(row.count) ids for context \(context)")
    precondition(row[0] == t.clsID, "row does not start with [CLS]")
    guard let sep = t.sepIndex(in: row) else { preconditionFailure("row has no [SEP]: \(row)") }
    // The reference pads with 0 whatever id [PAD] has in the vocabulary.
    precondition(row[(sep + 1)...].allSatisfy { $0 == 0 }, "ids after [SEP] are not padding (0): \(row)")
    precondition(row.allSatisfy { $0 >= 0 && Int($0) < t.vocabularySize }, "id outside the vocabulary: \(row)")
}

func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let body = UnsafeBufferPointer(start: data + 1, count: size - 1)
    if data[0] % 4 == 3 {
        guard FileManager.default.createFile(atPath: vocabPath, contents: Data(buffer: body)) else { fatalError("cannot write \(vocabPath)") }
        guard let t = try? Tokenizer(vocabularyPath: vocabPath) else { return 0 }
        for context in [2, 52] { check(t, "一张猫的图片 a photo of a cat ##s [UNK]", context: context) }
        return 0
    }
    let text = String(decoding: body, as: UTF8.self)
    _ = tokenizer.basicTokens(text)
    _ = tokenizer.wordPieces(text)
    let prepared = Tokenizer.prepareCaption(text)
    for context in [52, 2, Int(data[0]) + 2] { check(tokenizer, prepared, context: context) }
    check(tokenizer, text, context: 52)
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzTokenizer($0, size) } ?? 0 })
