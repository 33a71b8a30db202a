// The basic layers, each named and shaped as its PyTorch counterpart.

import Tensors

/// `nn.Linear`: `weight [out, in]`, `bias [out]`.
public final class Linear: Module, @unchecked Sendable {
    /// `[out, in]`.
    public let weight: Parameter
    /// `[out]`, absent when built without bias.
    public let bias: Parameter?

    /// A linear layer from `inFeatures` to `outFeatures`.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = Parameter(shape: [outFeatures, inFeatures])
        self.bias = bias ? Parameter(shape: [outFeatures]) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    /// `x [..., in]` → `[..., out]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight: weight.value, bias: bias?.value) }
}

/// `nn.LayerNorm` over the last dimension: `weight [n]`, `bias [n]`.
public final class LayerNorm: Module, @unchecked Sendable {
    /// `[n]`.
    public let weight: Parameter
    /// `[n]`.
    public let bias: Parameter
    /// Added to the variance.
    public let eps: Float

    /// A layer norm over `n` features.
    public init(_ n: Int, eps: Float = 1e-5) {
        weight = Parameter(shape: [n])
        bias = Parameter(shape: [n])
        self.eps = eps
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    /// `x [..., n]` → `[..., n]`.
    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight.value, bias: bias.value, eps: eps) }
}

/// `nn.Embedding`: `weight [count, width]`.
public final class Embedding: Module, @unchecked Sendable {
    /// `[count, width]`.
    public let weight: Parameter

    /// A table of `count` vectors of `width`.
    public init(_ count: Int, _ width: Int) {
        weight = Parameter(shape: [count, width])
        super.init()
        register("weight", weight)
    }

    /// `ids` → `[ids.count, width]`.
    public func callAsFunction(_ ids: [Int32]) -> Tensor { embedding(weight.value, ids: ids) }
}

/// `nn.Conv2d` without bias (every convolution in the reference models): `weight [out, in, k, k]`.
public final class Conv2d: Module, @unchecked Sendable {
    /// `[out, in, k, k]`.
    public let weight: Parameter
    /// Step between windows.
    public let stride: Int
    /// Zero padding on each side.
    public let padding: Int

    /// A `k`×`k` convolution.
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
        weight = Parameter(shape: [outChannels, inChannels, kernel, kernel])
        self.stride = stride
        self.padding = padding
        super.init()
        register("weight", weight)
    }

    /// `x [n, in, h, w]` → `[n, out, h', w']`.
    public func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight: weight.value, stride: stride, padding: padding) }
}

/// `nn.BatchNorm2d` in inference mode: `weight`, `bias`, buffers `running_mean`, `running_var` (all `[c]`).
public final class BatchNorm2d: Module, @unchecked Sendable {
    /// `[c]`.
    public let weight: Parameter
    /// `[c]`.
    public let bias: Parameter
    /// `[c]`.
    public let runningMean: Parameter
    /// `[c]`.
    public let runningVar: Parameter
    /// Added to the variance.
    public let eps: Float

    /// Batch norm over `c` channels.
    public init(_ c: Int, eps: Float = 1e-5) {
        weight = Parameter(shape: [c])
        bias = Parameter(shape: [c])
        runningMean = Parameter(shape: [c], isBuffer: true)
        runningVar = Parameter(shape: [c], isBuffer: true)
        self.eps = eps
        super.init()
        register("weight", weight)
        register("bias", bias)
        register("running_mean", runningMean)
        register("running_var", runningVar)
    }

    /// `x [n, c, h, w]` normalised with the running statistics, then ReLU if asked.
    public func callAsFunction(_ x: Tensor, relu: Bool = false) -> Tensor {
        batchNorm2d(x, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
                    runningVar: runningVar.value, eps: eps, relu: relu)
    }
}
