// A hand-written pickle encoder for plain values, producing the bytes CPython 3.8+'s C pickler writes
// for `pickle.dumps(value, protocol=4)`.
//
// Why byte-exact: the LMDB datasets of the reference store `pickle.dumps((image_id, text_id, text))`
// values, and a dataset we build should be byte-identical to one the reference builds. That includes
// CPython's framing rules: the opcodes after PROTO are grouped into FRAMEs; a frame is closed at the
// start of saving an object once it holds at least 64 KiB; a frame under 4 bytes is written without its
// FRAME header; and a str/bytes payload of 64 KiB or more is written outside any frame.
// Limitation: CPython memoizes by object identity, so a value containing the *same* str object twice
// pickles the second one as a memo reference; this encoder has no identities and always writes it again.

import Foundation

/// Encodes plain `PickleValue`s (None, bool, int, float, str, bytes, tuple, list, dict) as protocol-4 pickles.
package enum PickleEncoder {
    /// The bytes `pickle.dumps(value, protocol=4)` gives in CPython; tensors are rejected.
    package static func encode(_ value: PickleValue) throws -> [UInt8] {
        var w = Writer()
        w.out = [0x80, 4]
        try w.save(value)
        w.write([0x2e])  // STOP
        w.commitFrame()
        return w.out
    }
}

private struct Writer {
    static let frameTarget = 64 * 1024
    static let frameMin = 4
    static let headerSize = 9
    static let batchSize = 1000

    var out: [UInt8] = []
    /// Where the current frame's reserved 9-byte header starts, or nil outside a frame.
    var frameStart: Int?
    var framing = true
    var memoCount = 0

    mutating func write(_ bytes: [UInt8]) {
        if framing && frameStart == nil {
            frameStart = out.count
            out.append(contentsOf: repeatElement(0, count: Self.headerSize))
        }
        out.append(contentsOf: bytes)
    }

    mutating func write<C: Collection>(contentsOf bytes: C) where C.Element == UInt8 {
        if framing && frameStart == nil {
            frameStart = out.count
            out.append(contentsOf: repeatElement(0, count: Self.headerSize))
        }
        out.append(contentsOf: bytes)
    }

    mutating func commitFrame() {
        guard let start = frameStart else { return }
        let length = out.count - start - Self.headerSize
        if length >= Self.frameMin {
            out[start] = 0x95
            var l = UInt64(length).littleEndian
            withUnsafeBytes(of: &l) { for i in 0..<8 { out[start + 1 + i] = $0[i] } }
        } else {
            out.removeSubrange(start..<(start + Self.headerSize))
        }
        frameStart = nil
    }

    /// A str/bytes opcode with its payload; big payloads bypass framing, as the C pickler does.
    mutating func writePayload(header: [UInt8], payload: [UInt8]) {
        if payload.count >= Self.frameTarget {
            commitFrame()
            framing = false
            write(header)
            write(payload)
            framing = true
        } else {
            write(header)
            write(payload)
        }
    }

    mutating func memoize() {
        write([0x94])
        memoCount += 1
    }

    static func le32(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(v).littleEndian, Array.init) }
    static func le64(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(v).littleEndian, Array.init) }

    mutating func save(_ value: PickleValue) throws {
        if let start = frameStart, out.count - start - Self.headerSize >= Self.frameTarget { commitFrame() }
        switch value {
        case .none: write([0x4e])
        case .bool(let b): write([b ? 0x88 : 0x89])
        case .int(let v): saveInt(v)
        case .float(let d): write([0x47] + withUnsafeBytes(of: d.bitPattern.bigEndian, Array.init))
        case .string(let s):
            let b = Array(s.utf8)
            if b.count < 256 {
                writePayload(header: [0x8c, UInt8(b.count)], payload: b)
            } else if b.count > 0xFFFF_FFFF {
                writePayload(header: [0x8d] + Self.le64(b.count), payload: b)
            } else {
                writePayload(header: [0x58] + Self.le32(b.count), payload: b)
            }
            memoize()
        case .bytes(let b):
            if b.count < 256 {
                writePayload(header: [0x43, UInt8(b.count)], payload: b)
            } else if b.count > 0xFFFF_FFFF {
                writePayload(header: [0x8e] + Self.le64(b.count), payload: b)
            } else {
                writePayload(header: [0x42] + Self.le32(b.count), payload: b)
            }
            memoize()
        case .tuple(let items):
            if items.isEmpty { write([0x29]); return }  // the empty tuple is a singleton: never memoized
            if items.count <= 3 {
                for v in items { try save(v) }
                write([[0x85, 0x86, 0x87][items.count - 1]])
            } else {
                write([0x28])
                for v in items { try save(v) }
                write([0x74])
            }
            memoize()
        case .list(let items):
            write([0x5d])
            memoize()
            try batched(items.count) { w, range in
                if range.count == 1 {
                    try w.save(items[range.lowerBound]); w.write([0x61])
                }  // APPEND
                else {
                    w.write([0x28]); for i in range { try w.save(items[i]) }; w.write([0x65])
                }  // MARK … APPENDS
            }
        case .dict(let d):
            write([0x7d])
            memoize()
            let entries = d.entries
            try batched(entries.count) { w, range in
                if range.count == 1 {
                    try w.save(entries[range.lowerBound].key); try w.save(entries[range.lowerBound].value); w.write([0x73])  // SETITEM
                } else {
                    w.write([0x28])
                    for i in range { try w.save(entries[i].key); try w.save(entries[i].value) }
                    w.write([0x75])  // SETITEMS
                }
            }
        case .tensor:
            throw CheckpointError.pickle(source: "<encoder>", offset: out.count, reason: "tensors cannot be pickled by this encoder")
        }
    }

    mutating func batched(_ n: Int, _ body: (inout Writer, Range<Int>) throws -> Void) rethrows {
        var i = 0
        while i < n {
            let end = min(n, i + Self.batchSize)
            try body(&self, i..<end)
            i = end
        }
    }

    mutating func saveInt(_ v: Int) {
        if v >= 0 && v <= 0xff { write([0x4b, UInt8(v)]); return }
        if v >= 0 && v <= 0xffff { write([0x4d, UInt8(v & 0xff), UInt8(v >> 8)]); return }
        if v >= Int(Int32.min) && v <= Int(Int32.max) { write([0x4a] + withUnsafeBytes(of: Int32(v).littleEndian, Array.init)); return }
        // LONG1 with Python's encode_long: (abs(v).bit_length() >> 3) + 1 bytes, dropping one redundant 0xff for negatives.
        let bitLength = UInt64.bitWidth - UInt64(v.magnitude).leadingZeroBitCount
        var n = (bitLength >> 3) + 1
        var bytes = (0..<max(n, 8)).map { i -> UInt8 in i < 8 ? UInt8(truncatingIfNeeded: v >> (8 * i)) : (v < 0 ? 0xff : 0) }
        bytes = Array(bytes.prefix(n))
        if v < 0 && n > 1 && bytes[n - 1] == 0xff && bytes[n - 2] & 0x80 != 0 { bytes.removeLast(); n -= 1 }
        write([0x8a, UInt8(n)] + bytes)
    }
}
