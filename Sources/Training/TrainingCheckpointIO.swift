// What a training checkpoint holds — the reference's `{"epoch", "step", "name", "state_dict", "optimizer"}` with
// `module.`-prefixed keys and the optimiser in `optimizer.state_dict()` layout — and the one place that writes it
// (through `Checkpoints.TrainingCheckpoint`) and reads it for `--resume` (through `Checkpoints.loadCheckpoint`, the
// loader of every command), so a run started with cn-clip resumes here, and ours resume in cn-clip.

import Checkpoints
import Essentials
import Foundation
import NeuralNet
import Tensors

extension AdamW {
    /// `load(_:)` for `--resume`: a refusal becomes the `TrainingError.checkpoint` naming `source`, the reference's
    /// own failure and the flag that skips the optimizer state.
    func load(_ stateDict: StateDict, resumingFrom source: String) throws {
        do { try load(stateDict) } catch let e as OptimizerStateError {
            let what: String
            switch e {
            case let .groupCount(saved, live): what = "\(saved) parameter groups in the checkpoint, \(live) in the model's optimizer"
            case let .groupSize(g, saved, live): what = "group \(g) has \(saved) parameters in the checkpoint, \(live) in the model"
            case let .shapeMismatch(index, name, _, expected, found): what = "state \(index) has shape \(found), parameter '\(name)' is \(expected)"
            case .differentBetasOrEps:
                throw TrainingError.checkpoint(
                    path: source,
                    reason: "its optimizer groups have different betas or eps, "
                        + "which cnclip train does not support; use --reset-optimizer")
            }
            let reference = e.torchValueError.map { "stops with ValueError: \($0)" } ?? "loads it and fails at its first step"
            throw TrainingError.checkpoint(
                path: source,
                reason: "its optimizer state belongs to other parameters: \(what) "
                    + "(cn-clip's main.py \(reference)); another architecture, or --freeze-vision changed? Use --reset-optimizer to start a fresh optimizer"
            )
        }
    }
}

/// A training checkpoint: the reference's dict.
package struct TrainingSnapshot {
    /// 1-based epoch the checkpoint was saved in (after it, for end-of-epoch saves).
    package var epoch: Int
    /// Optimiser steps taken.
    package var step: Int
    /// The experiment name.
    package var name: String
    /// The model's values with `module.`-prefixed keys, in `state_dict` order.
    package var stateDict: [(String, Tensor)]
    /// The optimiser state (nil if the checkpoint holds none).
    package var optimizer: AdamW.StateDict?
}

/// Writes `snapshot` to `url` as the reference's `torch.save` of its dict, atomically (temporary file, then rename).
package func writeTrainingCheckpoint(_ snapshot: TrainingSnapshot, to url: URL) throws {
    let model = snapshot.stateDict.map { ($0.0.hasPrefix("module.") ? String($0.0.dropFirst(7)) : $0.0, $0.1) }
    let checkpoint = TrainingCheckpoint(
        epoch: snapshot.epoch, step: snapshot.step, name: snapshot.name, stateDict: model,
        optimizer: snapshot.optimizer?.pickleValue ?? .none)
    do { try checkpoint.write(to: url) } catch {
        throw FileError(path: url.path, reason: "cannot write the checkpoint: \(error)")
    }
}

