// Base64 decoding that accepts both the standard (`+/`) and URL-safe (`-_`) alphabets, as the reference's readers
// do (`base64.urlsafe_b64decode` maps `-_` to `+/` and keeps `+/`). Hand-written because Foundation only knows the
// standard alphabet and this is a 40-line table lookup; encoding uses Foundation's `base64EncodedString()`.

import Foundation

/// Base64 validation and decoding over either alphabet.
public enum Base64 {
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
    public static func firstInvalidOffset<C: RandomAccessCollection>(_ text: C) -> (offset: Int, reason: String)? where C.Element == UInt8, C.Index == Int {
        let n = text.count
        if n == 0 { return (0, "(empty)") }
        var padding = 0
        let base = text.startIndex
        for i in 0..<n {
            let v = table[Int(text[base + i])]
            if v == 255 { return (i, "(character '\(Character(Unicode.Scalar(text[base + i])))')") }
            if v == 64 {
                padding += 1
                if i < n - 2 { return (i, "('=' before the end)") }
            } else if padding > 0 {
                return (i, "(data after '=')")
            }
        }
        if n % 4 != 0 { return (n - 1, "(length \(n) is not a multiple of 4: incorrect padding)") }
        return nil
    }

    /// The bytes `text` encodes; throws for text that ``firstInvalidOffset(_:)`` rejects.
    public static func decode<C: RandomAccessCollection>(_ text: C) throws -> [UInt8] where C.Element == UInt8, C.Index == Int {
        if let bad = firstInvalidOffset(text) {
            throw DatasetError.invalidArgument("invalid base64 \(bad.reason) at character \(bad.offset + 1)")
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
    public static func encode(_ bytes: Data) -> String { bytes.base64EncodedString() }
}
