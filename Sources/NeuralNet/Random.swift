// Random tensors for weight initialisation and benchmarks, from Essentials' seeded generator.

import Essentials
import Foundation
import Tensors

extension Tensor {
    /// A tensor of `shape` with normal samples of standard deviation `std` around `mean`.
    package static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1, using rng: inout SplitMix64) -> Tensor {
        let t = Tensor.uninitialized(shape)
        let p = t.mutableData
        for i in 0..<t.count { p[i] = mean + std * rng.nextNormal() }
        return t
    }
}

extension Tensor {
    /// A tensor of `shape` with samples of U[-bound, bound).
    package static func randomUniform(_ shape: [Int], bound: Float, using rng: inout SplitMix64) -> Tensor {
        let t = Tensor.uninitialized(shape)
        let p = t.mutableData
        for i in 0..<t.count { p[i] = rng.nextUniform(bound: bound) }
        return t
    }
}
