// libFuzzer harness: image TSVs (`image_id<TAB>base64` lines, as build-lmdb, extract-features and index build read
// them) — the line reader (LF / CRLF, no final newline, long lines), field splitting, base64 validation and decoding
// (either alphabet), and the decode of the image it holds.
//
// The input is the TSV file; it is read with a small chunk size too, so lines cross read boundaries. A throw is a
// correct refusal.

import CLibFuzzer
import Datasets
import Essentials
import Foundation
import FuzzSupport
import Imaging

let scratch = scratchFolder("tsv")
let path = "\(scratch)/imgs.tsv"

func fuzzTSV(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { fatalError("cannot write \(path)") }
    // Lines as the plain reader sees them, with a chunk size that makes lines straddle reads.
    var small = LineReader(path: path)
    small.chunkSize = 7
    var fromSmall: [[UInt8]] = []
    try? small.forEachLine { line, _, _ in fromSmall.append(Array(line)) }
    var fromLarge: [[UInt8]] = []
    try? LineReader(path: path).forEachLine { line, _, _ in fromLarge.append(Array(line)) }
    precondition(fromSmall == fromLarge, "the lines depend on the read chunk size")

    var reader = ImageTSVReader(path: path)
    reader.lines.chunkSize = 16
    try? reader.forEach { record, _, _ in
        precondition(!record.id.isEmpty)
        guard let bytes = try? Base64.decode(record.base64) else {
            preconditionFailure("base64 validated by the reader does not decode")
        }
        _ = try? Image(data: Data(bytes), name: String(decoding: record.id, as: UTF8.self))
    }
    // Without validation (index build's fast path): decoding may refuse, never trap.
    try? ImageTSVReader(path: path).forEach(validateBase64: false) { record, _, _ in _ = try? Base64.decode(record.base64) }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzTSV($0, size) } ?? 0 })
