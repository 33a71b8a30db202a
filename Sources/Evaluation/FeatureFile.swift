// Feature files as `extract_features.py` writes them: one JSON object per line, `{"image_id": ID, "feature":
// [floats]}` (or `text_id`). The reference reads them with `json.loads` (text → double) and then
// `np.array(..., dtype=np.float32)` / `torch.tensor(..., dtype=torch.float)` (double → float, round to nearest
// even). Parsing dominates a top-k run, so the reader maps the file (or streams it when it cannot be mapped, e.g. a
// pipe), finds lines with `memchr`, and parses the lines of a block on all compute threads straight into the
// block's matrix. The numbers of a `"feature"` array go through a C loop (`CKernels/feature_numbers.c`) that gives
// the reference's float for every decimal; only a malformed array takes the Swift loop, which names the fault.

import CKernels
import Essentials
import Foundation
import Synchronization
import Tensors

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
    /// The file's size in bytes (0 for a pipe).
    package let fileSize: Int64

    private let handle: FileHandle
    /// A regular file is mapped whole: no copy, and the parsing threads fault its pages in side by side.
    private var mapping: UnsafeMutableRawPointer?
    private var mappingSize = 0
    /// Otherwise bytes are read into `buffer` in chunks of `chunkBytes`, keeping the unparsed tail.
    private var buffer: UnsafeMutablePointer<UInt8>?
    private var bufferCapacity = 0
    private var bufferCount = 0
    private let chunkBytes: Int
    /// Start of the unconsumed bytes in the current window (the mapping or the buffer).
    private var position = 0
    /// Mapped bytes below this offset have been given back to the kernel.
    private var released = 0
    private var eof = false
    private var lineNumber = 0

    /// Opens `path`; rows must carry `idKey` and `"feature"`; `dim`, when given, is the length every feature must have.
    package convenience init(path: String, idKey: String, dim: Int? = nil) throws {
        try self.init(path: path, idKey: idKey, dim: dim, streamChunkBytes: nil)
    }

    /// As `init(path:idKey:dim:)`; with `streamChunkBytes` the file is read in chunks of that size instead of mapped.
    init(path: String, idKey: String, dim: Int?, streamChunkBytes: Int?) throws {
        self.path = path
        self.idKey = idKey
        self.dim = dim
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw FileError(path: path, reason: FileManager.default.fileExists(atPath: path) ? "cannot be opened" : "no such file")
        }
        handle = h
        chunkBytes = max(1, streamChunkBytes ?? 8 << 20)
        var st = stat()
        let isRegular = fstat(h.fileDescriptor, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        fileSize = isRegular ? Int64(st.st_size) : 0
        if isRegular && streamChunkBytes == nil {
            if st.st_size == 0 {
                eof = true
            } else if let m = mmap(nil, Int(st.st_size), PROT_READ, MAP_PRIVATE, h.fileDescriptor, 0), m != MAP_FAILED {
                mapping = m
                mappingSize = Int(st.st_size)
                eof = true
            }
        }
    }

    deinit {
        if let mapping { munmap(mapping, mappingSize) }
        buffer?.deallocate()
        try? handle.close()
    }

    /// The bytes read so far and not yet dropped: the whole mapping, or the buffer.
    private var window: UnsafePointer<UInt8>? {
        if let mapping { return UnsafePointer(mapping.assumingMemoryBound(to: UInt8.self)) }
        return buffer.map { UnsafePointer($0) }
    }
    private var windowCount: Int { mapping != nil ? mappingSize : bufferCount }

    /// Moves the unconsumed bytes to the buffer's start and reads one more chunk; sets `eof` at the end.
    private func readMore() throws {
        if position > 0 {
            if let buffer { memmove(buffer, buffer + position, bufferCount - position) }
            bufferCount -= position
            position = 0
        }
        if bufferCapacity - bufferCount < chunkBytes {
            let capacity = max(2 * bufferCapacity, bufferCount + chunkBytes)
            let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
            if let buffer {
                grown.update(from: buffer, count: bufferCount)
                buffer.deallocate()
            }
            buffer = grown
            bufferCapacity = capacity
        }
        while true {
            let n = read(handle.fileDescriptor, buffer! + bufferCount, chunkBytes)
            if n > 0 { bufferCount += n; return }
            if n == 0 { eof = true; return }
            if errno != EINTR { throw FileError(path: path, reason: "read failed: \(String(cString: strerror(errno)))") }
        }
    }

    /// Reads the next block of at most `maxRows` rows, or nil at the end of the file.
    package func nextBlock(maxRows: Int) throws -> FeatureBlock? {
        precondition(maxRows > 0)
        // Complete lines as (start, end) offsets from the block's first byte; a refill moves that byte, not the offsets.
        var ranges: [(Int, Int)] = []
        ranges.reserveCapacity(min(maxRows, 1 << 16))
        var scan = position
        while ranges.count < maxRows {
            if let w = window, scan < windowCount, let nl = memchr(w + scan, 0x0A, windowCount - scan) {
                let end = UnsafeRawPointer(nl) - UnsafeRawPointer(w)
                ranges.append((scan - position, end - position))
                scan = end + 1
                continue
            }
            if eof {
                if scan < windowCount { ranges.append((scan - position, windowCount - position)); scan = windowCount }
                break
            }
            let before = position
            try readMore()
            scan -= before - position
        }
        if ranges.isEmpty { return nil }
        let firstLine = lineNumber + 1
        lineNumber += ranges.count
        let block = try parse(window! + position, ranges: ranges, firstLine: firstLine)
        bytesRead += Int64(scan - position)
        position = scan
        releaseParsedPages()
        return block
    }

    /// Gives the kernel back the mapped pages already parsed, so a large file does not stay resident as a whole.
    private func releaseParsedPages() {
        guard let mapping else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let upTo = position / page * page
        if upTo > released {
            _ = madvise(mapping + released, upTo - released, MADV_DONTNEED)
            released = upTo
        }
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

    private func parse(_ base: UnsafePointer<UInt8>, ranges: [(Int, Int)], firstLine: Int) throws -> FeatureBlock {
        let n = ranges.count
        if dim == nil {
            // The first row fixes the width (as np.array would reject a ragged list). A value takes at least two bytes
            // with its separator, which bounds the count.
            let r = ranges[0]
            let probe = UnsafeMutablePointer<Float>.allocate(capacity: (r.1 - r.0) / 2 + 1)
            defer { probe.deallocate() }
            dim = try parseLine(base + r.0, r.1 - r.0, line: firstLine, into: probe, capacity: (r.1 - r.0) / 2 + 1, expected: nil).values
        }
        let d = dim!
        var ids = [String](repeating: "", count: n)
        // Every row is written in full before the block is returned (an error discards it).
        var values = [Float](unsafeUninitializedCapacity: n * d) { _, count in count = n * d }
        var errors = [RetrievalError?](repeating: nil, count: n)
        ids.withUnsafeMutableBufferPointer { idp in
            values.withUnsafeMutableBufferPointer { vp in
                errors.withUnsafeMutableBufferPointer { ep in
                    let idp = idp, vp = vp, ep = ep
                    // Threads take rows a few at a time rather than a fixed half each: on a shared machine one
                    // thread may be descheduled, and the others then parse its rows.
                    let threads = n * d < 1 << 16 ? 1 : min(ComputeThreads.count, n)
                    let grain = max(1, min(64, n / (threads * 16)))
                    let nextRow = Atomic(0)
                    concurrentPerform(iterations: threads) { _ in
                        while case let first = nextRow.add(grain, ordering: .relaxed).oldValue, first < n {
                            for row in first..<min(first + grain, n) {
                                let r = ranges[row], line = firstLine + row
                                do {
                                    idp[row] = try self.parseLine(
                                        base + r.0, r.1 - r.0, line: line, into: vp.baseAddress! + row * d, capacity: d, expected: d
                                    ).id
                                } catch let e as RetrievalError { ep[row] = e } catch {
                                    ep[row] = .malformedLine(path: self.path, line: line, reason: "\(error)")
                                }
                            }
                        }
                    }
                }
            }
        }
        if let e = errors.first(where: { $0 != nil }) { throw e! }
        return FeatureBlock(ids: ids, values: values, dim: d, lines: Array(firstLine..<(firstLine + n)))
    }

    /// Parses one line `{"<idKey>": ID, "feature": [...]}`: the id (as `json.dumps` renders it) and the number of
    /// values, of which the first `capacity` are stored at `out`; with `expected`, a different number is an error.
    private func parseLine(
        _ p: UnsafePointer<UInt8>, _ count: Int, line: Int, into out: UnsafeMutablePointer<Float>, capacity: Int, expected: Int?
    ) throws -> (id: String, values: Int) {
        var parser = PyJSONParser(p: p, end: count)
        func bad(_ reason: String) -> RetrievalError { .malformedLine(path: path, line: line, reason: reason) }
        // Python strips the line first; JSON whitespace covers what a feature file holds (`\r` of CRLF included).
        parser.skipSpace()
        guard parser.i < count, p[parser.i] == UInt8(ascii: "{") else { throw bad("not a JSON object") }
        parser.i += 1
        var id: PyJSON?
        var values: Int?
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
                        // A repeated key: the last one wins, as in Python.
                        values = try parseFloatArray(&parser, into: out, capacity: capacity, line: line)
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
        guard let values else { throw bad("no \"feature\" key (id \(pythonStr(id)))") }
        if let expected, values != expected {
            throw RetrievalError.dimensionMismatch(path: path, line: line, id: pythonStr(id), expected: expected, found: values)
        }
        if id.pythonKey == nil { throw bad("id \(pythonRepr(id)) is not hashable") }
        return (pythonDumps(id), values)
    }

    /// Parses `[number, ...]` at the parser's position; stores the first `capacity` values at `out` and returns how
    /// many there are.
    private func parseFloatArray(
        _ parser: inout PyJSONParser, into out: UnsafeMutablePointer<Float>, capacity: Int, line: Int
    ) throws -> Int {
        guard parser.i < parser.end, parser.p[parser.i] == UInt8(ascii: "[") else {
            throw RetrievalError.malformedLine(path: path, line: line, reason: "\"feature\" is not a list of numbers")
        }
        do {
            let (count, next) = try parseFeatureArray(parser.p, from: parser.i, end: parser.end, into: out, capacity: capacity)
            parser.i = next
            return count
        } catch .nonNumber(let offset) {
            throw RetrievalError.malformedLine(path: path, line: line, reason: "\"feature\" holds a non-number at column \(offset + 1)")
        } catch .expectingDelimiter(let offset) {
            parser.i = offset
            throw parser.fail("Expecting ',' delimiter")
        }
    }
}

