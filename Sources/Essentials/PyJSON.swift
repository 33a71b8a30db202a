// JSON as Python's `json.loads` reads it (PythonJSON.swift writes it back as `json.dumps` does). Hand-written (not
// Foundation's JSONSerialization or JSONDecoder) because parity depends on details Foundation does not keep: ints vs
// floats (`isinstance(x, int)` checks in the evaluation scripts; a pickled `1.0` stays a float), NaN/Infinity
// literals, arbitrary-size ints, duplicate keys (last wins, first position), Python's error messages; and because
// it is one pass over the bytes (a JSONDecoder into an enum once made caption parsing a third of `build-lmdb`).

import Foundation

/// A JSON value with the distinctions Python's `json` keeps (int vs float, key order).
package indirect enum PyJSON: Equatable, Sendable {
    /// `null` (Python `None`).
    case null
    /// `true` / `false`.
    case bool(Bool)
    /// An integer that fits in 64 bits.
    case int(Int64)
    /// An integer too large for 64 bits, as its decimal text (Python ints are unbounded).
    case bigInt(String)
    /// A float (also `NaN`, `Infinity`, `-Infinity`, which Python's json accepts).
    case float(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([PyJSON])
    /// An object: keys in first-seen order (a repeated key keeps its first position and takes the last value).
    case object([(key: String, value: PyJSON)])

    /// Structural equality (NaN equals NaN here, so parsed documents compare as written).
    package static func == (a: PyJSON, b: PyJSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.bigInt(let x), .bigInt(let y)): return x == y
        case (.float(let x), .float(let y)): return x == y || (x.isNaN && y.isNaN)
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The value under `key` when this is an object.
    package subscript(key: String) -> PyJSON? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.key == key }?.value
    }

    /// True for values Python's `isinstance(x, int)` accepts (ints and bools).
    package var isPythonInt: Bool {
        switch self {
        case .int, .bigInt, .bool: return true
        default: return false
        }
    }

    /// Python's type name, as TypeError messages spell it.
    package var pythonTypeName: String {
        switch self {
        case .null: return "NoneType"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        }
    }

    /// A key with Python's equality for dict/set membership (`1 == 1.0 == True`), or nil when unhashable.
    package var pythonKey: PyKey? {
        switch self {
        case .null: return PyKey.none
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let i): return .int(i)
        case .bigInt(let s): return .big(s)
        case .float(let d):
            if d.rounded() == d, d.isFinite, abs(d) < 9.2e18 { return .int(Int64(d)) }
            return .float(d.isNaN ? Double.nan.bitPattern : d.bitPattern)
        case .string(let s): return .string(s)
        case .array, .object: return nil
        }
    }
}

/// A hashable stand-in for a Python dict key or set element, equal where Python's `==` is.
package enum PyKey: Hashable, Sendable {
    /// `None`.
    case none
    /// An int (bools and integral floats map here, as Python compares them equal).
    case int(Int64)
    /// An int beyond 64 bits, as decimal text.
    case big(String)
    /// A non-integral float, by bit pattern.
    case float(UInt64)
    /// A string.
    case string(String)
}

/// A syntax error from ``PyJSONParser``: byte offset within the parsed text and what was expected.
package struct PyJSONSyntaxError: Error, CustomStringConvertible {
    /// Byte offset of the error.
    package var offset: Int
    /// What went wrong.
    package var reason: String
    /// True when the document nests deeper than Python can decode (its `RecursionError`, a message with no position).
    package var isRecursionLimit = false
    /// A one-line message.
    package var description: String { "\(reason) at byte \(offset)" }

    /// Python's `JSONDecodeError` text for this error in `json.loads(line)` (positions in characters, as Python counts),
    /// or its `RecursionError` text.
    package func pythonMessage(in line: String) -> String {
        if isRecursionLimit { return reason }
        let pos = String(decoding: Array(line.utf8).prefix(offset), as: UTF8.self).unicodeScalars.count
        return "\(reason): line 1 column \(pos + 1) (char \(pos))"
    }
}

