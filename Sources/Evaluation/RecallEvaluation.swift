// Recall@1/5/10 as `evaluation.py` (text → image) and `evaluation_tr.py` (image → text) compute and report it,
// including every check they make on a prediction file and the exact message each check reports in
// `{"success": false, ...}` (quirks kept: a non-int `text_id` on the first line reports Python's unbound-variable
// error and on later lines names the *previous* line's id; bools count as ints; unknown or repeated query ids
// are not errors; the missing-id list follows CPython's set order; a blank line is a parse error).
// Also `transform_ir_annotation_to_tr.py`, which turns text → image ground truth into image → text.

import Essentials
import Foundation

/// Lines of a text file as Python's `open(path, encoding="utf-8")` iterates them.
struct PythonTextLines {
    /// The lines, newline characters removed (universal newlines: `\n`, `\r\n`, `\r`).
    var lines: [String]
    /// Set when the file is not valid UTF-8: Python raises `UnicodeDecodeError` (whose `args[0]` is `'utf-8'`)
    /// when its reader decodes the 8 KiB chunk holding the bad byte, so only lines ending before that chunk
    /// are seen first.
    var decodeErrorAfterLine: Int?

    /// Reads `path`; throws the `errno` of a failed open (Python's `OSError.args[0]`).
    static func read(_ path: String) throws -> PythonTextLines {
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw OpenFailure(errno: errno) }
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { close(fd); throw OpenFailure(errno: EISDIR) }
        close(fd)
        guard let data = FileManager.default.contents(atPath: path) else { throw OpenFailure(errno: EIO) }
        let bytes = [UInt8](data)
        var limit = bytes.count
        var decodeError: Int?
        if String(validating: bytes, as: UTF8.self) == nil {
            let bad = firstInvalidUTF8(bytes)
            limit = (bad / 8192) * 8192
            decodeError = 0
        }
        var lines: [String] = []
        var start = 0, k = 0
        while k < bytes.count {
            let c = bytes[k]
            if c == 0x0A || c == 0x0D {
                let next = (c == 0x0D && k + 1 < bytes.count && bytes[k + 1] == 0x0A) ? k + 2 : k + 1
                if next > limit { break }
                lines.append(String(decoding: bytes[start..<k], as: UTF8.self))
                start = next; k = next
                continue
            }
            k += 1
        }
        if decodeError == nil, start < bytes.count { lines.append(String(decoding: bytes[start...], as: UTF8.self)) }
        if decodeError != nil { decodeError = lines.count }
        return PythonTextLines(lines: lines, decodeErrorAfterLine: decodeError)
    }

    static func firstInvalidUTF8(_ b: [UInt8]) -> Int {
        var i = 0
        while i < b.count {
            let c = b[i]
            let n = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0
            if n == 0 || i + n > b.count { return i }
            if n > 1, String(validating: b[i..<(i + n)], as: UTF8.self) == nil { return i }
            i += n
        }
        return b.count
    }

    struct OpenFailure: Error { var errno: Int32 }
}

/// Python's `str.strip()`: removes leading and trailing Unicode whitespace.
func pythonStrip(_ s: String) -> String {
    func isSpace(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }
    let scalars = s.unicodeScalars
    guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return "" }
    let last = scalars.lastIndex(where: { !isSpace($0) })!
    return String(scalars[first...last])
}

