// Base64 decoding that accepts both the standard (`+/`) and URL-safe (`-_`) alphabets, as the reference's readers
// do (`base64.urlsafe_b64decode` maps `-_` to `+/` and keeps `+/`). Hand-written because Foundation only knows the
// standard alphabet and this is a 40-line table lookup; encoding uses Foundation's `base64EncodedString()`.

import Foundation

/// Text that is not padded base64: where it stops being valid (0-based) and why.
package struct Base64Error: Error, CustomStringConvertible, Equatable {
    /// The first offending character's offset.
    package var offset: Int
    /// What is wrong there.
    package var reason: String
    /// `invalid base64 <reason> at character <offset + 1>`.
    package var description: String { "invalid base64 \(reason) at character \(offset + 1)" }
}

/// Base64 validation and decoding over either alphabet.
package enum Base64 {
    /// 0–63 for alphabet characters of both alphabets, 64 for `=`, 255 for anything else.
    static let table: [UInt8] = {
        var t = [UInt8](repeating: 255, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { t[Int(c)] = UInt8(i) }
        t[Int(UInt8(ascii: "-"))] = 62
        t[Int(UInt8(ascii: "_"))] = 63
        t[Int(UInt8(ascii: "="))] = 64
        return t
    }()

    /// Where `text` stops being valid padded base64, with why; nil when it is valid.
    package static func firstInvalidOffset<C: RandomAccessCollection>(_ text: C) -> (offset: Int, reason: String)?
    where C.Element == UInt8, C.Index == Int {
        if let fast = text.withContiguousStorageIfAvailable({ firstInvalidOffset(bytes: $0) }) { return fast }
        return firstInvalidOffset(bytes: Array(text).withUnsafeBufferPointer { UnsafeBufferPointer(start: $0.baseAddress, count: $0.count) })
    }

    static func firstInvalidOffset(bytes text: UnsafeBufferPointer<UInt8>) -> (offset: Int, reason: String)? {
        let n = text.count
        if n == 0 { return (0, "(empty)") }
        // The table is read through a local pointer: touching the global per byte costs a `swift_once` check each.
        return table.withUnsafeBufferPointer { t -> (offset: Int, reason: String)? in
            // The body (all but the last 2 characters) must be alphabet characters: a branch-light scan first.
            let body = max(0, n - 2)
            if !allAlphabet(text.baseAddress!, body, t) {
                for i in 0..<body where t[Int(text[i])] >= 64 {
                    let c = Character(Unicode.Scalar(text[i]))
                    return (i, t[Int(text[i])] == 64 ? "('=' before the end)" : "(character '\(c)')")
                }
            }
            var padding = 0
            for i in body..<n {
                let v = t[Int(text[i])]
                if v == 255 { return (i, "(character '\(Character(Unicode.Scalar(text[i])))')") }
                if v == 64 { padding += 1 } else if padding > 0 { return (i, "(data after '=')") }
            }
            if n % 4 != 0 { return (n - 1, "(length \(n) is not a multiple of 4: incorrect padding)") }
            return nil
        }
    }

    /// Whether the first `count` bytes are all alphabet characters (either alphabet, no `=`): 16 bytes at a time
    /// with SIMD range checks, since validation runs over every byte of multi-gigabyte TSVs.
    static func allAlphabet(_ p: UnsafePointer<UInt8>, _ count: Int, _ t: UnsafeBufferPointer<UInt8>) -> Bool {
        typealias V = SIMD16<UInt8>
        var i = 0
        let raw = UnsafeRawPointer(p)
        var ok = SIMDMask<V.MaskStorage>(repeating: true)
        while i + 16 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i, as: V.self)
            let upper = (v &- V(repeating: 65)) .< V(repeating: 26)
            let lower = (v &- V(repeating: 97)) .< V(repeating: 26)
            let digit = (v &- V(repeating: 48)) .< V(repeating: 10)
            let symbol = (v .== V(repeating: 43)) .| (v .== V(repeating: 47)) .| (v .== V(repeating: 45)) .| (v .== V(repeating: 95))
            ok .&= upper .| lower .| digit .| symbol
            i += 16
            if i & 4095 == 0 && !all(ok) { return false }
        }
        if !all(ok) { return false }
        var bad: UInt8 = 0
        while i < count { bad |= t[Int(p[i])] & 0xC0; i += 1 }
        return bad == 0
    }

    /// The bytes `text` encodes; throws for text that ``firstInvalidOffset(_:)`` rejects.
    package static func decode<C: RandomAccessCollection>(_ text: C) throws -> [UInt8] where C.Element == UInt8, C.Index == Int {
        if let bad = firstInvalidOffset(text) {
            throw Base64Error(offset: bad.offset, reason: bad.reason)
        }
        let n = text.count
        let base = text.startIndex
        var padding = 0
        if text[base + n - 1] == UInt8(ascii: "=") { padding += 1 }
        if n >= 2 && text[base + n - 2] == UInt8(ascii: "=") { padding += 1 }
        var out = [UInt8](repeating: 0, count: n / 4 * 3 - padding)
        out.withUnsafeMutableBufferPointer { o in
            var j = 0
            var i = 0
            while i < n {
                let a = UInt32(table[Int(text[base + i])]), b = UInt32(table[Int(text[base + i + 1])])
                let c = UInt32(table[Int(text[base + i + 2])] & 63), d = UInt32(table[Int(text[base + i + 3])] & 63)
                let v = a << 18 | b << 12 | c << 6 | d
                o[j] = UInt8(truncatingIfNeeded: v >> 16)
                if j + 1 < o.count { o[j + 1] = UInt8(truncatingIfNeeded: v >> 8) }
                if j + 2 < o.count { o[j + 2] = UInt8(truncatingIfNeeded: v) }
                j += 3
                i += 4
            }
        }
        return out
    }

    /// `bytes` in the standard alphabet with padding (`base64.b64encode`).
    package static func encode(_ bytes: Data) -> String { bytes.base64EncodedString() }
}