/// A checkpoint opened by `train --resume`, read as cn-clip's `main.py` reads it: `checkpoint["state_dict"]` always
/// (through `Checkpoints.loadCheckpoint`, the loader of every command), `checkpoint["epoch"]` and `["step"]` only
/// without `--reset-data-offset`, `checkpoint["optimizer"]` only without `--reset-optimizer`.
package struct ResumeCheckpoint {
    /// The file, as given.
    package let path: String
    /// The weights, normalised for a model (`module.` stripped; `bert.pooler`, `num_batches_tracked`, `position_ids` dropped).
    package let stateDict: StateDict
    /// The torch.save dict's entries; nil when the file holds weights only.
    let entries: PickleDict?

    /// Opens `url`; errors are `TrainingError.checkpoint` naming the file.
    package init(contentsOf url: URL) throws {
        path = url.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError.checkpoint(path: path, reason: "no such checkpoint file")
        }
        do {
            let loaded = try loadCheckpoint(url)
            stateDict = loaded.stateDict
            entries = loaded.trainingEntries
        } catch let e as UserFacingError {  // CheckpointError or FileError
            throw TrainingError.checkpoint(path: path, reason: "cannot read the checkpoint: \(e.description)")
        }
    }

    /// `checkpoint["epoch"]` where present (the log line names it).
    package var epoch: Int? { entries?["epoch"]?.intValue }

    /// `checkpoint["epoch"]` and `checkpoint["step"]`: where the run stopped (1-based epoch, steps taken).
    package func position() throws -> (epoch: Int, step: Int) {
        guard let entries else {
            throw TrainingError.checkpoint(
                path: path,
                reason: "holds weights only, not a training checkpoint with 'epoch' and 'step': "
                    + "finetune from it with --reset-data-offset (and --reset-optimizer)")
        }
        func number(_ key: String) throws -> Int {
            guard let v = entries[key] else {
                throw TrainingError.checkpoint(
                    path: path,
                    reason: "has no '\(key)' entry (cn-clip's main.py stops with KeyError: '\(key)'); "
                        + "use --reset-data-offset to start from step 0")
            }
            guard let n = v.intValue, n >= 0 else {
                throw TrainingError.checkpoint(
                    path: path, reason: "its '\(key)' entry is \(v), not a step count; use --reset-data-offset to start from step 0")
            }
            return n
        }
        return (try number("epoch"), try number("step"))
    }

    /// `checkpoint["optimizer"]` as AdamW state; a missing, empty or unreadable entry is an error that names the
    /// reference's own failure and the flag that skips it. Its tensors may borrow the file's memory map (`AdamW.load` copies).
    package func optimizerState() throws -> AdamW.StateDict {
        let advice = "use --reset-optimizer to start a fresh optimizer"
        guard let entries else {
            throw TrainingError.checkpoint(path: path, reason: "the checkpoint has no optimizer state (it holds weights only); \(advice)")
        }
        guard let value = entries["optimizer"] else {
            throw TrainingError.checkpoint(
                path: path,
                reason: "the checkpoint has no optimizer state: no 'optimizer' entry "
                    + "(cn-clip's main.py stops with KeyError: 'optimizer'); \(advice)")
        }
        switch value {
        case .none:
            throw TrainingError.checkpoint(
                path: path,
                reason: "the checkpoint has no optimizer state: its 'optimizer' entry is None "
                    + "(cn-clip's main.py stops with AttributeError: 'NoneType' object has no attribute 'copy'); \(advice)")
        case .dict(let d) where d["param_groups"] == nil:
            throw TrainingError.checkpoint(
                path: path,
                reason: "the checkpoint has no optimizer state: its 'optimizer' entry "
                    + (d.entries.isEmpty ? "is empty" : "has no 'param_groups'")
                    + " (cn-clip's main.py stops with KeyError: 'param_groups'); \(advice)")
        default: break
        }
        do { return try AdamW.StateDict(value, source: path) } catch let e as CheckpointError {
            throw TrainingError.checkpoint(path: path, reason: "its optimizer state cannot be read: \(e.description); \(advice)")
        }
    }
}

/// Reads a training checkpoint (`epoch`, `step`, `name`, `state_dict`, `optimizer`) written by us or by the reference.
package func readTrainingCheckpoint(from url: URL) throws -> TrainingSnapshot {
    let c = try ResumeCheckpoint(contentsOf: url)
    let (epoch, step) = try c.position()
    let name = c.entries?["name"]?.stringValue ?? ""
    let optimizer = c.entries?["optimizer"] == nil || c.entries?["optimizer"] == PickleValue.none ? nil : try c.optimizerState()
    return TrainingSnapshot(
        epoch: epoch, step: step, name: name,
        stateDict: c.stateDict.entries.map { ("module." + $0.key, $0.value.tensor) }, optimizer: optimizer)
}
