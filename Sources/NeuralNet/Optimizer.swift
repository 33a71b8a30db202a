// AdamW as PyTorch's `torch.optim.AdamW` (single-tensor path, the one it takes for CPU tensors), step for
// step: decoupled weight decay first, then the moment updates, then the bias-corrected step. Scalars
// (bias corrections, step size) are computed in Double as Python does and applied in fp32.

import Foundation
import Tensors

/// A set of parameters sharing optimiser settings (PyTorch's param group).
public struct ParameterGroup {
    /// The parameters with their dotted names.
    public var parameters: [(String, Parameter)]
    /// Decoupled weight decay of this group.
    public var weightDecay: Double
    /// Learning rate of this group (the schedule sets it before each step).
    public var learningRate: Double

    /// A group of `parameters` with `weightDecay` and `learningRate`.
    public init(parameters: [(String, Parameter)], weightDecay: Double, learningRate: Double) {
        self.parameters = parameters
        self.weightDecay = weightDecay
        self.learningRate = learningRate
    }
}

/// AdamW (Loshchilov & Hutter) with PyTorch's update order and bias corrections.
public final class AdamW {
    /// The parameter groups, in order.
    public var groups: [ParameterGroup]
    /// Decay rates of the first and second moments (a resumed optimizer takes the checkpoint's, as `load_state_dict` does).
    public var betas: (Double, Double)
    /// Added to the denominator (likewise).
    public var eps: Double
    /// Per parameter: step count and the two moment estimates (same shape as the parameter).
    private var state: [ObjectIdentifier: (step: Int, expAvg: Tensor, expAvgSq: Tensor)] = [:]

    /// An optimiser over `groups` (PyTorch's defaults: betas 0.9/0.999, eps 1e-8; Chinese-CLIP's ViT: 0.9/0.98, 1e-6).
    public init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8) {
        self.groups = groups
        self.betas = betas
        self.eps = eps
    }

    /// Sets every group's learning rate (what the reference's `assign_learning_rate` does).
    public func setLearningRate(_ lr: Double) {
        for i in groups.indices { groups[i].learningRate = lr }
    }

    /// One update of every parameter that has a gradient (parameters without one are skipped, as in PyTorch).
    public func step() {
        let (beta1, beta2) = betas
        for group in groups {
            let lr = group.learningRate, wd = group.weightDecay
            for (_, p) in group.parameters {
                guard let grad = p.grad else { continue }
                let key = ObjectIdentifier(p)
                var s = state[key] ?? (0, Tensor(shape: p.value.shape), Tensor(shape: p.value.shape))
                s.step += 1
                // The parameter gets a fresh tensor: its old value may be a memory-mapped checkpoint or shared.
                let param = p.value.copy()
                let n = param.count
                let w = param.mutableData, g = grad.data, m = s.expAvg.mutableData, v = s.expAvgSq.mutableData
                let decay = Float(1 - lr * wd)
                let oneMinusBeta1 = Float(1 - beta1), b2 = Float(beta2), oneMinusBeta2 = Float(1 - beta2)
                let biasCorrection1 = 1 - pow(beta1, Double(s.step))
                let biasCorrection2Sqrt = (1 - pow(beta2, Double(s.step))).squareRoot()
                let stepSize = Float(lr / biasCorrection1)
                let bc2 = Float(biasCorrection2Sqrt), e = Float(eps)
                for i in 0..<n {
                    if wd != 0 { w[i] *= decay }                       // param.mul_(1 - lr * wd)
                    m[i] += oneMinusBeta1 * (g[i] - m[i])              // exp_avg.lerp_(grad, 1 - beta1)
                    v[i] = v[i] * b2 + oneMinusBeta2 * (g[i] * g[i])   // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
                    let denom = v[i].squareRoot() / bc2 + e            // exp_avg_sq.sqrt() / sqrt(bc2) + eps
                    w[i] += -stepSize * (m[i] / denom)                 // param.addcdiv_(exp_avg, denom, -step_size)
                }
                p.value = param
                state[key] = s
            }
        }
    }
}

/// The AdamW state of one parameter (PyTorch's `optimizer.state[p]`); the same type as `AdamW.State`.
public typealias AdamWParameterState = AdamW.State

extension AdamW {
    /// A copy of `parameter`'s state, or nil before its first update (checkpoints save this).
    public func state(for parameter: Parameter) -> AdamWParameterState? {
        guard let s = state[ObjectIdentifier(parameter)] else { return nil }
        return AdamWParameterState(step: s.step, expAvg: s.expAvg.copy(), expAvgSq: s.expAvgSq.copy())
    }

