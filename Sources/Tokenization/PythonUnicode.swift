// Hand-written to match the reference (cn-clip 1.6.0, Python 3.11) bit for bit: Python's view of Unicode
// as `unicodedata`, `str.lower()`, `str.isspace()` and `str.split()` see it.

/// Python's character-property rules, answered from the Swift runtime's Unicode tables but frozen at the
/// Unicode version of the Python that produced the reference outputs.
///
/// Swift ships newer Unicode data than Python 3.11 (Unicode 14.0). A code point assigned after that version
/// is "unassigned" (category `Cn`) to the reference: it is kept, never lower-cased, decomposed, split
/// on or dropped. Treating it any other way would change token boundaries relative to the reference.
struct PythonUnicode: Sendable {
    /// The newest Unicode version whose assignments count as assigned.
    let major: Int
    let minor: Int

    init(version: Unicode.Version) {
        major = version.major
        minor = version.minor
    }

    /// Swift's tables (Unicode 17.0 in Swift 6.3) changed two long-assigned characters, found by comparing
    /// every code point with the reference: U+0295 ʕ went from Ll (cased) to Lo in 17.0, and U+1171E AHOM
    /// CONSONANT SIGN MEDIAL RA from Mn (case-ignorable, stripped as an accent) to Mc. Pythons up to 3.13
    /// (Unicode 15.1) see the old values; for U+1171E the change is assumed to be 17.0 as well (unverified).
    @inline(__always)
    private var seesPre17Values: Bool { major < 17 }

    /// Whether the scalar was assigned in the frozen Unicode version.
    @inline(__always)
    func isAssigned(_ s: Unicode.Scalar) -> Bool {
        guard let age = s.properties.age else { return false }
        return age.major < major || (age.major == major && age.minor <= minor)
    }

    /// The general category as Python's `unicodedata.category` would report it (nil stands for `Cn`).
    @inline(__always)
    func category(_ s: Unicode.Scalar) -> Unicode.GeneralCategory? {
        guard isAssigned(s) else { return nil }
        if seesPre17Values {
            if s.value == 0x295 { return .lowercaseLetter }
            if s.value == 0x1171E { return .nonspacingMark }
        }
        return s.properties.generalCategory
    }

    /// BERT's `_is_control`: categories Cc and Cf, except tab, newline and carriage return.
    @inline(__always)
    func isControl(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 {
            return (v < 0x20 && v != 0x09 && v != 0x0A && v != 0x0D) || v == 0x7F
        }
        switch category(s) {
        case .control?, .format?: return true
        default: return false
        }
    }

    /// BERT's `_is_whitespace`: space, tab, newline, carriage return and category Zs.
    @inline(__always)
    func isBertWhitespace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || v == 0x09 || v == 0x0A || v == 0x0D }
        return category(s) == .spaceSeparator
    }

    /// BERT's `_is_punctuation`: every ASCII non-alphanumeric printable, and any category starting with P.
    @inline(__always)
    func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return Self.isASCIIPunctuation(v) }
        switch category(s) {
        case .connectorPunctuation?, .dashPunctuation?, .openPunctuation?, .closePunctuation?,
            .initialPunctuation?, .finalPunctuation?, .otherPunctuation?:
            return true
        default:
            return false
        }
    }

    /// Whether the scalar is a nonspacing mark (Mn), the only category `_run_strip_accents` drops.
    @inline(__always)
    func isNonspacingMark(_ s: Unicode.Scalar) -> Bool {
        s.value >= 0x300 && category(s) == .nonspacingMark
    }

    @inline(__always)
    static func isASCIIPunctuation(_ v: UInt32) -> Bool {
        (v >= 33 && v <= 47) || (v >= 58 && v <= 64) || (v >= 91 && v <= 96) || (v >= 123 && v <= 126)
    }

    /// Python's `str.isspace()`, which `str.split()` and `str.strip()` split and strip on.
    ///
    /// The set is fixed by bidirectional class and category and has not changed since Unicode 6.3, so it is
    /// listed rather than looked up.
    @inline(__always)
    static func isPythonSpace(_ v: UInt32) -> Bool {
        if v < 0x80 { return (v >= 0x09 && v <= 0x0D) || (v >= 0x1C && v <= 0x20) }
        switch v {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// BERT's `_is_chinese_char`: the exact code-point ranges of cn-clip's copy (which adds 0x2B820–0x2CEAF).
    @inline(__always)
    static func isCJKIdeograph(_ v: UInt32) -> Bool {
        (v >= 0x4E00 && v <= 0x9FFF) || (v >= 0x3400 && v <= 0x4DBF) || (v >= 0x20000 && v <= 0x2A6DF)
            || (v >= 0x2A700 && v <= 0x2B73F) || (v >= 0x2B740 && v <= 0x2B81F) || (v >= 0x2B820 && v <= 0x2CEAF)
            || (v >= 0xF900 && v <= 0xFAFF) || (v >= 0x2F800 && v <= 0x2FA1F)
    }

    /// CJK ideographs that lower-casing, NFD and accent stripping all leave alone, whatever their age.
    ///
    /// The compatibility ideographs (F900–FAFF, 2F800–2FA1F) are excluded: they have canonical
    /// decompositions to unified ideographs, so they must go through NFD like the reference does.
    @inline(__always)
    static func isInertIdeograph(_ v: UInt32) -> Bool {
        isCJKIdeograph(v) && !(v >= 0xF900 && v <= 0xFAFF) && !(v >= 0x2F800 && v <= 0x2FA1F)
    }

    /// Appends Python's `s.lower()` of the scalars to `out`.
    ///
    /// Python uses the full (SpecialCasing) mappings, so 'İ' becomes "i\u{307}", and applies the
    /// Final_Sigma context to U+03A3, which Swift's `lowercased()` does not.
    func appendLowercased(_ scalars: UnsafeBufferPointer<Unicode.Scalar>, to out: inout [Unicode.Scalar]) {
        for i in scalars.indices {
            let s = scalars[i]
            let v = s.value
            if v < 0x80 {
                out.append(v >= 65 && v <= 90 ? Unicode.Scalar(UInt8(v + 32)) : s)
            } else if PythonUnicode.isInertIdeograph(v) || !isAssigned(s) {
                out.append(s)
            } else if v == 0x3A3 {
                out.append(isFinalSigma(scalars, at: i) ? "\u{3C2}" : "\u{3C3}")
            } else {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
    }

    /// CPython's `handle_capital_sigma`: `\p{cased}\p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased})`.
    private func isFinalSigma(_ scalars: UnsafeBufferPointer<Unicode.Scalar>, at i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && isCaseIgnorable(scalars[j]) { j -= 1 }
        guard j >= 0 && isCased(scalars[j]) else { return false }
        j = i + 1
        while j < scalars.count && isCaseIgnorable(scalars[j]) { j += 1 }
        return j == scalars.count || !isCased(scalars[j])
    }

    private func isCased(_ s: Unicode.Scalar) -> Bool {
        if s.value == 0x295 && seesPre17Values { return true }
        return isAssigned(s) && s.properties.isCased
    }

    private func isCaseIgnorable(_ s: Unicode.Scalar) -> Bool {
        if s.value == 0x1171E && seesPre17Values { return true }
        return isAssigned(s) && s.properties.isCaseIgnorable
    }
}
