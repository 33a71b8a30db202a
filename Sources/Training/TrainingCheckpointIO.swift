// What a training checkpoint holds — the reference's `{"epoch", "step", "name", "state_dict", "optimizer"}` with
// `module.`-prefixed keys and the optimiser in `optimizer.state_dict()` layout — and the one place that writes
// and reads it, as `torch.save` files through `Checkpoints.TrainingCheckpoint` — so a run started with cn-clip
// can be resumed here, and our checkpoints load in cn-clip.

import Checkpoints
import Foundation
import NeuralNet
import Tensors

/// PyTorch's `optimizer.state_dict()` for AdamW: per-index states and the groups listing their indices.
public struct OptimizerStateDict {
    /// One param group's settings and the indices of its parameters (indices count across groups, in order).
    public struct Group: Equatable {
        /// Learning rate last set by the schedule.
        public var lr: Double
        /// (β1, β2).
        public var betas: [Double]
        /// ε.
        public var eps: Double
        /// Weight decay.
        public var weightDecay: Double
        /// Parameter indices.
        public var params: [Int]
    }
    /// State by parameter index (parameters never updated have none).
    public var state: [Int: AdamWParameterState]
    /// The groups, in order.
    public var groups: [Group]

    /// The state dict of `optimizer` (parameters numbered across its groups in order).
    public init(_ optimizer: AdamW) {
        var state: [Int: AdamWParameterState] = [:]
        var groups: [Group] = []
        var index = 0
        for g in optimizer.groups {
            var ids: [Int] = []
            for (_, p) in g.parameters {
                if let s = optimizer.state(for: p) { state[index] = s }
                ids.append(index)
                index += 1
            }
            groups.append(Group(lr: g.learningRate, betas: [optimizer.betas.0, optimizer.betas.1], eps: optimizer.eps,
                                weightDecay: g.weightDecay, params: ids))
        }
        self.state = state
        self.groups = groups
    }

    /// A state dict from its parts.
    public init(state: [Int: AdamWParameterState], groups: [Group]) {
        self.state = state
        self.groups = groups
    }

    /// Loads this state into `optimizer` as `optimizer.load_state_dict` does: same group sizes required;
    /// group learning rates and states restored by position. `source` names the checkpoint in errors.
    public func restore(into optimizer: AdamW, source: String) throws {
        guard groups.count == optimizer.groups.count else {
            throw TrainingError.checkpoint(path: source, reason: "the optimizer state has \(groups.count) parameter groups, the model's optimizer \(optimizer.groups.count)")
        }
        var index = 0
        for (gi, (saved, live)) in zip(groups, optimizer.groups).enumerated() {
            guard saved.params.count == live.parameters.count else {
                throw TrainingError.checkpoint(path: source, reason: "optimizer group \(gi) has \(saved.params.count) parameters in the checkpoint, \(live.parameters.count) in the model (another architecture, or --freeze-vision changed?)")
            }
            for (savedIndex, (name, p)) in zip(saved.params, live.parameters) {
                if let s = state[savedIndex] {
                    guard s.expAvg.shape == p.value.shape, s.expAvgSq.shape == p.value.shape else {
                        throw TrainingError.checkpoint(path: source, reason: "optimizer state \(savedIndex) has shape \(s.expAvg.shape); parameter '\(name)' is \(p.value.shape)")
                    }
                }
                index += 1
            }
        }
        for (gi, saved) in groups.enumerated() {
            optimizer.groups[gi].learningRate = saved.lr
            for (savedIndex, (_, p)) in zip(saved.params, optimizer.groups[gi].parameters) {
                optimizer.setState(state[savedIndex], for: p)
            }
        }
    }
}

/// A training checkpoint: the reference's dict.
public struct TrainingSnapshot {
    /// 1-based epoch the checkpoint was saved in (after it, for end-of-epoch saves).
    public var epoch: Int
    /// Optimiser steps taken.
    public var step: Int
    /// The experiment name.
    public var name: String
    /// The model's values with `module.`-prefixed keys, in `state_dict` order.
    public var stateDict: [(String, Tensor)]
    /// The optimiser state (nil if the checkpoint holds none).
    public var optimizer: OptimizerStateDict?
}

/// Writes `snapshot` to `url` as the reference's `torch.save` of its dict, atomically (temporary file, then rename).
public func writeTrainingCheckpoint(_ snapshot: TrainingSnapshot, to url: URL) throws {
    let model = snapshot.stateDict.map { ($0.0.hasPrefix("module.") ? String($0.0.dropFirst(7)) : $0.0, $0.1) }
    var optimizer: PickleValue = .none
    if let o = snapshot.optimizer {
        let state = o.state.mapValues { AdamWStateDict.ParameterState(step: $0.step, expAvg: $0.expAvg, expAvgSq: $0.expAvgSq) }
        let groups = o.groups.map {
            AdamWStateDict.Group(learningRate: $0.lr, betas: ($0.betas.first ?? 0.9, $0.betas.last ?? 0.999), eps: $0.eps,
                                 weightDecay: $0.weightDecay, parameterIndices: $0.params)
        }
        optimizer = AdamWStateDict(state: state, groups: groups).pickleValue
    }
    let checkpoint = TrainingCheckpoint(epoch: snapshot.epoch, step: snapshot.step, name: snapshot.name, stateDict: model, optimizer: optimizer)
    do { try checkpoint.write(to: url) } catch {
        throw TrainingError.io(path: url.path, reason: "cannot write the checkpoint: \(error)")
    }
}

/// Reads a training checkpoint (`epoch`, `step`, `name`, `state_dict`, `optimizer`) written by us or by the reference.
public func readTrainingCheckpoint(from url: URL) throws -> TrainingSnapshot {
    let path = url.path
    guard FileManager.default.fileExists(atPath: path) else {
        throw TrainingError.checkpoint(path: path, reason: "no such checkpoint file")
    }
    do {
        let c = try TrainingCheckpoint(contentsOf: url)
        var optimizer: OptimizerStateDict?
        if c.optimizer != .none {
            let o = try AdamWStateDict(c.optimizer, source: path)
            optimizer = OptimizerStateDict(
                state: o.state.mapValues { AdamWParameterState(step: $0.step, expAvg: $0.expAvg.copy(), expAvgSq: $0.expAvgSq.copy()) },
                groups: o.groups.map { .init(lr: $0.learningRate, betas: [$0.betas.0, $0.betas.1], eps: $0.eps,
                                             weightDecay: $0.weightDecay, params: $0.parameterIndices) })
        }
        return TrainingSnapshot(epoch: c.epoch, step: c.step, name: c.name,
                                stateDict: c.stateDict.map { ("module." + $0.0, $0.1) }, optimizer: optimizer)
    } catch let e as TrainingError { throw e } catch {
        throw TrainingError.checkpoint(path: path, reason: "cannot read the checkpoint: \(error)")
    }
}
