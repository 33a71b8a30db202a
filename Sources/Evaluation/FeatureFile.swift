// Feature files as `extract_features.py` writes them: one JSON object per line, `{"image_id": ID, "feature":
// [floats]}` (or `text_id`). The reference reads them with `json.loads` (text → double) and then
// `np.array(..., dtype=np.float32)` / `torch.tensor(..., dtype=torch.float)` (double → float, round to nearest
// even). Our number parser is hand-written for speed (parsing dominates a top-k run) and gives that same float:
// see `parseFeatureFloat`.

import Essentials
import Foundation
import Tensors

/// Errors reading or writing feature, annotation and prediction files; each names the file and line.
package enum RetrievalError: UserFacingError, Equatable {
    /// A line is not what the format needs (bad JSON, a missing key, a wrong type).
    case malformedLine(path: String, line: Int, reason: String)
    /// A feature's length differs from the first feature's.
    case dimensionMismatch(path: String, line: Int, id: String, expected: Int, found: Int)
    /// An argument is out of range.
    case invalidArgument(String)

    /// A one-line message for the user.
    package var description: String {
        switch self {
        case .malformedLine(let p, let l, let r): return "\(p):\(l): \(r)"
        case .dimensionMismatch(let p, let l, let id, let e, let f):
            return "\(p):\(l): feature of id \(id) has \(f) values, expected \(e) (as the first feature read)"
        case .invalidArgument(let r): return r
        }
    }
}

/// A block of features read from a file: ids (as `json.dumps` writes them) and a row-major `[count, dim]` matrix.
package struct FeatureBlock: Sendable {
    /// Each row's id, rendered as Python's `json.dumps` renders it (what prediction files echo).
    package var ids: [String]
    /// The features, `[count, dim]` row-major.
    package var values: [Float]
    /// Values per feature.
    package var dim: Int
    /// Rows in the block.
    package var count: Int { ids.count }
    /// File line number (1-based) of each row, for error messages.
    package var lines: [Int]
}

