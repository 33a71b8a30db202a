// cn-clip's training checkpoint: what `cn_clip/training/main.py` saves with
//   torch.save({"epoch": epoch + 1, "step": steps, "name": args.name,
//               "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
// The model there is wrapped in DistributedDataParallel, so every state-dict key starts with `module.`;
// this type keeps keys without it (the model's own names) and adds it back when writing.
// The optimizer entry is `torch.optim.AdamW.state_dict()`: NeuralNet's `AdamW.StateDict`, pickled in torch's
// layout by the extension below. The checkpoint keeps the entry pickled, since the reference's files also hold
// forms that are not a state dict (`{}`, None) and the commands that read them decide what those mean.

import Foundation
import NeuralNet
import Tensors

/// A cn-clip training checkpoint (`epoch`, `step`, `name`, `state_dict`, `optimizer`), read and written as torch does.
package struct TrainingCheckpoint: Sendable {
    /// The epoch the checkpoint was written after (the reference saves `epoch + 1`).
    package var epoch: Int
    /// Optimisation steps taken so far.
    package var step: Int
    /// The experiment name (`--name`).
    package var name: String
    /// The model's parameters and buffers in order, keys without the `module.` prefix.
    package var stateDict: [(String, Tensor)]
    /// The `optimizer` entry as pickled (`AdamW.StateDict.pickleValue` writes it, `AdamW.StateDict(_:source:)` reads it); `.none` when absent.
    package var optimizer: PickleValue

    /// A checkpoint of `stateDict` (keys without `module.`) and `optimizer` at `epoch`/`step`.
    package init(epoch: Int, step: Int, name: String, stateDict: [(String, Tensor)], optimizer: PickleValue = .none) {
        self.epoch = epoch
        self.step = step
        self.name = name
        self.stateDict = stateDict
        self.optimizer = optimizer
    }

    /// Writes the checkpoint as the reference's `torch.save` call does, atomically; keys get the `module.` prefix. An
    /// `optimizer` of `.none` is left out.
    ///
    /// BatchNorm `num_batches_tracked` counters are stored as int64, as torch keeps them; every other tensor
    /// as float32. The archive's top folder is the file name without extension, as `torch.save` names it.
    package func write(to url: URL) throws {
        var sd = PickleDict()
        sd.isOrderedDict = true
        for (key, t) in stateDict {
            let value: CheckpointTensor
            if key.hasSuffix("num_batches_tracked") {
                value = CheckpointTensor(shape: t.shape, integers: t.scalars.map { Int64($0) }, dtype: .int64)
            } else {
                value = CheckpointTensor(t)
            }
            sd[.string("module." + key)] = .tensor(value)
        }
        var root = PickleDict([
            (.string("epoch"), .int(epoch)),
            (.string("step"), .int(step)),
            (.string("name"), .string(name)),
            (.string("state_dict"), .dict(sd)),
        ])
        // A model-only checkpoint (`cnclip convert --to pt`) has no optimizer entry, like the released ones.
        if case .none = optimizer {} else { root[.string("optimizer")] = optimizer }
        let base = url.deletingPathExtension().lastPathComponent
        try TorchSave.write(.dict(root), to: url, archiveName: base.isEmpty || base.contains("/") ? "archive" : base)
    }
}

