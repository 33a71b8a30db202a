// The one table that knows Hugging Face `ChineseCLIPModel` parameter names.
//
// Model code only ever sees the original cn-clip names (DESIGN.md); this file is the single place that
// translates, in both directions, so a new HF layout change is a one-line edit here. Besides renames,
// HF stores the two projections as Linear weights (transposed) and splits the fused attention in_proj
// into q/k/v, so those entries carry a tensor transform too.

import Foundation
import Tensors

/// Converts state dicts between Hugging Face `ChineseCLIPModel` names and the original cn-clip names.
package enum KeyRemap {
    enum Kind { case exact, transpose, param, prefix }

    /// Whole-model entries: original name, Hugging Face name, and how the tensor changes.
    /// `param`: both are prefixes followed by `weight` or `bias`; `prefix`: both are prefixes followed by anything.
    static let table: [(original: String, huggingFace: String, kind: Kind)] = [
        ("bert.", "text_model.", .prefix),
        ("text_projection", "text_projection.weight", .transpose),
        ("visual.proj", "visual_projection.weight", .transpose),
        ("logit_scale", "logit_scale", .exact),
        ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", .exact),
        ("visual.class_embedding", "vision_model.embeddings.class_embedding", .exact),
        ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", .exact),
        ("visual.ln_pre.", "vision_model.pre_layrnorm.", .param),  // "layrnorm" is Hugging Face's spelling
        ("visual.ln_post.", "vision_model.post_layernorm.", .param),
    ]
    /// Per-block entries under `visual.transformer.resblocks.{i}.` ↔ `vision_model.encoder.layers.{i}.` (all `param`).
    static let blockTable: [(original: String, huggingFace: String)] = [
        ("attn.out_proj.", "self_attn.out_proj."),
        ("ln_1.", "layer_norm1."),
        ("ln_2.", "layer_norm2."),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
    ]
    static let originalBlock = "visual.transformer.resblocks."
    static let huggingFaceBlock = "vision_model.encoder.layers."
    /// The fused attention projection, split in three along dim 0 in Hugging Face files.
    static let originalInProj = "attn.in_proj_"
    static let huggingFaceQKV = ["self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."]

    /// What happens to one key.
    enum Mapping: Equatable {
        case rename(String)
        case transpose(String)
        /// This key is part `index` (of 3) of the fused `target`.
        case fusedPart(target: String, index: Int)
        /// This fused key becomes three keys.
        case split([String])
        case drop
    }

    /// True when `keys` use Hugging Face names (a `vision_model.` / `text_model.` tree).
    package static func looksLikeHuggingFace<S: Sequence>(_ keys: S) -> Bool where S.Element == String {
        keys.contains { $0.hasPrefix("vision_model.") || $0.hasPrefix("text_model.") || $0 == "visual_projection.weight" }
    }

    private static func isParam(_ s: Substring) -> Bool { s == "weight" || s == "bias" }

    /// Splits `prefix{i}.rest` into `(i, rest)`.
    private static func block(_ key: String, _ prefix: String) -> (Int, Substring)? {
        guard key.hasPrefix(prefix) else { return nil }
        let tail = key.dropFirst(prefix.count)
        guard let dot = tail.firstIndex(of: "."), let i = Int(tail[..<dot]), i >= 0 else { return nil }
        return (i, tail[tail.index(after: dot)...])
    }

    /// The original-name mapping of Hugging Face key `key`, or nil when the table does not know it.
    static func fromHuggingFace(name key: String) -> Mapping? {
        if key.hasPrefix("text_model.pooler.") || key == "position_ids" || key.hasSuffix(".position_ids") { return .drop }
        if let (i, rest) = block(key, huggingFaceBlock) {
            let out = "\(originalBlock)\(i)."
            for (n, qkv) in huggingFaceQKV.enumerated() where rest.hasPrefix(qkv) {
                let p = rest.dropFirst(qkv.count)
                return isParam(p) ? .fusedPart(target: out + originalInProj + p, index: n) : nil
            }
            for (o, h) in blockTable where rest.hasPrefix(h) {
                let p = rest.dropFirst(h.count)
                return isParam(p) ? .rename(out + o + p) : nil
            }
            return nil
        }
        for (o, h, kind) in table {
            switch kind {
            case .exact: if key == h { return .rename(o) }
            case .transpose: if key == h { return .transpose(o) }
            case .param:
                if key.hasPrefix(h), isParam(key.dropFirst(h.count)) { return .rename(o + key.dropFirst(h.count)) }
            case .prefix:
                if key.hasPrefix(h), key.count > h.count { return .rename(o + key.dropFirst(h.count)) }
            }
        }
        return nil
    }

    /// The Hugging Face mapping of original key `key`, or nil when it has no Hugging Face counterpart.
    static func toHuggingFace(name key: String) -> Mapping? {
        if key.hasPrefix("bert.pooler.") || key == "position_ids" || key.hasSuffix(".position_ids") { return .drop }
        if let (i, rest) = block(key, originalBlock) {
            let out = "\(huggingFaceBlock)\(i)."
            if rest.hasPrefix(originalInProj) {
                let p = rest.dropFirst(originalInProj.count)
                return isParam(p) ? .split(huggingFaceQKV.map { out + $0 + p }) : nil
            }
            for (o, h) in blockTable where rest.hasPrefix(o) {
                let p = rest.dropFirst(o.count)
                return isParam(p) ? .rename(out + h + p) : nil
            }
            return nil
        }
        for (o, h, kind) in table {
            switch kind {
            case .exact: if key == o { return .rename(h) }
            case .transpose: if key == o { return .transpose(h) }
            case .param:
                if key.hasPrefix(o), isParam(key.dropFirst(o.count)) { return .rename(h + key.dropFirst(o.count)) }
            case .prefix:
                if key.hasPrefix(o), key.count > o.count { return .rename(h + key.dropFirst(o.count)) }
            }
        }
        return nil
    }

    /// A Hugging Face `ChineseCLIPModel` state dict under original names: projections transposed, q/k/v fused, pooler and `position_ids` dropped (listed in `dropped`).
    package static func fromHuggingFace(_ sd: StateDict) throws -> StateDict {
        var order: [String] = []
        var ready: [String: CheckpointTensor] = [:]
        var parts: [String: [CheckpointTensor?]] = [:]
        var out = StateDict(source: sd.source)
        out.dropped = sd.dropped
        for (key, t) in sd {
            guard let m = fromHuggingFace(name: key) else {
                throw CheckpointError.unknownKey(file: sd.source, key: key, reason: "not a Hugging Face ChineseCLIPModel parameter this table maps")
            }
            switch m {
            case .drop: out.dropped.append(key)
            case .rename(let o): order.append(o); ready[o] = t
            case .transpose(let o): order.append(o); ready[o] = try transpose(t, key: key, source: sd.source)
            case .fusedPart(let target, let index):
                if parts[target] == nil { parts[target] = [nil, nil, nil]; order.append(target) }
                parts[target]![index] = t
            case .split: preconditionFailure("split maps original names only")
            }
        }
        for (target, ts) in parts {
            let present = ts.compactMap { $0 }
            guard present.count == 3 else {
                let missing = zip(["q", "k", "v"], ts).filter { $0.1 == nil }.map(\.0).joined(separator: ", ")
                throw CheckpointError.missingKey(file: sd.source, key: "\(target) (Hugging Face \(missing)_proj missing)")
            }
            ready[target] = try concatenate(present, key: target, source: sd.source)
        }
        for k in order {
            if out.contains(k) { throw CheckpointError.typeMismatch(file: sd.source, key: k, reason: "two Hugging Face keys map to it") }
            out[k] = ready[k]!
        }
        return out
    }

    /// An original-name state dict under Hugging Face `ChineseCLIPModel` names (the inverse of `fromHuggingFace`); RN50 keys have no Hugging Face layout and throw.
    package static func toHuggingFace(_ sd: StateDict) throws -> StateDict {
        var out = StateDict(source: sd.source)
        out.dropped = sd.dropped
        for (key, t) in sd {
            guard let m = toHuggingFace(name: key) else {
                throw CheckpointError.unknownKey(
                    file: sd.source, key: key, reason: "has no Hugging Face ChineseCLIPModel name (RN50 models have no Hugging Face layout)")
            }
            switch m {
            case .drop: out.dropped.append(key)
            case .rename(let h): out[h] = t
            case .transpose(let h): out[h] = try transpose(t, key: key, source: sd.source)
            case .split(let names):
                for (h, piece) in zip(names, try split3(t, key: key, source: sd.source)) { out[h] = piece }
            case .fusedPart: preconditionFailure("fusedPart maps Hugging Face names only")
            }
        }
        return out
    }

    // MARK: tensor transforms

    /// The transpose of a 2-D floating tensor `[a, b]` → `[b, a]`.
    static func transpose(_ t: CheckpointTensor, key: String, source: String) throws -> CheckpointTensor {
        guard t.shape.count == 2, case .float(let x) = t.values else {
            throw CheckpointError.typeMismatch(
                file: source, key: key, reason: "expected a 2-D floating tensor to transpose, got \(t.dtype)\(t.shape)")
        }
        let (a, b) = (t.shape[0], t.shape[1])
        let y = Tensor.uninitialized([b, a])
        let src = x.data, dst = y.mutableData
        for i in 0..<a { for j in 0..<b { dst[j * a + i] = src[i * b + j] } }
        return CheckpointTensor(y, dtype: t.dtype)
    }

    /// Floating tensors `[n_i, ...]` stacked along dim 0.
    static func concatenate(_ ts: [CheckpointTensor], key: String, source: String) throws -> CheckpointTensor {
        let inner = Array(ts[0].shape.dropFirst())
        var rows = 0
        for t in ts {
            guard !t.shape.isEmpty, Array(t.shape.dropFirst()) == inner, t.isFloatingPoint else {
                throw CheckpointError.typeMismatch(
                    file: source, key: key, reason: "q/k/v parts have shapes \(ts.map(\.shape)); they must agree after dim 0")
            }
            rows += t.shape[0]
        }
        let y = Tensor.uninitialized([rows] + inner)
        var at = 0
        for t in ts {
            let x = t.tensor
            (y.mutableData + at).update(from: x.data, count: x.count)
            at += x.count
        }
        return CheckpointTensor(y, dtype: ts[0].dtype)
    }

    /// A floating tensor `[3n, ...]` cut into three `[n, ...]` pieces along dim 0.
    static func split3(_ t: CheckpointTensor, key: String, source: String) throws -> [CheckpointTensor] {
        guard let n0 = t.shape.first, n0 % 3 == 0, t.isFloatingPoint else {
            throw CheckpointError.typeMismatch(
                file: source, key: key, reason: "expected a floating tensor whose dim 0 divides by 3, got \(t.dtype)\(t.shape)")
        }
        let x = t.tensor
        return (0..<3).map { CheckpointTensor(x.rows((n0 / 3 * $0)..<(n0 / 3 * ($0 + 1))).copy(), dtype: t.dtype) }
    }
}