/// Recall@K evaluation of a prediction file against ground truth, as the reference's evaluation scripts do it.
package enum RecallEvaluation {
    /// The result: recall figures, or the failure the reference would report.
    package enum Outcome: Equatable {
        /// Fractions (0…1) of queries with a ground-truth id among their first 1, 5 and 10 predictions.
        case success(r1: Double, r5: Double, r10: Double)
        /// The reference's `errorDetail` (a message; an OS error number when a file cannot be opened).
        case failure(PyJSON)
    }

    /// Evaluates `predictions` against `groundTruth` (JSONL files) for `direction`, with K = 10 predictions per query.
    package static func evaluate(groundTruth: String, predictions: String, direction: RetrievalDirection) -> Outcome {
        do {
            let reference = try readReference(groundTruth, direction)
            let submission = try readSubmission(predictions, reference: reference, direction: direction, k: 10)
            var r1 = 0, r5 = 0, r10 = 0
            for (qid, gtValue) in reference.pairs {
                let gt: [PyKey]
                switch gtValue {
                case .array(let items):
                    gt = try items.map { v -> PyKey in
                        guard let k = v.pythonKey else { throw EvalFailure(.string("unhashable type: '\(v.pythonTypeName)'")) }
                        return k
                    }
                case .string: gt = []  // a set of characters: never equal to an int id
                case .object(let o): gt = o.map { PyKey.string($0.key) }
                default: throw EvalFailure(.string("'\(gtValue.pythonTypeName)' object is not iterable"))
                }
                let top = submission[qid]!
                if gt.contains(where: { top.prefix(1).contains($0) }) { r1 += 1 }
                if gt.contains(where: { top.prefix(5).contains($0) }) { r5 += 1 }
                if gt.contains(where: { top.prefix(10).contains($0) }) { r10 += 1 }
            }
            let n = reference.pairs.count
            if n == 0 { throw EvalFailure(.string("float division by zero")) }
            return .success(r1: Double(r1) * 1.0 / Double(n), r5: Double(r5) * 1.0 / Double(n), r10: Double(r10) * 1.0 / Double(n))
        } catch let f as EvalFailure {
            return .failure(f.detail)
        } catch {
            return .failure(.string("\(error)"))
        }
    }

    /// The output JSON the reference writes for `outcome` (no trailing newline, as `json.dump` writes it).
    package static func outputJSON(_ outcome: Outcome) -> String {
        switch outcome {
        case .success(let r1, let r5, let r10):
            let mean = (r1 + r5 + r10) / 3.0
            return pythonDumps(
                .object([
                    ("success", .bool(true)), ("score", .float(mean * 100)),
                    (
                        "scoreJson",
                        .object([
                            ("score", .float(mean * 100)), ("mean_recall", .float(mean * 100)),
                            ("r1", .float(r1 * 100)), ("r5", .float(r5 * 100)), ("r10", .float(r10 * 100)),
                        ])
                    ),
                ]))
        case .failure(let detail):
            return pythonDumps(
                .object([
                    ("errorDetail", detail), ("errorMsg", detail), ("score", .int(0)),
                    ("scoreJson", .object([])), ("success", .bool(false)),
                ]))
        }
    }

    /// The line the reference prints last: `The evaluation finished successfully.` or `The evaluation failed: …`.
    package static func summaryLine(_ outcome: Outcome) -> String {
        switch outcome {
        case .success: return "The evaluation finished successfully."
        case .failure(let d): return "The evaluation failed: \(pythonStr(d))"
        }
    }

    /// Evaluates and writes the reference's output JSON to `output` atomically; returns the outcome.
    @discardableResult
    package static func run(groundTruth: String, predictions: String, output: String, direction: RetrievalDirection) throws -> Outcome {
        let outcome = evaluate(groundTruth: groundTruth, predictions: predictions, direction: direction)
        try AtomicOutput.write(path: output) { try $0.write(outputJSON(outcome)) }
        return outcome
    }

    struct EvalFailure: Error {
        var detail: PyJSON
        init(_ d: PyJSON) { detail = d }
        init(_ s: String) { detail = .string(s) }
    }

    /// An insertion-ordered dict keyed by Python equality.
    struct OrderedDict {
        var pairs: [(PyKey, PyJSON)] = []
        var index: [PyKey: Int] = [:]
        mutating func set(_ k: PyKey, _ v: PyJSON) {
            if let i = index[k] { pairs[i].1 = v } else { index[k] = pairs.count; pairs.append((k, v)) }
        }
    }

    static func lines(_ path: String) throws -> PythonTextLines {
        do { return try PythonTextLines.read(path) } catch let e as PythonTextLines.OpenFailure {
            throw EvalFailure(.int(Int64(e.errno)))
        }
    }

    static func subscriptError(_ v: PyJSON) -> String {
        switch v {
        case .array: return "list indices must be integers or slices, not str"
        case .string: return "string indices must be integers, not 'str'"
        default: return "'\(v.pythonTypeName)' object is not subscriptable"
        }
    }

    /// `read_reference`: `reference[obj[query key]] = obj[list key]` per line (the value is looked up first).
    static func readReference(_ path: String, _ direction: RetrievalDirection) throws -> OrderedDict {
        let file = try lines(path)
        var ref = OrderedDict()
        for (n, raw) in file.lines.enumerated() {
            if let cut = file.decodeErrorAfterLine, n >= cut { break }
            let line = pythonStrip(raw)
            let obj: PyJSON
            do { obj = try PyJSONParser.parse(line) } catch let e as PyJSONSyntaxError {
                throw EvalFailure(e.pythonMessage(in: line))
            }
            guard case .object = obj else { throw EvalFailure(subscriptError(obj)) }
            guard let value = obj[direction.predictionsKey] else { throw EvalFailure(direction.predictionsKey) }
            guard let qid = obj[direction.queryKey] else { throw EvalFailure(direction.queryKey) }
            guard let key = qid.pythonKey else { throw EvalFailure("unhashable type: '\(qid.pythonTypeName)'") }
            ref.set(key, value)
        }
        if file.decodeErrorAfterLine != nil { throw EvalFailure("utf-8") }
        return ref
    }

    /// `read_submission`: every check of the reference, in its order, with its messages.
    static func readSubmission(_ path: String, reference: OrderedDict, direction: RetrievalDirection, k: Int) throws -> [PyKey: [PyKey]] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw EvalFailure("The submission file is not found!") }
        let file = try lines(path)
        let qk = direction.queryKey, pk = direction.predictionsKey
        let tr = direction == .imageToText
        let Q = tr ? "Image_id" : "Text_id", one = tr ? "text_id" : "image_id", what = tr ? "texts" : "images"
        var submission: [PyKey: [PyKey]] = [:]
        var order: [PyKey] = []
        var lastQid: PyJSON?  // evaluation.py's message names `qid`, still holding the previous line's id
        for (n, raw) in file.lines.enumerated() {
            if let cut = file.decodeErrorAfterLine, n >= cut { break }
            let line = pythonStrip(raw)
            let obj: PyJSON
            do { obj = try PyJSONParser.parse(line) } catch {
                throw EvalFailure("Cannot parse this line into json object: \(line)")
            }
            // `"text_id" not in pred_obj`: membership for dicts, lists and strings; a TypeError for the rest.
            switch obj {
            case .object(let o):
                if !o.contains(where: { $0.key == qk }) { throw EvalFailure("There exists one line not containing \(qk): \(line)") }
            case .array(let a):
                if !a.contains(.string(qk)) { throw EvalFailure("There exists one line not containing \(qk): \(line)") }
                throw EvalFailure(subscriptError(obj))
            case .string(let s):
                if !s.contains(qk) { throw EvalFailure("There exists one line not containing \(qk): \(line)") }
                throw EvalFailure(subscriptError(obj))
            default:
                throw EvalFailure("argument of type '\(obj.pythonTypeName)' is not iterable")
            }
            let idValue = obj[qk]!
            if !idValue.isPythonInt {
                if tr {
                    throw EvalFailure(
                        "Found an invalid image_id \(pythonStr(idValue)), it should be an integer (not string), please check your schema")
                }
                guard let prev = lastQid else {
                    throw EvalFailure("cannot access local variable 'qid' where it is not associated with a value")
                }
                throw EvalFailure("Found an invalid text_id \(pythonStr(prev)), it should be an integer (not string), please check your schema")
            }
            let qid = pythonStr(idValue)
            lastQid = idValue
            guard let predValue = obj[pk] else { throw EvalFailure("There exists one line not containing the predicted \(pk): \(line)") }
            guard case .array(let preds) = predValue else {
                throw EvalFailure("The \(pk) field of \(qk) \(qid) is not a list, please check your schema")
            }
            if preds.count != k {
                throw EvalFailure("\(Q) \(qid) has wrong number of predicted \(pk)! Require \(k), but \(preds.count) founded.")
            }
            for (rank, p) in preds.enumerated() where !p.isPythonInt {
                throw EvalFailure(
                    "\(Q) \(qid) has an invalid predicted \(one) \(pythonStr(p)) at rank \(rank + 1), it should be an integer (not string), please check your schema"
                )
            }
            let keys = preds.map { $0.pythonKey! }
            if Set(keys).count != k {
                throw EvalFailure("\(Q) \(qid) has duplicate topk \(what) in your prediction. Pleace check again!")
            }
            let key = idValue.pythonKey!
            if submission.updateValue(keys, forKey: key) == nil { order.append(key) }
        }
        if file.decodeErrorAfterLine != nil { throw EvalFailure("utf-8") }
        let missing = pythonSetDifferenceOrder(reference: reference.pairs.map { $0.0 }, predicted: order)
        if !missing.isEmpty {
            let names = missing.map { k -> String in
                switch k {
                case .int(let v): return String(v)
                case .big(let s): return s
                case .string(let s): return s
                case .none: return "None"
                case .float(let bits): return PythonJSON.repr(Double(bitPattern: bits))
                }
            }
            throw EvalFailure("The following \(qk)s have no prediction in your submission, please check again: \(names.joined(separator: ", "))")
        }
        return submission
    }
}