/// Streams a feature JSONL file in blocks of rows, parsing lines on all compute threads.
package final class FeatureFileReader {
    /// The file read.
    package let path: String
    /// The id key: `"image_id"` or `"text_id"`.
    package let idKey: String
    /// Feature length, known after the first row (or given up front to check against).
    package private(set) var dim: Int?
    /// Bytes consumed so far (for progress).
    package private(set) var bytesRead: Int64 = 0
    /// The file's size in bytes.
    package let fileSize: Int64

    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var eof = false
    private var lineNumber = 0

    /// Opens `path`; rows must carry `idKey` and `"feature"`; `dim`, when given, is the length every feature must have.
    package init(path: String, idKey: String, dim: Int? = nil) throws {
        self.path = path
        self.idKey = idKey
        self.dim = dim
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw FileError(path: path, reason: FileManager.default.fileExists(atPath: path) ? "cannot be opened" : "no such file")
        }
        handle = h
        let attrs = try? FileManager.default.attributesOfItem(atPath: path)
        fileSize = (attrs?[.size] as? NSNumber)?.int64Value ?? 0
    }

    deinit { try? handle.close() }

    /// Reads the next block of at most `maxRows` rows, or nil at the end of the file.
    package func nextBlock(maxRows: Int) throws -> FeatureBlock? {
        precondition(maxRows > 0)
        // Gather complete lines (byte ranges within `buffer`).
        var ranges: [(Int, Int)] = []
        ranges.reserveCapacity(min(maxRows, 1 << 16))
        var scan = bufferStart
        while ranges.count < maxRows {
            if let nl = buffer[scan...].firstIndex(of: 0x0A) {
                ranges.append((scan, nl))
                scan = nl + 1
                continue
            }
            if eof {
                if scan < buffer.count { ranges.append((scan, buffer.count)); scan = buffer.count }
                break
            }
            // Compact and read more: keep the partial line.
            let keepFrom = ranges.first?.0 ?? scan
            if keepFrom > 0 {
                buffer.removeSubrange(0..<keepFrom)
                ranges = ranges.map { ($0.0 - keepFrom, $0.1 - keepFrom) }
                scan -= keepFrom
                bufferStart = 0
            }
            let chunk: Data
            do { chunk = try handle.read(upToCount: 8 << 20) ?? Data() } catch {
                throw FileError(path: path, reason: "read failed: \(error.localizedDescription)")
            }
            if chunk.isEmpty { eof = true } else { buffer.append(contentsOf: chunk) }
        }
        if ranges.isEmpty { return nil }
        bytesRead += Int64(scan - (ranges.first?.0 ?? scan))
        bufferStart = scan
        let firstLine = lineNumber + 1
        lineNumber += ranges.count
        return try parse(ranges: ranges, firstLine: firstLine)
    }

    /// Reads every remaining row.
    package func readAll() throws -> FeatureBlock {
        var all = FeatureBlock(ids: [], values: [], dim: dim ?? 0, lines: [])
        while let b = try nextBlock(maxRows: 1 << 15) {
            all.ids += b.ids; all.values += b.values; all.lines += b.lines; all.dim = b.dim
        }
        if let dim { all.dim = dim }
        return all
    }

    private func parse(ranges: [(Int, Int)], firstLine: Int) throws -> FeatureBlock {
        let n = ranges.count
        return try buffer.withUnsafeBufferPointer { buf -> FeatureBlock in
            let base = buf.baseAddress!
            if dim == nil {
                // The first row fixes the width (as np.array would reject a ragged list).
                var probe = [Float]()
                let r = ranges[0]
                _ = try parseLine(base + r.0, r.1 - r.0, line: firstLine, into: &probe, expected: nil)
                dim = probe.count
            }
            let d = dim!
            var ids = [String](repeating: "", count: n)
            var values = [Float](repeating: 0, count: n * d)
            var errors = [RetrievalError?](repeating: nil, count: n)
            ids.withUnsafeMutableBufferPointer { idp in
                values.withUnsafeMutableBufferPointer { vp in
                    errors.withUnsafeMutableBufferPointer { ep in
                        let idp = idp, vp = vp, ep = ep
                        parallelFor(n, cost: d * 8) { rows in
                            var scratch = [Float]()
                            scratch.reserveCapacity(d)
                            for row in rows {
                                let r = ranges[row]
                                do {
                                    scratch.removeAll(keepingCapacity: true)
                                    idp[row] = try self.parseLine(base + r.0, r.1 - r.0, line: firstLine + row, into: &scratch, expected: d)
                                    for k in 0..<d { vp[row * d + k] = scratch[k] }
                                } catch let e as RetrievalError { ep[row] = e } catch {
                                    ep[row] = .malformedLine(path: self.path, line: firstLine + row, reason: "\(error)")
                                }
                            }
                        }
                    }
                }
            }
            if let e = errors.first(where: { $0 != nil }) { throw e! }
            return FeatureBlock(ids: ids, values: values, dim: d, lines: Array(firstLine..<(firstLine + n)))
        }
    }

    /// Parses one line `{"<idKey>": ID, "feature": [...]}`; returns the rendered id and appends the floats to `out`.
    private func parseLine(_ p: UnsafePointer<UInt8>, _ count: Int, line: Int, into out: inout [Float], expected: Int?) throws -> String {
        var parser = PyJSONParser(p: p, end: count)
        func bad(_ reason: String) -> RetrievalError { .malformedLine(path: path, line: line, reason: reason) }
        // Python strips the line first; JSON whitespace covers what a feature file holds (`\r` of CRLF included).
        parser.skipSpace()
        guard parser.i < count, p[parser.i] == UInt8(ascii: "{") else { throw bad("not a JSON object") }
        parser.i += 1
        var id: PyJSON?
        var sawFeature = false
        do {
            parser.skipSpace()
            if parser.i < count, p[parser.i] == UInt8(ascii: "}") {
                parser.i += 1
            } else {
                while true {
                    parser.skipSpace()
                    guard parser.i < count, p[parser.i] == UInt8(ascii: "\"") else {
                        throw parser.fail("Expecting property name enclosed in double quotes")
                    }
                    let key = try parser.string()
                    parser.skipSpace()
                    guard parser.i < count, p[parser.i] == UInt8(ascii: ":") else { throw parser.fail("Expecting ':' delimiter") }
                    parser.i += 1
                    parser.skipSpace()
                    if key == "feature" {
                        out.removeAll(keepingCapacity: true)  // a repeated key: the last one wins, as in Python
                        try parseFloatArray(&parser, into: &out, line: line)
                        sawFeature = true
                    } else if key == idKey {
                        id = try parser.value()
                    } else {
                        _ = try parser.value()
                    }
                    parser.skipSpace()
                    guard parser.i < count else { throw parser.fail("Expecting ',' delimiter") }
                    if p[parser.i] == UInt8(ascii: ",") { parser.i += 1; continue }
                    if p[parser.i] == UInt8(ascii: "}") { parser.i += 1; break }
                    throw parser.fail("Expecting ',' delimiter")
                }
            }
            parser.skipSpace()
            if parser.i != count { throw parser.fail("Extra data") }
        } catch let e as PyJSONSyntaxError {
            throw bad("invalid JSON: \(e.reason) at column \(e.offset + 1)")
        }
        guard let id else { throw bad("no \"\(idKey)\" key") }
        guard sawFeature else { throw bad("no \"feature\" key (id \(pythonStr(id)))") }
        if let expected, out.count != expected {
            throw RetrievalError.dimensionMismatch(path: path, line: line, id: pythonStr(id), expected: expected, found: out.count)
        }
        if id.pythonKey == nil { throw bad("id \(pythonRepr(id)) is not hashable") }
        return pythonDumps(id)
    }

    private func parseFloatArray(_ parser: inout PyJSONParser, into out: inout [Float], line: Int) throws {
        let p = parser.p, end = parser.end
        guard parser.i < end, p[parser.i] == UInt8(ascii: "[") else {
            throw RetrievalError.malformedLine(path: path, line: line, reason: "\"feature\" is not a list of numbers")
        }
        parser.i += 1
        parser.skipSpace()
        if parser.i < end, p[parser.i] == UInt8(ascii: "]") { parser.i += 1; return }
        while true {
            parser.skipSpace()
            guard let (f, next) = parseFeatureFloat(p, from: parser.i, end: end) else {
                throw RetrievalError.malformedLine(path: path, line: line, reason: "\"feature\" holds a non-number at column \(parser.i + 1)")
            }
            out.append(f)
            parser.i = next
            parser.skipSpace()
            guard parser.i < end else { throw parser.fail("Expecting ',' delimiter") }
            if p[parser.i] == UInt8(ascii: ",") { parser.i += 1; continue }
            if p[parser.i] == UInt8(ascii: "]") { parser.i += 1; return }
            throw parser.fail("Expecting ',' delimiter")
        }
    }
}

