// What a training checkpoint holds — the reference's `{"epoch", "step", "name", "state_dict", "optimizer"}` with
// `module.`-prefixed keys and the optimiser in `optimizer.state_dict()` layout — and the one place that writes
// and reads it. Reading takes the reference's torch.save files (so a run started with cn-clip can be resumed
// here). Writing uses safetensors with the scalars in its metadata until our torch.save writer lands; only
// `writeTrainingCheckpoint` changes then.

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

/// Writes `snapshot` to `url` atomically (temporary file, then rename).
public func writeTrainingCheckpoint(_ snapshot: TrainingSnapshot, to url: URL) throws {
    var tensors: [(String, CheckpointTensor)] = snapshot.stateDict.map { ($0.0, CheckpointTensor($0.1)) }
    var meta: [String: String] = ["format": "cnclip-training-checkpoint-1", "epoch": String(snapshot.epoch),
                                  "step": String(snapshot.step), "name": snapshot.name]
    if let o = snapshot.optimizer {
        for (i, s) in o.state.sorted(by: { $0.key < $1.key }) {
            tensors.append(("optimizer.state.\(i).exp_avg", CheckpointTensor(s.expAvg)))
            tensors.append(("optimizer.state.\(i).exp_avg_sq", CheckpointTensor(s.expAvgSq)))
            meta["optimizer.state.\(i).step"] = String(s.step)
        }
        let groups = o.groups.map { g -> [String: Any] in
            // Numbers as their shortest decimal text: JSON has no inf/nan, and a diverged lr must still be saved.
            ["lr": g.lr.description, "betas": g.betas.map(\.description), "eps": g.eps.description,
             "weight_decay": g.weightDecay.description, "params": g.params]
        }
        let json = try JSONSerialization.data(withJSONObject: groups, options: [.sortedKeys])
        meta["optimizer.param_groups"] = String(decoding: json, as: UTF8.self)
    }
    do { try SafeTensors.write(tensors, metadata: meta, to: url) } catch {
        throw TrainingError.io(path: url.path, reason: "cannot write the checkpoint: \(error)")
    }
}

/// Reads a training checkpoint: ours, or a reference `torch.save` file (`epoch`, `step`, `name`, `state_dict`, `optimizer`).
public func readTrainingCheckpoint(from url: URL) throws -> TrainingSnapshot {
    let path = url.path
    guard FileManager.default.fileExists(atPath: path) else {
        throw TrainingError.checkpoint(path: path, reason: "no such checkpoint file")
    }
    do {
        switch try CheckpointFormat.detect(url) {
        case .safetensors: return try readSafeTensorsCheckpoint(url)
        default: return try readTorchCheckpoint(url)
        }
    } catch let e as TrainingError { throw e } catch {
        throw TrainingError.checkpoint(path: path, reason: "cannot read the checkpoint: \(error)")
    }
}

