// What a training checkpoint holds — the reference's `{"epoch", "step", "name", "state_dict", "optimizer"}` with
// `module.`-prefixed keys and the optimiser in `optimizer.state_dict()` layout — and the one place that writes it
// (through `Checkpoints.TrainingCheckpoint`) and reads it for `--resume` (through `Checkpoints.loadCheckpoint`, the
// loader of every command), so a run started with cn-clip resumes here, and ours resume in cn-clip.

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

    /// Loads this state into `optimizer` as `optimizer.load_state_dict` does: the same number of groups and of
    /// parameters in each, then every group's saved settings (lr, weight decay, betas, eps) and each parameter's
    /// state by position. Nothing changes unless everything fits. Errors name `source` and the reference's reason.
    public func restore(into optimizer: AdamW, source: String) throws {
        func mismatch(_ what: String, reference: String) -> TrainingError {
            .checkpoint(path: source, reason: "its optimizer state belongs to other parameters: \(what) (cn-clip's main.py \(reference)); "
                + "another architecture, or --freeze-vision changed? Use --reset-optimizer to start a fresh optimizer")
        }
        guard groups.count == optimizer.groups.count else {
            throw mismatch("\(groups.count) parameter groups in the checkpoint, \(optimizer.groups.count) in the model's optimizer",
                           reference: "stops with ValueError: loaded state dict has a different number of parameter groups")
        }
        for (gi, (saved, live)) in zip(groups, optimizer.groups).enumerated() {
            guard saved.params.count == live.parameters.count else {
                throw mismatch("group \(gi) has \(saved.params.count) parameters in the checkpoint, \(live.parameters.count) in the model",
                               reference: "stops with ValueError: loaded state dict contains a parameter group that doesn't match the size of optimizer's group")
            }
            for (savedIndex, (name, p)) in zip(saved.params, live.parameters) {
                if let s = state[savedIndex] {
                    guard s.expAvg.shape == p.value.shape, s.expAvgSq.shape == p.value.shape else {
                        throw mismatch("state \(savedIndex) has shape \(s.expAvg.shape), parameter '\(name)' is \(p.value.shape)",
                                       reference: "loads it and fails at its first step")
                    }
                }
            }
        }
        // One AdamW here has one betas/eps; cn-clip's main.py gives every group the same ones.
        if let first = groups.first {
            guard first.betas.count == 2, groups.allSatisfy({ $0.betas == first.betas && $0.eps == first.eps }) else {
                throw TrainingError.checkpoint(path: source, reason: "its optimizer groups have different betas or eps, which cnclip train does not support; use --reset-optimizer")
            }
            optimizer.betas = (first.betas[0], first.betas[1])
            optimizer.eps = first.eps
        }
        for (gi, saved) in groups.enumerated() {
            optimizer.groups[gi].learningRate = saved.lr
            optimizer.groups[gi].weightDecay = saved.weightDecay
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

/// A checkpoint opened by `train --resume`, read as cn-clip's `main.py` reads it: `checkpoint["state_dict"]` always
/// (through `Checkpoints.loadCheckpoint`, the loader of every command), `checkpoint["epoch"]` and `["step"]` only
/// without `--reset-data-offset`, `checkpoint["optimizer"]` only without `--reset-optimizer`.
public struct ResumeCheckpoint {
    /// The file, as given.
    public let path: String
    /// The weights, normalised for a model (`module.` stripped; `bert.pooler`, `num_batches_tracked`, `position_ids` dropped).
    public let stateDict: StateDict
    /// The torch.save dict's entries; nil when the file holds weights only.
    let entries: PickleDict?

    /// Opens `url`; errors are `TrainingError.checkpoint` naming the file.
    public init(contentsOf url: URL) throws {
        path = url.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError.checkpoint(path: path, reason: "no such checkpoint file")
        }
        do {
            let loaded = try loadCheckpoint(url)
            stateDict = loaded.stateDict
            entries = loaded.trainingEntries
        } catch let e as CheckpointError {
            throw TrainingError.checkpoint(path: path, reason: "cannot read the checkpoint: \(e.description)")
        }
    }

    /// `checkpoint["epoch"]` where present (the log line names it).
    public var epoch: Int? { entries?["epoch"]?.intValue }

    /// `checkpoint["epoch"]` and `checkpoint["step"]`: where the run stopped (1-based epoch, steps taken).
    public func position() throws -> (epoch: Int, step: Int) {
        guard let entries else {
            throw TrainingError.checkpoint(path: path, reason: "holds weights only, not a training checkpoint with 'epoch' and 'step': "
                + "finetune from it with --reset-data-offset (and --reset-optimizer)")
        }
        func number(_ key: String) throws -> Int {
            guard let v = entries[key] else {
                throw TrainingError.checkpoint(path: path, reason: "has no '\(key)' entry (cn-clip's main.py stops with KeyError: '\(key)'); "
                    + "use --reset-data-offset to start from step 0")
            }
            guard let n = v.intValue, n >= 0 else {
                throw TrainingError.checkpoint(path: path, reason: "its '\(key)' entry is \(v), not a step count; use --reset-data-offset to start from step 0")
            }
            return n
        }
        return (try number("epoch"), try number("step"))
    }

    /// `checkpoint["optimizer"]` as AdamW state; a missing, empty or unreadable entry is an error that names the
    /// reference's own failure and the flag that skips it.
    public func optimizerState() throws -> OptimizerStateDict {
        let advice = "use --reset-optimizer to start a fresh optimizer"
        guard let entries else {
            throw TrainingError.checkpoint(path: path, reason: "the checkpoint has no optimizer state (it holds weights only); \(advice)")
        }
        guard let value = entries["optimizer"] else {
            throw TrainingError.checkpoint(path: path, reason: "the checkpoint has no optimizer state: no 'optimizer' entry "
                + "(cn-clip's main.py stops with KeyError: 'optimizer'); \(advice)")
        }
        switch value {
        case .none:
            throw TrainingError.checkpoint(path: path, reason: "the checkpoint has no optimizer state: its 'optimizer' entry is None "
                + "(cn-clip's main.py stops with AttributeError: 'NoneType' object has no attribute 'copy'); \(advice)")
        case .dict(let d) where d["param_groups"] == nil:
            throw TrainingError.checkpoint(path: path, reason: "the checkpoint has no optimizer state: its 'optimizer' entry "
                + (d.entries.isEmpty ? "is empty" : "has no 'param_groups'") + " (cn-clip's main.py stops with KeyError: 'param_groups'); \(advice)")
        default: break
        }
        let o: AdamWStateDict
        do { o = try AdamWStateDict(value, source: path) } catch let e as CheckpointError {
            throw TrainingError.checkpoint(path: path, reason: "its optimizer state cannot be read: \(e.description); \(advice)")
        }
        return OptimizerStateDict(
            state: o.state.mapValues { AdamWParameterState(step: $0.step, expAvg: $0.expAvg.copy(), expAvgSq: $0.expAvgSq.copy()) },
            groups: o.groups.map { .init(lr: $0.learningRate, betas: [$0.betas.0, $0.betas.1], eps: $0.eps,
                                         weightDecay: $0.weightDecay, params: $0.parameterIndices) })
    }
}

/// Reads a training checkpoint (`epoch`, `step`, `name`, `state_dict`, `optimizer`) written by us or by the reference.
public func readTrainingCheckpoint(from url: URL) throws -> TrainingSnapshot {
    let c = try ResumeCheckpoint(contentsOf: url)
    let (epoch, step) = try c.position()
    let name = c.entries?["name"]?.stringValue ?? ""
    let optimizer = c.entries?["optimizer"] == nil || c.entries?["optimizer"] == PickleValue.none ? nil : try c.optimizerState()
    return TrainingSnapshot(epoch: epoch, step: step, name: name,
                            stateDict: c.stateDict.entries.map { ("module." + $0.key, $0.value.tensor) }, optimizer: optimizer)
}