/// Exact powers of ten as doubles (10^0 … 10^22 are exactly representable).
private let exactPowersOfTen: [Double] = (0...22).map { k in (0..<k).reduce(1.0) { v, _ in v * 10 } }

/// Parses one JSON number (or `NaN`/`Infinity`/`-Infinity`) at `p[from...]` to the float32 Python + NumPy give:
/// `float32(float(text))`. Returns the value and the index after it, or nil when no number starts there.
///
/// Fast path: up to 19 significant digits into an integer `w`, then `w × 10^e` in double. With `w < 2^53` and
/// `|e| ≤ 22` that double is exactly rounded (one rounding of exact operands). Otherwise it is within ~2 ulp of
/// the true value, and rounding it to float is still exact unless it lies within a few ulps of a midpoint between
/// two floats; those rare cases (and long or far-exponent numbers) go to `strtod`.
@inline(__always)
package func parseFeatureFloat(_ p: UnsafePointer<UInt8>, from start: Int, end: Int) -> (Float, Int)? {
    var i = start
    guard i < end else { return nil }
    var neg = false
    if p[i] == UInt8(ascii: "-") { neg = true; i += 1; guard i < end else { return nil } }
    if p[i] == UInt8(ascii: "N") || p[i] == UInt8(ascii: "I") {
        let word: [UInt8] = p[i] == UInt8(ascii: "N") ? Array("NaN".utf8) : Array("Infinity".utf8)
        if neg && word.count == 3 { return nil }
        guard end - i >= word.count, (0..<word.count).allSatisfy({ p[i + $0] == word[$0] }) else { return nil }
        return (word.count == 3 ? .nan : (neg ? -.infinity : .infinity), i + word.count)
    }
    guard p[i] >= 0x30, p[i] <= 0x39 else { return nil }
    var w: UInt64 = 0, digits = 0, exp10 = 0, truncated = false
    if p[i] == 0x30 {
        i += 1
    } else {
        while i < end, p[i] >= 0x30, p[i] <= 0x39 {
            if digits < 19 { w = w &* 10 &+ UInt64(p[i] - 0x30); digits += 1 } else { exp10 += 1; if p[i] != 0x30 { truncated = true } }
            i += 1
        }
    }
    if i + 1 < end, p[i] == UInt8(ascii: "."), p[i + 1] >= 0x30, p[i + 1] <= 0x39 {
        i += 1
        while i < end, p[i] >= 0x30, p[i] <= 0x39 {
            if digits < 19 {
                if w == 0 && p[i] == 0x30 { exp10 -= 1 } else { w = w &* 10 &+ UInt64(p[i] - 0x30); digits += 1; exp10 -= 1 }
            } else if p[i] != 0x30 {
                truncated = true
            }
            i += 1
        }
    }
    if i < end, p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E") {
        var j = i + 1, eneg = false, e = 0
        if j < end, p[j] == UInt8(ascii: "+") || p[j] == UInt8(ascii: "-") { eneg = p[j] == UInt8(ascii: "-"); j += 1 }
        if j < end, p[j] >= 0x30, p[j] <= 0x39 {
            while j < end, p[j] >= 0x30, p[j] <= 0x39 { if e < 100_000 { e = e * 10 + Int(p[j] - 0x30) }; j += 1 }
            exp10 += eneg ? -e : e
            i = j
        }
    }
    if w == 0 && !truncated { return (neg ? -0.0 : 0.0, i) }
    if !truncated && exp10 >= -22 && exp10 <= 22 {
        let dw = Double(w)
        let d = exp10 >= 0 ? dw * exactPowersOfTen[exp10] : dw / exactPowersOfTen[-exp10]
        if w < (1 << 53) { let f = Float(d); return (neg ? -f : f, i) }
        // d carries at most two roundings (of w, then of the product): safe unless near a float midpoint.
        let f = Float(d)
        if f.isFinite && f != 0 {
            let fd = Double(f)
            let lo = (fd + Double(f.nextDown)) * 0.5, hi = (fd + Double(f.nextUp)) * 0.5
            let tol = 8 * d.ulp
            if d - lo > tol && hi - d > tol { return (neg ? -f : f, i) }
        }
    }
    let f = Float(strtodBytes(p + start, i - start))
    return (f, i)
}

