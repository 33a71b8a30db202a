// Streaming line readers for the dataset's TSV and JSONL files. Image TSVs run to many gigabytes, so lines are
// handed out one at a time from a fixed read buffer and never collected; every line carries its 1-based number
// so errors can name `file:line`.

import Essentials
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Reads a file line by line (`\n`-terminated; a trailing `\r` is dropped) without loading it whole.
package struct LineReader {
    /// The file read.
    package let path: String
    /// Bytes read per `read(2)` call.
    package var chunkSize = 1 << 20

    /// A reader for the file at `path`.
    package init(path: String) { self.path = path }

    /// The file's size in bytes (for progress).
    package var fileSize: Int64 {
        get throws {
            do { return ((try FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value ?? 0 } catch {
                throw FileError(path: path, reason: "cannot read: \(error.localizedDescription)")
            }
        }
    }

    /// Calls `body` with each line's bytes (valid only during the call), its 1-based number and the bytes read so far.
    package func forEachLine(_ body: (_ line: UnsafeBufferPointer<UInt8>, _ number: Int, _ offset: Int64) throws -> Void) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var start = 0, end = 0, number = 0
        var consumed: Int64 = 0
        var eof = false
        while true {
            // Find the next newline in the buffered bytes; refill (and grow for very long lines) when there is none.
            let newline: Int? = buffer.withUnsafeBufferPointer { b in
                guard start < end, let p = memchr(b.baseAddress! + start, 0x0A, end - start) else { return nil }
                return b.baseAddress!.distance(to: p.assumingMemoryBound(to: UInt8.self))
            }
            if let nl = newline {
                number += 1
                consumed += Int64(nl + 1 - start)
                var stop = nl
                if stop > start && buffer[stop - 1] == 0x0D { stop -= 1 }
                try buffer.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[start..<stop]), number, consumed) }
                start = nl + 1
                continue
            }
            if eof {
                if start < end {
                    number += 1
                    consumed += Int64(end - start)
                    var stop = end
                    if buffer[stop - 1] == 0x0D { stop -= 1 }
                    try buffer.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[start..<stop]), number, consumed) }
                }
                return
            }
            if start > 0 {
                buffer.withUnsafeMutableBufferPointer { b in
                    _ = memmove(b.baseAddress!, b.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            }
            if end == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + end, $0.count - end) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { eof = true } else { end += n }
        }
    }
}

/// ASCII whitespace as Python's `str.strip()` removes it from our inputs (space, \t, \n, \v, \f, \r).
@inline(__always) func isASCIISpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }

/// `line` without leading and trailing ASCII whitespace.
func stripped(_ line: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
    var lo = 0, hi = line.count
    while lo < hi && isASCIISpace(line[lo]) { lo += 1 }
    while hi > lo && isASCIISpace(line[hi - 1]) { hi -= 1 }
    return UnsafeBufferPointer(rebasing: line[lo..<hi])
}

/// One record of an image TSV: `image_id \t base64`.
package struct TSVImageLine {
    /// The image id as written (the LMDB key is exactly these bytes).
    package var id: UnsafeBufferPointer<UInt8>
    /// The base64 text of the image file.
    package var base64: UnsafeBufferPointer<UInt8>
}

/// Streams an image TSV (`image_id<TAB>base64` per line), as `build_lmdb_dataset.py` reads it.
package struct ImageTSVReader {
    /// The lines underneath.
    package var lines: LineReader

    /// A reader for the TSV at `path`.
    package init(path: String) { lines = LineReader(path: path) }

    /// Calls `body` for each non-blank line with its parsed fields (valid only during the call).
    ///
    /// Surrounding whitespace is stripped first, as the reference does; a line without exactly one tab, with an
    /// empty id, or whose second field is not base64 (either alphabet, padded) is an error naming `file:line`.
    package func forEach(
        validateBase64: Bool = true,
        _ body: (_ record: TSVImageLine, _ line: Int, _ offset: Int64) throws -> Void
    ) throws {
        let path = lines.path
        try lines.forEachLine { raw, number, offset in
            let line = stripped(raw)
            if line.isEmpty { return }  // the reference would fail on a blank line; skipping it changes no output
            guard let tab = line.firstIndex(of: 0x09) else {
                throw DatasetError.malformedLine(file: path, line: number, reason: "no tab: expected image_id<TAB>base64")
            }
            let id = UnsafeBufferPointer(rebasing: line[..<tab])
            let b64 = UnsafeBufferPointer(rebasing: line[(tab + 1)...])
            if let p = b64.baseAddress, memchr(p, 0x09, b64.count) != nil {
                throw DatasetError.malformedLine(file: path, line: number, reason: "more than one tab: expected image_id<TAB>base64")
            }
            if id.isEmpty { throw DatasetError.malformedLine(file: path, line: number, reason: "empty image id") }
            if validateBase64, let bad = Base64.firstInvalidOffset(b64) {
                let shown = String(decoding: id, as: UTF8.self)
                throw DatasetError.malformedLine(
                    file: path, line: number,
                    reason: "image id \(shown): invalid base64 \(bad.reason) at character \(bad.offset + 1)")
            }
            try body(TSVImageLine(id: id, base64: b64), number, offset)
        }
    }
}

/// Streams a JSONL file, one JSON object per non-blank line.
package struct JSONLReader {
    /// The lines underneath.
    package var lines: LineReader

    /// A reader for the JSONL file at `path`.
    package init(path: String) { lines = LineReader(path: path) }

    /// Calls `body` with each line's object; invalid JSON or a non-object line is an error naming `file:line`.
    package func forEach(_ body: (_ object: [String: PyJSON], _ line: Int, _ offset: Int64) throws -> Void) throws {
        let path = lines.path
        try lines.forEachLine { raw, number, offset in
            let line = stripped(raw)
            if line.isEmpty { return }
            let value: PyJSON
            do { value = try PyJSONParser.parse(line) } catch let e as PyJSONSyntaxError {
                // The reference's `json.loads(line)` raises JSONDecodeError with this text.
                throw DatasetError.malformedLine(
                    file: path, line: number, reason: "invalid JSON: \(e.pythonMessage(in: String(decoding: line, as: UTF8.self)))")
            }
            guard case .object(let pairs) = value else {
                throw DatasetError.malformedLine(file: path, line: number, reason: "expected a JSON object")
            }
            // Repeated keys are merged already (the last value wins, as in Python).
            try body(Dictionary(uniqueKeysWithValues: pairs.map { ($0.key, $0.value) }), number, offset)
        }
    }
}