private func readSafeTensorsCheckpoint(_ url: URL) throws -> TrainingSnapshot {
    let path = url.path
    let file = try SafeTensorsFile(url: url)
    let meta = file.metadata ?? [:]
    guard meta["format"] == "cnclip-training-checkpoint-1", let epoch = meta["epoch"].flatMap({ Int($0) }),
          let step = meta["step"].flatMap({ Int($0) }) else {
        throw TrainingError.checkpoint(path: path, reason: "not a training checkpoint (no epoch/step metadata): resume needs a checkpoint written by training")
    }
    var model: [(String, Tensor)] = []
    var moments: [Int: (Tensor?, Tensor?)] = [:]
    for key in file.keys {
        let t = try file.tensor(key).tensor
        if key.hasPrefix("optimizer.state.") {
            let parts = key.dropFirst("optimizer.state.".count).split(separator: ".", maxSplits: 1)
            guard parts.count == 2, let i = Int(parts[0]) else { throw TrainingError.checkpoint(path: path, reason: "key '\(key)': malformed optimizer key") }
            var m = moments[i] ?? (nil, nil)
            if parts[1] == "exp_avg" { m.0 = t } else { m.1 = t }
            moments[i] = m
        } else {
            model.append((key, t))
        }
    }
    var optimizer: OptimizerStateDict?
    if let groupsJSON = meta["optimizer.param_groups"] {
        guard let raw = try JSONSerialization.jsonObject(with: Data(groupsJSON.utf8)) as? [[String: Any]] else {
            throw TrainingError.checkpoint(path: path, reason: "metadata 'optimizer.param_groups' is not a list of groups")
        }
        let groups = try raw.map { g -> OptimizerStateDict.Group in
            func number(_ v: Any?) -> Double? { (v as? String).flatMap(Double.init) }
            guard let lr = number(g["lr"]), let rawBetas = g["betas"] as? [String], let eps = number(g["eps"]),
                  let wd = number(g["weight_decay"]), let params = g["params"] as? [Int] else {
                throw TrainingError.checkpoint(path: path, reason: "metadata 'optimizer.param_groups' has a malformed group")
            }
            return .init(lr: lr, betas: rawBetas.compactMap(Double.init), eps: eps, weightDecay: wd, params: params)
        }
        var state: [Int: AdamWParameterState] = [:]
        for (i, m) in moments {
            guard let a = m.0, let b = m.1, let s = meta["optimizer.state.\(i).step"].flatMap({ Int($0) }) else {
                throw TrainingError.checkpoint(path: path, reason: "optimizer state \(i) is incomplete")
            }
            state[i] = AdamWParameterState(step: s, expAvg: a, expAvgSq: b)
        }
        optimizer = OptimizerStateDict(state: state, groups: groups)
    }
    return TrainingSnapshot(epoch: epoch, step: step, name: meta["name"] ?? "", stateDict: model, optimizer: optimizer)
}

private func readTorchCheckpoint(_ url: URL) throws -> TrainingSnapshot {
    let path = url.path
    let ckpt = try TorchCheckpoint(url: url)
    guard let epoch = ckpt.epoch, let step = ckpt.step else {
        throw TrainingError.checkpoint(path: path, reason: "keys 'epoch' and 'step' missing: not a training checkpoint")
    }
    let sd = try ckpt.stateDict
    let model = sd.entries.map { ($0.key, $0.value.tensor) }
    var optimizer: OptimizerStateDict?
    if let o = ckpt.root["optimizer"]?.dictValue {
        guard let rawGroups = o["param_groups"]?.arrayValue, let rawState = o["state"]?.dictValue else {
            throw TrainingError.checkpoint(path: path, reason: "key 'optimizer' lacks 'state' or 'param_groups'")
        }
        let groups = try rawGroups.map { g -> OptimizerStateDict.Group in
            guard let lr = g["lr"]?.doubleValue, let betas = g["betas"]?.arrayValue?.compactMap(\.doubleValue),
                  let eps = g["eps"]?.doubleValue, let wd = g["weight_decay"]?.doubleValue,
                  let params = g["params"]?.arrayValue?.compactMap(\.intValue) else {
                throw TrainingError.checkpoint(path: path, reason: "key 'optimizer.param_groups' has a malformed group")
            }
            return .init(lr: lr, betas: betas, eps: eps, weightDecay: wd, params: params)
        }
        var state: [Int: AdamWParameterState] = [:]
        for (k, v) in rawState {
            guard let i = k.intValue, let a = v["exp_avg"]?.tensorValue?.tensor, let b = v["exp_avg_sq"]?.tensorValue?.tensor else {
                throw TrainingError.checkpoint(path: path, reason: "key 'optimizer.state.\(k)' lacks exp_avg/exp_avg_sq")
            }
            // `step` is a 0-d float tensor in torch ≥ 1.12, an int before.
            let s = v["step"]?.intValue ?? v["step"]?.tensorValue.map { Int($0.tensor.scalars[0]) }
            guard let s else { throw TrainingError.checkpoint(path: path, reason: "key 'optimizer.state.\(k).step' missing") }
            state[i] = AdamWParameterState(step: s, expAvg: a.copy(), expAvgSq: b.copy())
        }
        optimizer = OptimizerStateDict(state: state, groups: groups)
    }
    return TrainingSnapshot(epoch: epoch, step: step, name: ckpt.name ?? "", stateDict: model, optimizer: optimizer)
}