/// Writes feature JSONL as the reference does (`json.dumps({"image_id": id, "feature": tensor.tolist()})` per line).
package struct FeatureFileWriter {
    /// Renders one line: `{"<idKey>": <id>, "feature": [<floats as Python reprs of their doubles>]}` and a newline.
    package static func line(idKey: String, id: PyJSON, feature: UnsafeBufferPointer<Float>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(feature.count * 22 + 40)
        out.append(UInt8(ascii: "{"))
        PythonJSON.appendString(idKey, into: &out)
        out += Array(": ".utf8)
        pythonDumps(id, into: &out)
        out += Array(", \"feature\": [".utf8)
        for (k, f) in feature.enumerated() {
            if k > 0 { out += [0x2C, 0x20] }
            pythonDumps(.float(Double(f)), into: &out)
        }
        out += Array("]}\n".utf8)
        return out
    }

    /// Writes all rows of `[ids.count, dim]` `features` to `path` atomically.
    package static func write(path: String, idKey: String, ids: [PyJSON], features: [Float], dim: Int) throws {
        precondition(features.count == ids.count * dim)
        try AtomicOutput.write(path: path) { sink in
            try features.withUnsafeBufferPointer { fp in
                for (r, id) in ids.enumerated() {
                    try sink.write(line(idKey: idKey, id: id, feature: UnsafeBufferPointer(rebasing: fp[(r * dim)..<((r + 1) * dim)])))
                }
            }
        }
    }
}

/// One line of a feature file, formatted as the reference's `json.dumps({"image_id": id, "feature": [...]})` writes it.
package enum FeatureLine {
    /// `{"<idKey>": <id>, "feature": [f0, f1, …]}` with each float32 written as Python's `repr` of its float64 value.
    ///
    /// Python prints `float(np.float32(x))` with the shortest repr that round-trips the float64 (`PythonJSON.repr`).
    package static func format(idKey: String, id: String, feature: UnsafeBufferPointer<Float>) -> String {
        var line = "{\"\(idKey)\": \(id), \"feature\": ["
        line.reserveCapacity(24 + feature.count * 22)
        for (i, f) in feature.enumerated() {
            if i > 0 { line += ", " }
            line += pythonFloatRepr(f)
        }
        return line + "]}\n"
    }

    /// Python's `repr(float(x))` for a float32 `x` (`NaN`/`Infinity` as `json.dumps` writes them).
    package static func pythonFloatRepr(_ f: Float) -> String {
        PythonJSON.number(Double(f))
    }
}
