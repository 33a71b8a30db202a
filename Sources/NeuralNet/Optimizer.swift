// AdamW as PyTorch's `torch.optim.AdamW` (single-tensor path, the one it takes for CPU tensors), step for
// step: decoupled weight decay first, then the moment updates, then the bias-corrected step. Scalars
// (bias corrections, step size) are computed in Double as Python does and applied in fp32.

import CKernels
import Foundation
import Tensors

/// A set of parameters sharing optimiser settings (PyTorch's param group).
package struct ParameterGroup {
    /// The parameters with their dotted names.
    package var parameters: [(String, Parameter)]
    /// Decoupled weight decay of this group.
    package var weightDecay: Double
    /// Learning rate of this group (the schedule sets it before each step).
    package var learningRate: Double

    /// A group of `parameters` with `weightDecay` and `learningRate`.
    package init(parameters: [(String, Parameter)], weightDecay: Double, learningRate: Double) {
        self.parameters = parameters
        self.weightDecay = weightDecay
        self.learningRate = learningRate
    }
}

/// AdamW (Loshchilov & Hutter) with PyTorch's update order and bias corrections.
package final class AdamW {
    /// The parameter groups, in order.
    package var groups: [ParameterGroup]
    /// Decay rates of the first and second moments (a resumed optimizer takes the checkpoint's, as `load_state_dict` does).
    package var betas: (Double, Double)
    /// Added to the denominator (likewise).
    package var eps: Double
    /// Per parameter: step count and the two moment estimates (same shape as the parameter).
    private var state: [ObjectIdentifier: StateDict.ParameterState] = [:]

    /// An optimiser over `groups` (PyTorch's defaults: betas 0.9/0.999, eps 1e-8; Chinese-CLIP's ViT: 0.9/0.98, 1e-6).
    package init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8) {
        self.groups = groups
        self.betas = betas
        self.eps = eps
    }

    /// Sets every group's learning rate (what the reference's `assign_learning_rate` does).
    package func setLearningRate(_ lr: Double) {
        for i in groups.indices { groups[i].learningRate = lr }
    }

    /// One update of every parameter that has a gradient (parameters without one are skipped, as in PyTorch).
    package func step() {
        let (beta1, beta2) = betas
        for group in groups {
            let lr = group.learningRate, wd = group.weightDecay
            for (_, p) in group.parameters {
                guard let grad = p.grad else { continue }
                let key = ObjectIdentifier(p)
                let shape = p.value.shape
                var s = state[key] ?? StateDict.ParameterState(step: 0, expAvg: Tensor(shape: shape), expAvgSq: Tensor(shape: shape))
                s.step += 1
                // In place when the parameter alone holds its value; otherwise a fresh tensor, for its value may be
                // a memory-mapped checkpoint or shared with the caller.
                if !p.value.isUniquelyOwned() { p.value = p.value.copy() }
                let w = p.value.mutableData, g = grad.data, m = s.expAvg.mutableData, v = s.expAvgSq.mutableData
                let decay = Float(1 - lr * wd), decayWeights: Int32 = wd != 0 ? 1 : 0
                let oneMinusBeta1 = Float(1 - beta1), b2 = Float(beta2), oneMinusBeta2 = Float(1 - beta2)
                let biasCorrection1 = 1 - pow(beta1, Double(s.step))
                let biasCorrection2Sqrt = (1 - pow(beta2, Double(s.step))).squareRoot()
                let stepSize = Float(lr / biasCorrection1)
                let bc2 = Float(biasCorrection2Sqrt), e = Float(eps)
                // Per element, in PyTorch's order: param.mul_(1 - lr * wd); exp_avg.lerp_(grad, 1 - beta1);
                // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2); denom = exp_avg_sq.sqrt() / sqrt(bc2) + eps;
                // param.addcdiv_(exp_avg, denom, -step_size) (`cnclip_adamw`).
                parallelFor(p.value.count, cost: 16) { r in
                    let i = r.lowerBound
                    cnclip_adamw(
                        w + i, g + i, m + i, v + i, r.count, decay, decayWeights, oneMinusBeta1, b2, oneMinusBeta2, bc2, e, stepSize)
                }
                state[key] = s
            }
        }
    }
}

