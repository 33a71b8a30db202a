// Text as Python's `json` module and `repr` write it, byte for byte: the reference's scripts write every JSON and
// JSONL file with `json.dumps`, so a file we write must be the same bytes. Hand-written because no Swift encoder
// writes Python's escapes (`ensure_ascii`) or its float layout (`repr`: positional for decimal exponents -4 ..< 16).

/// Python's `json.dumps` and `repr` for strings and floats.
public enum PythonJSON {
    /// `json.dumps(s)` (`ensureASCII`, the default) or `json.dumps(s, ensure_ascii=False)`: a string literal.
    public static func string(_ s: String, ensureASCII: Bool = true) -> String {
        var out: [UInt8] = []
        appendString(s, ensureASCII: ensureASCII, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `json.dumps(s)` (or with `ensure_ascii=False`) to `out`: `"` `\` `\n` `\r` `\t` `\b` `\f` by their
    /// short escapes, other code points below U+0020 as `\u00XX`; with `ensureASCII` also everything outside
    /// U+0020–U+007E, as UTF-16 units (surrogate pairs for astral characters), else those as UTF-8.
    public static func appendString(_ s: String, ensureASCII: Bool = true, into out: inout [UInt8]) {
        out.append(0x22)
        for u in s.unicodeScalars {
            switch u.value {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0x20...0x7E: out.append(UInt8(u.value))
            case ..<0x20: appendEscape(UInt16(u.value), into: &out)
            default:
                if ensureASCII {
                    for unit in String(u).utf16 { appendEscape(unit, into: &out) }
                } else {
                    out += Array(String(u).utf8)
                }
            }
        }
        out.append(0x22)
    }

    private static func appendEscape(_ unit: UInt16, into out: inout [UInt8]) {
        let digits = Array("0123456789abcdef".utf8)
        out += [0x5C, UInt8(ascii: "u")]
        for shift in stride(from: 12, through: 0, by: -4) { out.append(digits[Int(unit >> UInt16(shift)) & 0xF]) }
    }

    /// Python's `repr(d)` (also `str(d)`): the shortest digits that round-trip, positional when the decimal exponent
    /// is in -4 ..< 16 (`0.0001`, `1234567890123456.0`), else `d.ddde+XX`; `nan`, `inf`, `-inf`.
    public static func repr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description has the same shortest round-trip digits; only the layout differs from Python's.
        let s = "\(abs(d))"
        var mantissa = Substring(s), exponent = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = s[..<e]
            exponent = Int(s[s.index(after: e)...])!
        }
        var digits = "", pointAt = 0
        if let dot = mantissa.firstIndex(of: ".") {
            digits = String(mantissa[..<dot]) + String(mantissa[mantissa.index(after: dot)...])
            pointAt = mantissa.distance(from: mantissa.startIndex, to: dot)
        } else {
            digits = String(mantissa)
            pointAt = mantissa.count
        }
        while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); pointAt -= 1 }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        let decimalPoint = pointAt + exponent  // value = 0.DIGITS × 10^decimalPoint
        var out = d < 0 ? "-" : ""
        if decimalPoint > -4 && decimalPoint <= 16 {
            if decimalPoint <= 0 {
                out += "0." + String(repeating: "0", count: -decimalPoint) + digits
            } else if decimalPoint >= digits.count {
                out += digits + String(repeating: "0", count: decimalPoint - digits.count) + ".0"
            } else {
                let k = digits.index(digits.startIndex, offsetBy: decimalPoint)
                out += digits[..<k] + "." + digits[k...]
            }
        } else {
            let e = decimalPoint - 1
            out += String(digits.first!)
            if digits.count > 1 { out += "." + digits.dropFirst() }
            out += (e < 0 ? "e-" : "e+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
        }
        return out
    }

    /// `json.dumps(d)`: `repr(d)` for finite values; `NaN`, `Infinity`, `-Infinity` otherwise.
    public static func number(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return repr(d)
    }
}
