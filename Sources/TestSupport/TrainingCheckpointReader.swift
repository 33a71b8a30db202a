// Reading a training checkpoint back entry by entry, strictly: the tests check with it what `TrainingCheckpoint.write`
// and the reference wrote. Commands never read checkpoints this way; they go through `Checkpoints.loadCheckpoint`
// (and `train --resume` through `Training.ResumeCheckpoint`), which decide what a model accepts.

import Checkpoints
import Foundation

extension TrainingCheckpoint {
    /// Reads a checkpoint written by the reference or by `write(to:)`; strips `module.` from the keys; requires `epoch`,
    /// `step`, `name` and `state_dict`.
    ///
    /// Tensors of any stored dtype come back as fp32 (fp32 ones borrowing the file's memory map).
    package init(contentsOf url: URL) throws {
        let file = try TorchCheckpoint(url: url)
        let path = url.path
        guard case .dict(let top) = file.root else {
            throw CheckpointError.typeMismatch(file: path, key: "<root>", reason: "the saved object is \(file.root.kindName), not a dict")
        }
        func required<T>(_ key: String, _ get: (PickleValue) -> T?, _ what: String) throws -> T {
            guard let v = top[key] else { throw CheckpointError.missingKey(file: path, key: key) }
            guard let t = get(v) else { throw CheckpointError.typeMismatch(file: path, key: key, reason: "is \(v.kindName), expected \(what)") }
            return t
        }
        let epoch = try required("epoch", { if case .int(let i) = $0 { return i } else { return nil } }, "an int")
        let step = try required("step", { if case .int(let i) = $0 { return i } else { return nil } }, "an int")
        let name = try required("name", \.stringValue, "a str")
        guard top["state_dict"] != nil else { throw CheckpointError.missingKey(file: path, key: "state_dict") }
        let stateDict = try StateDict.from(pickled: file.root, source: path).entries.map { key, t in
            (key.hasPrefix("module.") ? String(key.dropFirst("module.".count)) : key, t.tensor)
        }
        self.init(epoch: epoch, step: step, name: name, stateDict: stateDict, optimizer: top["optimizer"] ?? .none)
    }

}