extension AdamW {
    /// The reference's two groups: weight decay 0 for parameters whose name contains `bn`, `ln`, `bias` or
    /// `logit_scale` (so BERT's `LayerNorm.weight` IS decayed), `weightDecay` for the rest.
    package static func referenceGroups(_ module: Module, weightDecay: Double, learningRate: Double) -> [ParameterGroup] {
        let named = module.trainableParameters()
        let exempt = named.filter { isExemptFromWeightDecay($0.0) }
        let decayed = named.filter { !isExemptFromWeightDecay($0.0) }
        return [
            ParameterGroup(parameters: exempt, weightDecay: 0, learningRate: learningRate),
            ParameterGroup(parameters: decayed, weightDecay: weightDecay, learningRate: learningRate),
        ]
    }

    /// Whether the reference exempts the parameter called `name` from weight decay.
    package static func isExemptFromWeightDecay(_ name: String) -> Bool {
        name.contains("bn") || name.contains("ln") || name.contains("bias") || name.contains("logit_scale")
    }
}

// MARK: - Saving and restoring the optimiser state

extension AdamW {
    /// PyTorch's `optimizer.state_dict()` for AdamW as data: per-parameter states by flat index and the groups listing them.
    ///
    /// Indices count through the groups in order, as torch numbers them, so a checkpoint (Checkpoints pickles
    /// this type in torch's layout) fits any optimiser whose groups hold the same parameters in the same order.
    package struct StateDict: Sendable {
        /// One parameter's state (PyTorch's `optimizer.state[p]`).
        package struct ParameterState: Sendable {
            /// Updates applied to this parameter so far (`step`).
            package var step: Int
            /// First-moment estimate (`exp_avg`), shaped as the parameter.
            package var expAvg: Tensor
            /// Second-moment estimate (`exp_avg_sq`), shaped as the parameter.
            package var expAvgSq: Tensor

            /// A state of `step` updates with moments `expAvg` and `expAvgSq`.
            package init(step: Int, expAvg: Tensor, expAvgSq: Tensor) {
                self.step = step
                self.expAvg = expAvg
                self.expAvgSq = expAvgSq
            }
        }

        /// One parameter group's settings and the flat indices of its parameters.
        package struct Group: Sendable {
            /// Learning rate last set (by the schedule, in training).
            package var learningRate: Double
            /// Moment decay rates (β1, β2).
            package var betas: (Double, Double)
            /// Denominator epsilon.
            package var eps: Double
            /// Decoupled weight decay.
            package var weightDecay: Double
            /// The group's parameters, as indices into the parameters of all groups in order.
            package var parameterIndices: [Int]

            /// A group with these settings over `parameterIndices`.
            package init(learningRate: Double, betas: (Double, Double), eps: Double, weightDecay: Double, parameterIndices: [Int]) {
                self.learningRate = learningRate
                self.betas = betas
                self.eps = eps
                self.weightDecay = weightDecay
                self.parameterIndices = parameterIndices
            }
        }

        /// Per-parameter state by flat index (parameters that never took a step have none).
        package var state: [Int: ParameterState]
        /// The parameter groups, in order.
        package var groups: [Group]

        /// A state dict of `state` and `groups`.
        package init(state: [Int: ParameterState], groups: [Group]) {
            self.state = state
            self.groups = groups
        }
    }

    /// This optimiser's `state_dict()`: every group's settings and the state of each parameter that has taken a step.
    ///
    /// The moments are the optimiser's own buffers, as in torch (copies would double a large model's memory while
    /// it is saved); `step()` updates them in place, so use the result before the next step.
    package func stateDict() -> StateDict {
        var saved: [Int: StateDict.ParameterState] = [:]
        var groups: [StateDict.Group] = []
        var index = 0
        for group in self.groups {
            let first = index
            for (_, p) in group.parameters {
                saved[index] = state[ObjectIdentifier(p)]
                index += 1
            }
            groups.append(
                StateDict.Group(
                    learningRate: group.learningRate, betas: betas, eps: eps, weightDecay: group.weightDecay,
                    parameterIndices: Array(first..<index)))
        }
        return StateDict(state: saved, groups: groups)
    }

