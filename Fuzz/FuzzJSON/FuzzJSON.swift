// libFuzzer harness: the JSON and JSONL readers.
//
// The first input byte picks the reader (modulo 5), the rest is the document:
//   0  PyJSONParser.parse, then a round trip: json.dumps (both ensure_ascii settings) must parse back to the same
//      value, and repr/str must not trap
//   1  JSONLReader (annotation files: valid_texts.jsonl, captions) over a file of the bytes
//   2  FeatureFileReader (`{"image_id": …, "feature": […]}` lines; the C number loop) over a file of the bytes
//   3  RecallEvaluation.evaluate: ground truth and predictions, split at the first NUL byte
//   4  AnnotationTransform.transform (transform_ir_annotation_to_tr) over a file of the bytes
// A throw is a correct refusal; a trap, a sanitizer report, a hang or a huge allocation is a finding.

import CLibFuzzer
import Datasets
import Essentials
import Evaluation
import Foundation
import FuzzSupport

/// Where the harness writes the inputs of the readers that take a path (tmpfs when there is one).
let scratch = scratchFolder("json")

/// Writes `bytes` to `name` in the scratch folder and returns its path.
func file(_ name: String, _ bytes: UnsafeBufferPointer<UInt8>) -> String {
    let path = "\(scratch)/\(name)"
    let ok = FileManager.default.createFile(atPath: path, contents: Data(buffer: bytes))
    precondition(ok, "cannot write \(path)")
    return path
}

func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let body = UnsafeBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 5 {
    case 0:
        guard let value = try? PyJSONParser.parse(body) else { return 0 }
        for ascii in [true, false] {
            let text = pythonDumps(value, ensureASCII: ascii)
            guard let again = try? PyJSONParser.parse(text) else { fatalError("json.dumps output does not parse: \(text)") }
            precondition(again == value, "json.dumps round trip changed the value: \(text)")
        }
        _ = pythonRepr(value)
        _ = pythonStr(value)
    case 1:
        let path = file("lines.jsonl", body)
        try? JSONLReader(path: path).forEach { object, _, _ in _ = object.count }
    case 2:
        let path = file("features.jsonl", body)
        if let reader = try? FeatureFileReader(path: path, idKey: "image_id") {
            if let block = try? reader.readAll() { precondition(block.values.count == block.count * block.dim) }
        }
    case 3:
        let split = body.firstIndex(of: 0) ?? body.count
        let gt = file("gt.jsonl", UnsafeBufferPointer(rebasing: body[..<split]))
        let pred = file("pred.jsonl", UnsafeBufferPointer(rebasing: body[min(split + 1, body.count)...]))
        _ = RecallEvaluation.evaluate(groundTruth: gt, predictions: pred, direction: .textToImage)
        _ = RecallEvaluation.evaluate(groundTruth: gt, predictions: pred, direction: .imageToText)
    default:
        let path = file("annotations.jsonl", body)
        _ = try? AnnotationTransform.transform(input: path)
    }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzJSON($0, size) } ?? 0 })