    /// Replaces `parameter`'s state (nil forgets it), copying the moments so the caller's tensors stay untouched.
    public func setState(_ newState: AdamWParameterState?, for parameter: Parameter) {
        let key = ObjectIdentifier(parameter)
        guard let s = newState else { state[key] = nil; return }
        precondition(s.expAvg.shape == parameter.value.shape && s.expAvgSq.shape == parameter.value.shape,
                     "AdamW state of shape \(s.expAvg.shape) for a parameter of \(parameter.value.shape)")
        state[key] = (s.step, s.expAvg.copy(), s.expAvgSq.copy())
    }
}

extension AdamW {
    /// The reference's two groups: weight decay 0 for parameters whose name contains `bn`, `ln`, `bias` or
    /// `logit_scale` (so BERT's `LayerNorm.weight` IS decayed), `weightDecay` for the rest.
    public static func referenceGroups(_ module: Module, weightDecay: Double, learningRate: Double) -> [ParameterGroup] {
        let named = module.trainableParameters()
        let exempt = named.filter { isExemptFromWeightDecay($0.0) }
        let decayed = named.filter { !isExemptFromWeightDecay($0.0) }
        return [ParameterGroup(parameters: exempt, weightDecay: 0, learningRate: learningRate),
                ParameterGroup(parameters: decayed, weightDecay: weightDecay, learningRate: learningRate)]
    }

    /// Whether the reference exempts the parameter called `name` from weight decay.
    public static func isExemptFromWeightDecay(_ name: String) -> Bool {
        name.contains("bn") || name.contains("ln") || name.contains("bias") || name.contains("logit_scale")
    }
}

// MARK: - Saving and restoring the optimiser state

extension AdamW {
    /// One parameter's AdamW state: steps taken and the two moment estimates (shaped as the parameter).
    public struct State {
        /// Updates applied to this parameter so far (PyTorch's `step`).
        public var step: Int
        /// First-moment estimate (`exp_avg`).
        public var expAvg: Tensor
        /// Second-moment estimate (`exp_avg_sq`).
        public var expAvgSq: Tensor

        /// A state of `step` updates with moments `expAvg` and `expAvgSq`.
        public init(step: Int, expAvg: Tensor, expAvgSq: Tensor) {
            self.step = step
            self.expAvg = expAvg
            self.expAvgSq = expAvgSq
        }
    }

    /// The state of every parameter that has taken a step, keyed by its index counting through the groups in
    /// order — the numbering of PyTorch's `optimizer.state_dict()["state"]`.
    ///
    /// The tensors are the optimiser's own buffers (not copies, so that saving a large model does not double
    /// its memory): `step()` updates them in place, so save them before the next step.
    public func exportState() -> [Int: State] {
        var out: [Int: State] = [:]
        var index = 0
        for group in groups {
            for (_, p) in group.parameters {
                if let s = state[ObjectIdentifier(p)] { out[index] = State(step: s.step, expAvg: s.expAvg, expAvgSq: s.expAvgSq) }
                index += 1
            }
        }
        return out
    }

    /// Replaces the state with `saved` (indices as in `exportState`); parameters absent from it start fresh.
    ///
    /// The moments are copied, since `step()` updates them in place and loaded tensors may be read-only
    /// memory maps. Throws naming the index and parameter when an index is unknown or a shape differs.
    public func importState(_ saved: [Int: State]) throws {
        let flat = groups.flatMap(\.parameters)
        if let bad = saved.keys.first(where: { $0 < 0 || $0 >= flat.count }) {
            throw OptimizerStateError.unknownParameterIndex(bad, parameterCount: flat.count)
        }
        var next: [ObjectIdentifier: (step: Int, expAvg: Tensor, expAvgSq: Tensor)] = [:]
        for (i, s) in saved {
            let (name, p) = flat[i]
            for (what, t) in [("exp_avg", s.expAvg), ("exp_avg_sq", s.expAvgSq)] where t.shape != p.value.shape {
                throw OptimizerStateError.shapeMismatch(index: i, name: name, field: what, expected: p.value.shape, found: t.shape)
            }
            next[ObjectIdentifier(p)] = (s.step, s.expAvg.copy(), s.expAvgSq.copy())
        }
        state = next
    }
}

/// Why a saved optimiser state does not fit an optimiser.
public enum OptimizerStateError: Error, CustomStringConvertible, Equatable {
    /// The saved state names a parameter index the optimiser does not have.
    case unknownParameterIndex(Int, parameterCount: Int)
    /// A moment's shape differs from its parameter's.
    case shapeMismatch(index: Int, name: String, field: String, expected: [Int], found: [Int])

    /// A message naming the parameter at fault.
    public var description: String {
        switch self {
        case let .unknownParameterIndex(i, n): return "optimizer state names parameter \(i), but the optimizer has \(n) parameters"
        case let .shapeMismatch(i, name, field, e, f): return "optimizer state \(i) ('\(name)'): \(field) has shape \(f), the parameter has \(e)"
        }
    }
}