    /// Loads `stateDict` as torch's `load_state_dict` does: every group's learning rate and weight decay, the betas
    /// and eps, and each parameter's state by position in its group (parameters without one start fresh).
    ///
    /// Throws `OptimizerStateError`, changing nothing, where torch raises (another number of groups, or of parameters
    /// in a group), where torch would load and fail at the first step (a moment shaped unlike its parameter), and
    /// where groups differ in betas or eps (this AdamW has one of each). The moments are copied: `step()` updates
    /// them in place, and loaded tensors may be read-only memory maps.
    package func load(_ stateDict: StateDict) throws {
        guard stateDict.groups.count == groups.count else {
            throw OptimizerStateError.groupCount(saved: stateDict.groups.count, optimizer: groups.count)
        }
        for (gi, (saved, live)) in zip(stateDict.groups, groups).enumerated() {
            guard saved.parameterIndices.count == live.parameters.count else {
                throw OptimizerStateError.groupSize(group: gi, saved: saved.parameterIndices.count, optimizer: live.parameters.count)
            }
            for (index, (name, p)) in zip(saved.parameterIndices, live.parameters) {
                guard let s = stateDict.state[index] else { continue }
                for (field, t) in [("exp_avg", s.expAvg), ("exp_avg_sq", s.expAvgSq)] where t.shape != p.value.shape {
                    throw OptimizerStateError.shapeMismatch(index: index, name: name, field: field, expected: p.value.shape, found: t.shape)
                }
            }
        }
        if let first = stateDict.groups.first {
            guard stateDict.groups.allSatisfy({ $0.betas == first.betas && $0.eps == first.eps }) else {
                throw OptimizerStateError.differentBetasOrEps
            }
            betas = first.betas
            eps = first.eps
        }
        for (gi, saved) in stateDict.groups.enumerated() {
            groups[gi].learningRate = saved.learningRate
            groups[gi].weightDecay = saved.weightDecay
            for (index, (_, p)) in zip(saved.parameterIndices, groups[gi].parameters) {
                state[ObjectIdentifier(p)] = stateDict.state[index].map {
                    StateDict.ParameterState(step: $0.step, expAvg: $0.expAvg.copy(), expAvgSq: $0.expAvgSq.copy())
                }
            }
        }
    }
}

/// Why `AdamW.load(_:)` refuses a state dict.
package enum OptimizerStateError: Error, CustomStringConvertible, Equatable {
    /// The state dict has another number of parameter groups than the optimiser.
    case groupCount(saved: Int, optimizer: Int)
    /// Group `group` lists another number of parameters than the optimiser's group.
    case groupSize(group: Int, saved: Int, optimizer: Int)
    /// The state at flat `index` has a moment (`field`) shaped unlike its parameter `name`.
    case shapeMismatch(index: Int, name: String, field: String, expected: [Int], found: [Int])
    /// The groups differ in betas or eps, which one AdamW here cannot hold.
    case differentBetasOrEps

    /// The message of the ValueError torch's `load_state_dict` raises for this mismatch; nil where it raises none.
    package var torchValueError: String? {
        switch self {
        case .groupCount: return "loaded state dict has a different number of parameter groups"
        case .groupSize: return "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
        case .shapeMismatch, .differentBetasOrEps: return nil
        }
    }

    /// A message naming what differs.
    package var description: String {
        switch self {
        case let .groupCount(s, o): return "\(torchValueError!): \(s) saved, \(o) in the optimizer"
        case let .groupSize(g, s, o): return "\(torchValueError!): group \(g) has \(s) parameters saved, \(o) in the optimizer"
        case let .shapeMismatch(i, name, field, e, f): return "optimizer state \(i) ('\(name)'): \(field) has shape \(f), the parameter has \(e)"
        case .differentBetasOrEps: return "the saved parameter groups differ in betas or eps; one AdamW has one of each"
        }
    }
}