/// A parser accepting exactly what Python's `json.loads` accepts (strict mode) on one document.
package struct PyJSONParser {
    /// The bytes parsed (readers of one fixed layout, such as feature files, drive the parser field by field).
    package let p: UnsafePointer<UInt8>
    /// One past the last byte.
    package let end: Int
    /// The next byte to read.
    package var i = 0
    /// Arrays and objects open around the current byte.
    private var depth = 0

    /// The deepest nesting of arrays and objects accepted. Python's decoder recurses once per level and raises
    /// `RecursionError` at its recursion limit (1000, less the frames of its caller: 994 at a script's top level on
    /// CPython 3.11); a limit keeps a hostile line from overflowing our stack, in the parser or in what walks its value.
    package static let maxDepth = 990

    /// Parses the whole of `bytes` as one JSON document (surrounding JSON whitespace allowed).
    package static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> PyJSON {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw PyJSONSyntaxError(offset: 0, reason: "Expecting value") }
        var parser = PyJSONParser(p: base, end: bytes.count)
        parser.skipSpace()
        let v = try parser.value()
        parser.skipSpace()
        if parser.i != parser.end { throw PyJSONSyntaxError(offset: parser.i, reason: "Extra data") }
        return v
    }

    /// Parses a string's UTF-8 as one JSON document.
    package static func parse(_ text: String) throws -> PyJSON {
        var t = text
        return try t.withUTF8 { try parse($0) }
    }

    /// A parser at the start of `end` bytes at `p`.
    package init(p: UnsafePointer<UInt8>, end: Int) { self.p = p; self.end = end }

    /// Skips JSON whitespace.
    @inline(__always) package mutating func skipSpace() {
        while i < end, p[i] == 0x20 || p[i] == 0x09 || p[i] == 0x0A || p[i] == 0x0D { i += 1 }
    }

    /// An error at the current byte.
    package func fail(_ reason: String) -> PyJSONSyntaxError { PyJSONSyntaxError(offset: i, reason: reason) }

    mutating func literal(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard end - i >= n else { return false }
        for k in 0..<n where p[i + k] != word.utf8Start[k] { return false }
        i += n
        return true
    }

    /// Parses the value starting at the current byte.
    package mutating func value() throws -> PyJSON {
        guard i < end else { throw fail("Expecting value") }
        switch p[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["):
            try enter("array")
            defer { depth -= 1 }
            i += 1
            skipSpace()
            var items: [PyJSON] = []
            if i < end, p[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value())
                skipSpace()
                guard i < end else { throw fail("Expecting ',' delimiter") }
                if p[i] == UInt8(ascii: ",") { i += 1; continue }
                if p[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("Expecting ',' delimiter")
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): if literal("true") { return .bool(true) }
        case UInt8(ascii: "f"): if literal("false") { return .bool(false) }
        case UInt8(ascii: "n"): if literal("null") { return .null }
        case UInt8(ascii: "N"): if literal("NaN") { return .float(.nan) }
        case UInt8(ascii: "I"): if literal("Infinity") { return .float(.infinity) }
        case UInt8(ascii: "-"):
            if end - i > 1, p[i + 1] == UInt8(ascii: "I") {
                i += 1
                if literal("Infinity") { return .float(-.infinity) }
                i -= 1
                throw fail("Expecting value")
            }
            return try number()
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: break
        }
        throw fail("Expecting value")
    }

    /// Counts one more level of nesting; past `maxDepth`, Python's `RecursionError` for a JSON `kind`.
    private mutating func enter(_ kind: String) throws {
        guard depth < Self.maxDepth else {
            var e = fail("maximum recursion depth exceeded while decoding a JSON \(kind) from a unicode string")
            e.isRecursionLimit = true
            throw e
        }
        depth += 1
    }

    mutating func object() throws -> PyJSON {
        try enter("object")
        defer { depth -= 1 }
        i += 1
        skipSpace()
        var pairs: [(key: String, value: PyJSON)] = []
        if i < end, p[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
        while true {
            skipSpace()
            guard i < end, p[i] == UInt8(ascii: "\"") else { throw fail("Expecting property name enclosed in double quotes") }
            let key = try string()
            skipSpace()
            guard i < end, p[i] == UInt8(ascii: ":") else { throw fail("Expecting ':' delimiter") }
            i += 1
            skipSpace()
            let v = try value()
            if let at = pairs.firstIndex(where: { $0.key == key }) { pairs[at].value = v } else { pairs.append((key, v)) }
            skipSpace()
            guard i < end else { throw fail("Expecting ',' delimiter") }
            if p[i] == UInt8(ascii: ",") { i += 1; continue }
            if p[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
            throw fail("Expecting ',' delimiter")
        }
    }

    /// Scans a number's extent per JSON grammar; returns (start, isInteger).
    mutating func scanNumber() throws -> (Int, Bool) {
        let start = i
        if p[i] == UInt8(ascii: "-") { i += 1 }
        guard i < end, p[i] >= 0x30, p[i] <= 0x39 else { throw PyJSONSyntaxError(offset: start, reason: "Expecting value") }
        if p[i] == 0x30 { i += 1 } else { while i < end, p[i] >= 0x30, p[i] <= 0x39 { i += 1 } }
        var integer = true
        if i + 1 < end, p[i] == UInt8(ascii: "."), p[i + 1] >= 0x30, p[i + 1] <= 0x39 {
            integer = false
            i += 1
            while i < end, p[i] >= 0x30, p[i] <= 0x39 { i += 1 }
        }
        if i < end, p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E") {
            var j = i + 1
            if j < end, p[j] == UInt8(ascii: "+") || p[j] == UInt8(ascii: "-") { j += 1 }
            if j < end, p[j] >= 0x30, p[j] <= 0x39 {
                while j < end, p[j] >= 0x30, p[j] <= 0x39 { j += 1 }
                i = j
                integer = false
            }
        }
        return (start, integer)
    }

    mutating func number() throws -> PyJSON {
        let (start, integer) = try scanNumber()
        if integer {
            var neg = false, k = start, v: Int64 = 0, overflow = false
            if p[k] == UInt8(ascii: "-") { neg = true; k += 1 }
            while k < i {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (s, o2) = neg ? m.subtractingReportingOverflow(Int64(p[k] - 0x30)) : m.addingReportingOverflow(Int64(p[k] - 0x30))
                if o1 || o2 { overflow = true; break }
                v = s; k += 1
            }
            if !overflow { return .int(v) }
            return .bigInt(String(decoding: UnsafeBufferPointer(start: p + start, count: i - start), as: UTF8.self))
        }
        return .float(strtodBytes(p + start, i - start))
    }

    /// Parses a string starting at its opening quote (strict: no raw control characters).
    package mutating func string() throws -> String {
        i += 1
        let start = i
        // Fast path: no escapes.
        while i < end, p[i] != UInt8(ascii: "\""), p[i] != UInt8(ascii: "\\"), p[i] >= 0x20 { i += 1 }
        if i < end, p[i] == UInt8(ascii: "\"") {
            let s = String(decoding: UnsafeBufferPointer(start: p + start, count: i - start), as: UTF8.self)
            i += 1
            return s
        }
        var units = [UInt16]()
        var bytes = Array(UnsafeBufferPointer(start: p + start, count: i - start))
        func flush() {
            if !bytes.isEmpty { units.append(contentsOf: String(decoding: bytes, as: UTF8.self).utf16); bytes.removeAll() }
        }
        while true {
            guard i < end else { throw PyJSONSyntaxError(offset: start - 1, reason: "Unterminated string starting at") }
            let c = p[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("Invalid control character at") }
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            guard i + 1 < end else { throw PyJSONSyntaxError(offset: start - 1, reason: "Unterminated string starting at") }
            let e = p[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                guard end - i >= 4, let u = UInt16(String(decoding: UnsafeBufferPointer(start: p + i, count: 4), as: UTF8.self), radix: 16),
                    (0..<4).allSatisfy({ isHex(p[i + $0]) })
                else { throw fail("Invalid \\uXXXX escape") }
                i += 4
                flush()
                units.append(u)
            default: i -= 2; throw fail("Invalid \\escape")
            }
        }
        flush()
        // Python keeps lone surrogates; a Swift String cannot, so they become U+FFFD.
        return String(decoding: units, as: UTF16.self)
    }

    @inline(__always) func isHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
    }
}

/// Correctly rounded text → double (C `strtod`), on a byte range holding a JSON number.
package func strtodBytes(_ p: UnsafePointer<UInt8>, _ n: Int) -> Double {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) { buf in
        for k in 0..<n { buf[k] = CChar(bitPattern: p[k]) }
        buf[n] = 0
        return strtod(buf.baseAddress!, nil)
    }
}
