// The basic layers, each named and shaped as its PyTorch counterpart.

import Essentials
import Tensors

/// `nn.Linear`: `weight [out, in]`, `bias [out]`.
package final class Linear: Module {
    /// `[out, in]`.
    package let weight: Parameter
    /// `[out]`, absent when built without bias.
    package let bias: Parameter?

    /// A linear layer from `inFeatures` to `outFeatures`.
    package init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = Parameter(shape: [outFeatures, inFeatures])
        self.bias = bias ? Parameter(shape: [outFeatures]) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    /// `x [..., in]` → `[..., out]`; on the int8 path once the weight is held in int8 (`Parameter.quantize()`), on the
    /// packed weight once it is packed (`Parameter.pack()`).
    package func callAsFunction(_ x: Tensor) -> Tensor {
        weight.heldLinear(x, bias: bias?.value) ?? linear(x, weight: weight.value, bias: bias?.value)
    }

    /// `x [..., in]` → `[..., out]`, recording gradients for whatever requires them (nothing once the weight is held
    /// in int8 or packed: inference).
    package func callAsFunction(_ x: Variable) -> Variable {
        if let y = weight.heldLinear(x.value, bias: bias?.value) { return Variable(y) }
        return linear(x, weight: weight.variable, bias: bias?.variable)
    }

    /// `activation(x)` for `x [..., in]` → `[..., out]`; in training the activation's output is recomputed in the
    /// backward pass instead of kept (`linear(_:activation:weight:bias:)`), with the same values and gradients.
    package func callAsFunction(_ x: Variable, after activation: Activation) -> Variable {
        if weight.isHeldForInference { return Variable(weight.heldLinear(activation(x.value), bias: bias?.value)!) }
        return linear(x, activation: activation, weight: weight.variable, bias: bias?.variable)
    }
}

/// `nn.LayerNorm` over the last dimension: `weight [n]`, `bias [n]`.
package final class LayerNorm: Module {
    /// `[n]`.
    package let weight: Parameter
    /// `[n]`.
    package let bias: Parameter
    /// Added to the variance.
    package let eps: Float

    /// A layer norm over `n` features.
    package init(_ n: Int, eps: Float = 1e-5) {
        weight = Parameter(shape: [n])
        bias = Parameter(shape: [n])
        self.eps = eps
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    /// `x [..., n]` → `[..., n]`.
    package func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight.value, bias: bias.value, eps: eps) }

    /// `x [..., n]` → `[..., n]`, recording gradients for whatever requires them.
    package func callAsFunction(_ x: Variable) -> Variable { layerNorm(x, weight: weight.variable, bias: bias.variable, eps: eps) }
}

/// `nn.Embedding`: `weight [count, width]`.
package final class Embedding: Module {
    /// `[count, width]`.
    package let weight: Parameter

    /// A table of `count` vectors of `width`.
    package init(_ count: Int, _ width: Int) {
        weight = Parameter(shape: [count, width])
        super.init()
        register("weight", weight)
    }

    /// `ids` → `[ids.count, width]`.
    package func callAsFunction(_ ids: [Int32]) -> Tensor { embedding(weight.value, ids: ids) }

    /// `ids` → `[ids.count, width]`; the table's gradient scatter-adds into the rows picked.
    package func callAsFunction(_ ids: [Int32]) -> Variable { embedding(weight.variable, ids: ids) }
}

/// `nn.Conv2d` without bias (every convolution in the reference models): `weight [out, in, k, k]`.
package final class Conv2d: Module {
    /// `[out, in, k, k]`.
    package let weight: Parameter
    /// Step between windows.
    package let stride: Int
    /// Zero padding on each side.
    package let padding: Int

    /// A `k`×`k` convolution.
    package init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
        weight = Parameter(shape: [outChannels, inChannels, kernel, kernel])
        self.stride = stride
        self.padding = padding
        super.init()
        register("weight", weight)
    }

    /// `x [n, in, h, w]` → `[n, out, h', w']`.
    package func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight: weight.value, stride: stride, padding: padding) }

    /// `x [n, in, h, w]` → `[n, out, h', w']`, recording gradients for whatever requires them.
    package func callAsFunction(_ x: Variable) -> Variable { conv2d(x, weight: weight.variable, stride: stride, padding: padding) }
}

