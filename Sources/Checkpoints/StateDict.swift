// Named tensors in file order, and the normalisation every model load goes through.
//
// Loading is strict (DESIGN.md): every key must be used or explicitly dropped, so the keys a model never
// has are removed here, in one place, and remembered in `dropped` for the loader to report.

import Foundation
import Tensors

/// Named checkpoint tensors in file order, plus the keys that were dropped on the way in.
package struct StateDict: Sendable, Sequence {
    /// The keys in order.
    package private(set) var keys: [String] = []
    private var tensors: [String: CheckpointTensor] = [:]
    /// Keys removed while normalising (prefixes already stripped), in the order they were met.
    package var dropped: [String] = []
    /// Where the tensors came from, for error messages.
    package var source: String

    /// An empty state dict whose errors name `source`.
    package init(source: String = "<memory>") {
        self.source = source
    }

    /// A state dict of `entries` in order; a repeated key keeps its first position and last value.
    package init(_ entries: [(String, CheckpointTensor)], source: String = "<memory>") {
        self.source = source
        for (k, v) in entries { self[k] = v }
    }

    /// Number of tensors.
    package var count: Int { keys.count }
    /// True when there are no tensors.
    package var isEmpty: Bool { keys.isEmpty }

    /// The tensor for `key`; setting replaces in place, appends a new key, or removes with nil.
    package subscript(key: String) -> CheckpointTensor? {
        get { tensors[key] }
        set {
            if let newValue {
                if tensors.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if tensors.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// True when `key` is present.
    package func contains(_ key: String) -> Bool { tensors[key] != nil }

    /// The entries in order.
    package var entries: [(key: String, value: CheckpointTensor)] { keys.map { ($0, tensors[$0]!) } }

    /// Iterates `(key, tensor)` in order.
    package func makeIterator() -> IndexingIterator<[(key: String, value: CheckpointTensor)]> { entries.makeIterator() }

    /// The fp32 tensor for `key`; throws `missingKey` naming the source and key.
    package func tensor(_ key: String) throws -> Tensor {
        guard let t = tensors[key] else { throw CheckpointError.missingKey(file: source, key: key) }
        return t.tensor
    }

    /// The fp32 tensor for `key`, which must have `shape`; a mismatch throws naming the key and both shapes.
    package func tensor(_ key: String, shape: [Int]) throws -> Tensor {
        guard let t = tensors[key] else { throw CheckpointError.missingKey(file: source, key: key) }
        guard t.shape == shape else {
            throw CheckpointError.typeMismatch(file: source, key: key, reason: "shape \(t.shape) in the checkpoint, model expects \(shape)")
        }
        return t.tensor
    }

    /// Removes and returns the tensor for `key`.
    @discardableResult
    package mutating func remove(_ key: String) -> CheckpointTensor? {
        let v = self[key]
        self[key] = nil
        return v
    }

    /// True for keys no model here has, dropped on every load: BERT's pooler (cn-clip's BERT has one its CLIP never
    /// uses, and `main.py` filters `bert.pooler` keys out before loading), `position_ids` buffers (Hugging Face), and
    /// BatchNorm `num_batches_tracked` counters — with a momentum set they change no output, so our BatchNorm keeps
    /// none; torch's BatchNorm `_load_from_state_dict` fills a missing one, which is how cn-clip loads our RN files.
    package static func isDroppedForModel(_ key: String) -> Bool {
        key.hasPrefix("bert.pooler.") || key == "position_ids" || key.hasSuffix(".position_ids")
            || key.hasSuffix(".num_batches_tracked") || key == "num_batches_tracked"
    }

    /// This state dict as a model consumes it: `module.` stripped, Hugging Face names mapped, unused keys dropped (and listed in `dropped`).
    package func normalizedForModel() throws -> StateDict {
        var out = StateDict(source: source)
        out.dropped = dropped
        for key in keys {
            let name = key.hasPrefix("module.") ? String(key.dropFirst("module.".count)) : key
            if out.contains(name) {
                throw CheckpointError.typeMismatch(file: source, key: key, reason: "appears twice once the 'module.' prefix is removed")
            }
            out[name] = tensors[key]!
        }
        if KeyRemap.looksLikeHuggingFace(out.keys) { out = try KeyRemap.fromHuggingFace(out) }
        for key in out.keys where Self.isDroppedForModel(key) {
            out.remove(key)
            out.dropped.append(key)
        }
        return out
    }

    /// The state dict inside a decoded `torch.save` object: its `state_dict` entry, or the object itself when it is a bare state dict.
    package static func from(pickled root: PickleValue, source: String) throws -> StateDict {
        guard case .dict(let top) = root else {
            throw CheckpointError.typeMismatch(file: source, key: "<root>", reason: "the saved object is not a dict")
        }
        let dict: PickleDict
        let prefix: String
        if case .dict(let inner)? = top["state_dict"] { dict = inner; prefix = "state_dict." } else { dict = top; prefix = "" }
        var out = StateDict(source: source)
        for (k, v) in dict {
            guard case .string(let key) = k else {
                throw CheckpointError.typeMismatch(file: source, key: "\(prefix)\(k)", reason: "state dict key is not a str")
            }
            guard case .tensor(let t) = v else {
                throw CheckpointError.typeMismatch(file: source, key: prefix + key, reason: "value is \(v.kindName), not a tensor")
            }
            out[key] = t
        }
        return out
    }
}

extension PickleValue {
    /// Python's name for the value's type, for error messages.
    package var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "a bool"
        case .int: return "an int"
        case .float: return "a float"
        case .string: return "a str"
        case .bytes: return "bytes"
        case .list: return "a list"
        case .tuple: return "a tuple"
        case .dict: return "a dict"
        case .tensor: return "a tensor"
        }
    }
}