/// What is wrong with a feature array, for the reader's message.
enum FeatureArrayFault: Error, Equatable {
    /// No number starts at this byte offset (after whitespace).
    case nonNumber(offset: Int)
    /// Neither `,` nor `]` at this byte offset (after whitespace), or the line ends there.
    case expectingDelimiter(offset: Int)
}

/// Parses the JSON array of numbers whose `[` is at `p[start]` (whitespace allowed around numbers and commas),
/// reading no byte at or past `end`: stores the first `capacity` values at `out`, returns how many the array holds
/// and the index after its `]`.
func parseFeatureArray(
    _ p: UnsafePointer<UInt8>, from start: Int, end: Int, into out: UnsafeMutablePointer<Float>, capacity: Int
) throws(FeatureArrayFault) -> (count: Int, next: Int) {
    // The C loop takes every well-formed array (one pass per number of the file); for anything else the loop
    // below, which accepts the same grammar, finds the fault.
    let powers = PowersOfFive.shared
    var next = 0
    let count = cnclip_parse_feature_array(p, start, end, out, capacity, powers.significands, powers.exponents, &next)
    if count >= 0 { return (count, next) }
    return try parseFeatureArrayCarefully(p, from: start, end: end, into: out, capacity: capacity)
}

/// `parseFeatureArray` one byte at a time in Swift: the grammar the C loop must agree with, and the fault's place.
func parseFeatureArrayCarefully(
    _ p: UnsafePointer<UInt8>, from start: Int, end: Int, into out: UnsafeMutablePointer<Float>, capacity: Int
) throws(FeatureArrayFault) -> (count: Int, next: Int) {
    precondition(start < end && p[start] == UInt8(ascii: "["))
    func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
    var i = start + 1
    while i < end, isSpace(p[i]) { i += 1 }
    if i < end, p[i] == UInt8(ascii: "]") { return (0, i + 1) }
    var n = 0
    while true {
        while i < end, isSpace(p[i]) { i += 1 }
        guard let (f, next) = parseFeatureFloat(p, from: i, end: end) else { throw .nonNumber(offset: i) }
        if n < capacity { out[n] = f }
        n += 1
        i = next
        while i < end, isSpace(p[i]) { i += 1 }
        guard i < end else { throw .expectingDelimiter(offset: i) }
        if p[i] == UInt8(ascii: ",") { i += 1; continue }
        if p[i] == UInt8(ascii: "]") { return (n, i + 1) }
        throw .expectingDelimiter(offset: i)
    }
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
