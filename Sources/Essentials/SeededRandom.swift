// The seeded generator every target draws from (initialisation, dropout and augmentation draws, synthetic data,
// sampling): one sequence per seed on every machine, so runs and datasets are reproducible.

import Foundation

/// SplitMix64: a small, fast, seedable generator (not cryptographic).
package struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    @inlinable package init(seed: UInt64) { state = seed }

    /// The next 64 random bits (inlinable: kernels draw one per element).
    @inlinable package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    package mutating func nextNormal() -> Float {
        let u1 = Double(next() >> 11) * 0x1p-53 + 0x1p-54
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

extension SplitMix64 {
    /// A sample of U[-bound, bound).
    package mutating func nextUniform(bound: Float) -> Float {
        Float((Double(next() >> 11) * 0x1p-53 * 2 - 1) * Double(bound))
    }
}
