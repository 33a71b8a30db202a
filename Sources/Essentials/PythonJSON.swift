// Text as Python's `json` module and `repr` write it, byte for byte: the reference's scripts write every JSON and
// JSONL file with `json.dumps`, so a file we write must be the same bytes. Hand-written because no Swift encoder
// writes Python's escapes (`ensure_ascii`) or its float layout (`repr`: positional for decimal exponents -4 ..< 16).

/// Python's `json.dumps` and `repr` for strings and floats.
package enum PythonJSON {
    /// `json.dumps(s)` (`ensureASCII`, the default) or `json.dumps(s, ensure_ascii=False)`: a string literal.
    package static func string(_ s: String, ensureASCII: Bool = true) -> String {
        var out: [UInt8] = []
        appendString(s, ensureASCII: ensureASCII, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `json.dumps(s)` (or with `ensure_ascii=False`) to `out`: `"` `\` `\n` `\r` `\t` `\b` `\f` by their
    /// short escapes, other code points below U+0020 as `\u00XX`; with `ensureASCII` also everything outside
    /// U+0020–U+007E, as UTF-16 units (surrogate pairs for astral characters), else those as UTF-8.
    package static func appendString(_ s: String, ensureASCII: Bool = true, into out: inout [UInt8]) {
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
    package static func repr(_ d: Double) -> String {
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
    package static func number(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return repr(d)
    }
}

// MARK: - JSON values, as Python writes them

/// Python's `str(x)` for a JSON value, as the evaluation scripts' messages format them.
package func pythonStr(_ v: PyJSON) -> String {
    if case .string(let s) = v { return s }
    return pythonRepr(v)
}

/// Python's `repr(x)` for a JSON value (`None`, `True`, `'text'`, `[1, 'a']`, `{'k': 1}`).
package func pythonRepr(_ v: PyJSON) -> String {
    switch v {
    case .null: return "None"
    case .bool(let b): return b ? "True" : "False"
    case .int(let i): return String(i)
    case .bigInt(let s): return s
    case .float(let d): return PythonJSON.repr(d)
    case .string(let s): return pythonStringRepr(s)
    case .array(let a): return "[" + a.map(pythonRepr).joined(separator: ", ") + "]"
    case .object(let o): return "{" + o.map { pythonStringRepr($0.key) + ": " + pythonRepr($0.value) }.joined(separator: ", ") + "}"
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`; escapes for non-printable characters.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(u) == quote {
                out += "\\" + String(quote)
            } else if u.value < 0x20 || (u.value >= 0x7F && u.value <= 0xA0) || u.value == 0xAD {
                out += "\\x" + hex(u.value, 2)
            } else if u.properties.generalCategory == .unassigned || u.properties.generalCategory == .lineSeparator
                || u.properties.generalCategory == .paragraphSeparator || u.properties.generalCategory == .format
                || u.properties.generalCategory == .spaceSeparator && u != " " || u.properties.generalCategory == .privateUse
                || u.properties.generalCategory == .surrogate
            {
                out += u.value <= 0xFF ? "\\x" + hex(u.value, 2) : u.value <= 0xFFFF ? "\\u" + hex(u.value, 4) : "\\U" + hex(u.value, 8)
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + String(quote)
}

func hex(_ v: UInt32, _ width: Int) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: max(0, width - h.count)) + h
}

/// Appends `json.dumps(v)` (`", "` and `": "` separators; `ensure_ascii` unless `ensureASCII` is false) to `out`.
package func pythonDumps(_ v: PyJSON, ensureASCII: Bool = true, into out: inout [UInt8]) {
    switch v {
    case .null: out += Array("null".utf8)
    case .bool(let b): out += Array((b ? "true" : "false").utf8)
    case .int(let i): out += Array(String(i).utf8)
    case .bigInt(let s): out += Array(s.utf8)
    case .float(let d):
        out += Array(PythonJSON.number(d).utf8)
    case .string(let s): PythonJSON.appendString(s, ensureASCII: ensureASCII, into: &out)
    case .array(let a):
        out.append(UInt8(ascii: "["))
        for (k, x) in a.enumerated() {
            if k > 0 { out += [0x2C, 0x20] }
            pythonDumps(x, ensureASCII: ensureASCII, into: &out)
        }
        out.append(UInt8(ascii: "]"))
    case .object(let o):
        out.append(UInt8(ascii: "{"))
        for (k, kv) in o.enumerated() {
            if k > 0 { out += [0x2C, 0x20] }
            PythonJSON.appendString(kv.key, ensureASCII: ensureASCII, into: &out)
            out += [0x3A, 0x20]
            pythonDumps(kv.value, ensureASCII: ensureASCII, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }
}

/// `json.dumps(v)` (or with `ensure_ascii=False`) as a String.
package func pythonDumps(_ v: PyJSON, ensureASCII: Bool = true) -> String {
    var out = [UInt8]()
    pythonDumps(v, ensureASCII: ensureASCII, into: &out)
    return String(decoding: out, as: UTF8.self)
}