/// `transform_ir_annotation_to_tr.py`: text → image ground truth turned into image → text.
package enum AnnotationTransform {
    /// Where the reference writes the result: `input.replace(".jsonl", "") + ".tr.jsonl"` (every occurrence replaced).
    package static func outputPath(forInput input: String) -> String {
        input.replacingOccurrences(of: ".jsonl", with: "") + ".tr.jsonl"
    }

    /// Reads `input` (`{"text_id", "image_ids"}` lines) and returns the lines `{"image_id": i, "text_ids": [...]}`,
    /// images in first-mention order, texts in file order.
    package static func transform(input: String) throws -> [String] {
        let file: PythonTextLines
        do { file = try PythonTextLines.read(input) } catch let e as PythonTextLines.OpenFailure {
            throw FileError(path: input, reason: String(cString: strerror(e.errno)))
        }
        var order: [(PyJSON, [PyJSON])] = []
        var index: [PyKey: Int] = [:]
        for (n, raw) in file.lines.enumerated() {
            if let cut = file.decodeErrorAfterLine, n >= cut { break }
            func bad(_ r: String) -> RetrievalError { .malformedLine(path: input, line: n + 1, reason: r) }
            let line = pythonStrip(raw)
            let obj: PyJSON
            do { obj = try PyJSONParser.parse(line) } catch let e as PyJSONSyntaxError {
                throw bad("invalid JSON: \(e.pythonMessage(in: line))")
            }
            guard case .object = obj else { throw bad("not a JSON object") }
            guard let tid = obj["text_id"] else { throw bad("no \"text_id\" key") }
            guard let images = obj["image_ids"] else { throw bad("no \"image_ids\" key") }
            guard case .array(let ids) = images else { throw bad("\"image_ids\" is not a list") }
            for iid in ids {
                guard let key = iid.pythonKey else { throw bad("image id \(pythonRepr(iid)) is not hashable") }
                if let at = index[key] { order[at].1.append(tid) } else { index[key] = order.count; order.append((iid, [tid])) }
            }
        }
        if file.decodeErrorAfterLine != nil {
            throw RetrievalError.malformedLine(path: input, line: (file.decodeErrorAfterLine ?? 0) + 1, reason: "not valid UTF-8")
        }
        return order.map { pythonDumps(.object([("image_id", $0.0), ("text_ids", .array($0.1))])) }
    }

    /// Transforms `input` and writes the result beside it atomically; returns the output path.
    @discardableResult
    package static func run(input: String) throws -> String {
        let lines = try transform(input: input)
        let out = outputPath(forInput: input)
        try AtomicOutput.write(path: out) { sink in for l in lines { try sink.write(l + "\n") } }
        return out
    }
}