/// `nn.BatchNorm2d`: `weight`, `bias`, buffers `running_mean`, `running_var` (all `[c]`). Evaluation mode uses the
/// running statistics; training mode the batch's, updating the running ones as PyTorch (momentum 0.1, unbiased variance).
package final class BatchNorm2d: Module {
    /// `[c]`.
    package let weight: Parameter
    /// `[c]`.
    package let bias: Parameter
    /// `[c]`.
    package let runningMean: Parameter
    /// `[c]`.
    package let runningVar: Parameter
    /// Added to the variance.
    package let eps: Float

    /// Weight of the batch statistics in the running ones after each training batch.
    package let momentum: Float = 0.1

    /// Batch norm over `c` channels.
    package init(_ c: Int, eps: Float = 1e-5) {
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
    package func callAsFunction(_ x: Tensor, relu: Bool = false) -> Tensor {
        batchNorm2d(
            x, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
            runningVar: runningVar.value, eps: eps, relu: relu)
    }

    /// `x [n, c, h, w]` normalised (batch statistics in training mode, running ones otherwise), then ReLU if asked.
    /// In training mode the running statistics are updated.
    package func callAsFunction(_ x: Variable, relu: Bool = false) -> Variable {
        let w = weight.variable, b = bias.variable
        if !isTraining && !x.requiresGrad && !w.requiresGrad && !b.requiresGrad {
            // Inference: the fused kernel, nothing recorded.
            return Variable(callAsFunction(x.value, relu: relu))
        }
        let y: Variable
        if isTraining {
            let r = batchNorm2dTraining(x, weight: w, bias: b, eps: eps)
            let updated = updateRunningStatistics(
                mean: runningMean.value, variance: runningVar.value, batchMean: r.mean,
                batchVariance: r.variance, count: x.value.count / x.shape[1], momentum: momentum)
            runningMean.value = updated.mean
            runningVar.value = updated.variance
            y = r.output
        } else {
            y = batchNorm2d(x, weight: w, bias: b, runningMean: runningMean.value, runningVar: runningVar.value, eps: eps)
        }
        return relu ? Tensors.relu(y) : y
    }
}

/// `nn.Dropout`: in training mode zeroes each element with probability `p` (scaling the rest by `1/(1-p)`),
/// drawing from its own seeded generator; the identity in evaluation mode or when `p == 0`.
package final class Dropout: Module, RandomizedModule {
    /// Probability of zeroing an element.
    package let p: Float
    private var rng: SplitMix64

    /// The mask generator's state.
    package var generator: SplitMix64 {
        get { rng }
        set { rng = newValue }
    }

    /// A dropout layer with probability `p` whose masks come from a generator seeded with `seed`.
    package init(_ p: Float, seed: UInt64 = 0) {
        self.p = p
        self.rng = SplitMix64(seed: seed)
        super.init()
    }

    /// A fresh seed from this layer's generator (for masks drawn inside a kernel, such as attention dropout).
    package func nextSeed() -> UInt64 { rng.next() }

    /// `x` (any shape) with dropout applied in training mode.
    package func callAsFunction(_ x: Variable) -> Variable {
        // Evaluation (and p = 0) never touches the generator, so inference stays free of shared mutable state.
        guard isTraining && p > 0 else { return x }
        return dropout(x, p: p, training: true, using: &rng)
    }
}

/// A module that draws random numbers in training (dropout masks, dropped tokens) from a generator of its own,
/// so that a trainer can reseed every one of them before each forward pass.
package protocol RandomizedModule: Module {
    /// The generator's state.
    var generator: SplitMix64 { get set }
}

extension RandomizedModule {
    /// Restarts the generator from `seed`.
    package func seed(_ seed: UInt64) { generator = SplitMix64(seed: seed) }
}

extension Module {
    /// A `prepare` closure for `checkpointed`: its first call records the generator states of every randomized
    /// module inside this one, later calls put them back, so a recomputation draws the same masks.
    package func randomStateRestorer() -> () -> Void {
        let modules = namedModules().compactMap { $0.1 as? RandomizedModule }
        var saved: [SplitMix64]?
        return {
            if let saved {
                for (m, s) in zip(modules, saved) { m.generator = s }
            } else {
                saved = modules.map(\.generator)
            }
        }
    }
}
