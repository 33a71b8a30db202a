// Deterministic random numbers for weight initialisation and benchmarks.

import Tensors
import Foundation

/// SplitMix64: a small, fast, seedable generator (not cryptographic).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    public mutating func nextNormal() -> Float {
        let u1 = Double(next() >> 11) * 0x1p-53 + 0x1p-54
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

extension Tensor {
    /// A tensor of `shape` with normal samples of standard deviation `std` around `mean`.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1, using rng: inout SplitMix64) -> Tensor {
        let t = Tensor.uninitialized(shape)
        let p = t.mutableData
        for i in 0..<t.count { p[i] = mean + std * rng.nextNormal() }
        return t
    }
}

extension SplitMix64 {
    /// A sample of U[-bound, bound).
    public mutating func nextUniform(bound: Float) -> Float {
        Float((Double(next() >> 11) * 0x1p-53 * 2 - 1) * Double(bound))
    }
}

extension Tensor {
    /// A tensor of `shape` with samples of U[-bound, bound).
    public static func randomUniform(_ shape: [Int], bound: Float, using rng: inout SplitMix64) -> Tensor {
        let t = Tensor.uninitialized(shape)
        let p = t.mutableData
        for i in 0..<t.count { p[i] = rng.nextUniform(bound: bound) }
        return t
    }
}