/// `torch.optim.AdamW.state_dict()` in its pickled form.
///
/// Layout (torch 2.15): `{"state": {index: {"step": 0-d float32 tensor, "exp_avg": tensor, "exp_avg_sq":
/// tensor}}, "param_groups": [{"weight_decay", "lr", "betas": (b1, b2), "eps", "amsgrad": False, "maximize":
/// False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
/// "decoupled_weight_decay": True, "params": [indices]}]}`; indices count through the groups in order.
extension AdamW.StateDict {
    /// The pickled form `torch.save` writes (state indices ascending, group keys in torch 2.15's order).
    package var pickleValue: PickleValue {
        var st = PickleDict()
        for i in state.keys.sorted() {
            let s = state[i]!
            st[.int(i)] = .dict(
                PickleDict([
                    (.string("step"), .tensor(CheckpointTensor(Tensor(shape: [], scalars: [Float(s.step)])))),
                    (.string("exp_avg"), .tensor(CheckpointTensor(s.expAvg))),
                    (.string("exp_avg_sq"), .tensor(CheckpointTensor(s.expAvgSq))),
                ]))
        }
        let gs: [PickleValue] = groups.map { g in
            .dict(
                PickleDict([
                    (.string("weight_decay"), .float(g.weightDecay)),
                    (.string("lr"), .float(g.learningRate)),
                    (.string("betas"), .tuple([.float(g.betas.0), .float(g.betas.1)])),
                    (.string("eps"), .float(g.eps)),
                    (.string("amsgrad"), .bool(false)),
                    (.string("maximize"), .bool(false)),
                    (.string("foreach"), .none),
                    (.string("capturable"), .bool(false)),
                    (.string("differentiable"), .bool(false)),
                    (.string("fused"), .none),
                    (.string("decoupled_weight_decay"), .bool(true)),
                    (.string("params"), .list(g.parameterIndices.map { .int($0) })),
                ]))
        }
        return .dict(PickleDict([(.string("state"), .dict(st)), (.string("param_groups"), .list(gs))]))
    }

    /// Parses a pickled AdamW state dict (torch 1.x–2.x: `step` as a tensor or a number); errors name `source` and the key.
    package init(_ value: PickleValue, source: String = "<optimizer>") throws {
        func bad(_ key: String, _ reason: String) -> CheckpointError { .typeMismatch(file: source, key: "optimizer." + key, reason: reason) }
        guard case .dict(let top) = value else { throw bad("", "is \(value.kindName), not a dict") }
        guard case .dict(let st)? = top["state"] else { throw CheckpointError.missingKey(file: source, key: "optimizer.state") }
        guard let gl = top["param_groups"]?.arrayValue else { throw CheckpointError.missingKey(file: source, key: "optimizer.param_groups") }
        var state: [Int: ParameterState] = [:]
        for (k, v) in st {
            guard case .int(let i) = k else { throw bad("state", "key \(k) is not an int") }
            let at = "state.\(i)"
            guard case .dict(let d) = v else { throw bad(at, "is \(v.kindName), not a dict") }
            func tensor(_ name: String) throws -> Tensor {
                guard let t = d[name] else { throw CheckpointError.missingKey(file: source, key: "optimizer.\(at).\(name)") }
                guard case .tensor(let ct) = t else { throw bad("\(at).\(name)", "is \(t.kindName), not a tensor") }
                return ct.tensor
            }
            let step: Int
            switch d["step"] {
            case .tensor(let t)? where t.count == 1: step = Int(t.floats[0])
            case .int(let n)?: step = n
            case .float(let x)?: step = Int(x)
            case let other?: throw bad("\(at).step", "is \(other.kindName), not a number or a one-element tensor")
            case nil: throw CheckpointError.missingKey(file: source, key: "optimizer.\(at).step")
            }
            state[i] = ParameterState(step: step, expAvg: try tensor("exp_avg"), expAvgSq: try tensor("exp_avg_sq"))
        }
        var groups: [Group] = []
        for (gi, g) in gl.enumerated() {
            let at = "param_groups.\(gi)"
            guard case .dict(let d) = g else { throw bad(at, "is \(g.kindName), not a dict") }
            func number(_ name: String) throws -> Double {
                guard let v = d[name] else { throw CheckpointError.missingKey(file: source, key: "optimizer.\(at).\(name)") }
                guard let x = v.doubleValue else { throw bad("\(at).\(name)", "is \(v.kindName), not a number") }
                return x
            }
            guard let b = d["betas"]?.arrayValue, b.count == 2, let b1 = b[0].doubleValue, let b2 = b[1].doubleValue else {
                throw bad("\(at).betas", "is not a pair of numbers")
            }
            guard let ps = d["params"]?.arrayValue else { throw CheckpointError.missingKey(file: source, key: "optimizer.\(at).params") }
            let indices = try ps.map { p -> Int in
                guard case .int(let i) = p else { throw bad("\(at).params", "holds \(p.kindName), not parameter indices") }
                return i
            }
            groups.append(
                Group(
                    learningRate: try number("lr"), betas: (b1, b2), eps: try number("eps"),
                    weightDecay: try number("weight_decay"), parameterIndices: indices))
        }
        self.init(state: state, groups: groups)
    }
}
