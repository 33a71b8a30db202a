// The numbers of a feature file, parsed to the float32 the reference gets (`json.loads`, then float32). The parser is
// C (`CKernels/feature_numbers.c`, which explains the method); this file builds its power-of-five table and gives
// Swift callers one number at a time.

import CKernels

/// 5^q as a 64-bit significand and a binary exponent (5^q = (significand + δ) · 2^exponent, 0 ≤ δ < 1), for q in
/// `minExponent...maxExponent`: the table that turns a decimal exponent into a binary product.
package struct PowersOfFive: @unchecked Sendable {  // sound: filled once at creation, never written or freed after
    /// The smallest decimal exponent in the table (5^54 < 2^126 keeps the division below within 128 bits).
    package static let minExponent = Int(CNCLIP_POW5_MIN)
    /// The largest decimal exponent in the table (every float32 is below 10^39).
    package static let maxExponent = Int(CNCLIP_POW5_MAX)
    /// The table, computed on first use.
    package static let shared = PowersOfFive()

    /// Significands in [2^63, 2^64), indexed by q - minExponent.
    package let significands: UnsafePointer<UInt64>
    /// Binary exponents, indexed by q - minExponent.
    package let exponents: UnsafePointer<Int32>

    private init() {
        let n = Self.maxExponent - Self.minExponent + 1
        let s = UnsafeMutablePointer<UInt64>.allocate(capacity: n), e = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        for q in Self.minExponent...Self.maxExponent {
            var five: UInt128 = 1
            for _ in 0..<abs(q) { five *= 5 }
            let bits = 128 - five.leadingZeroBitCount
            if q >= 0 {
                // 5^q itself, shifted so its top bit is bit 63 (truncated when longer).
                let shift = bits - 64
                s[q - Self.minExponent] = shift >= 0 ? UInt64(five >> shift) : UInt64(five) << -shift
                e[q - Self.minExponent] = Int32(shift)
            } else {
                // floor(2^k / 5^-q), k chosen so the quotient has 64 bits, by long division one bit at a time.
                let k = 63 + bits
                var remainder: UInt128 = 0, quotient: UInt64 = 0
                for j in stride(from: k, through: 0, by: -1) {
                    remainder = remainder << 1 | (j == k ? 1 : 0)
                    quotient = quotient &<< 1
                    if remainder >= five { remainder -= five; quotient |= 1 }
                }
                s[q - Self.minExponent] = quotient
                e[q - Self.minExponent] = Int32(-k)
            }
        }
        significands = UnsafePointer(s)
        exponents = UnsafePointer(e)
    }
}

/// Parses one JSON number (or `NaN`/`Infinity`/`-Infinity`) at `p[from...]` to the float32 Python + NumPy give:
/// `float32(json.loads(text))`. Returns the value and the index after it, or nil when no number starts there.
@inline(__always)
package func parseFeatureFloat(_ p: UnsafePointer<UInt8>, from start: Int, end: Int) -> (Float, Int)? {
    let powers = PowersOfFive.shared
    var value: Float = 0
    let next = cnclip_parse_feature_float(p, start, end, powers.significands, powers.exponents, &value)
    return next < 0 ? nil : (value, next)
}
