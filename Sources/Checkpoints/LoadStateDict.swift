// One entry point for "give me the weights in this path", whatever produced the path.
//
// The format is sniffed from the bytes, not trusted from the extension: released cn-clip checkpoints
// are `.pt`, Hugging Face ones `.bin` or `.safetensors`, and users rename files.

import Essentials
import Foundation

/// The checkpoint formats `loadStateDict` recognises.
package enum CheckpointFormat: String, Sendable {
    /// A `torch.save` zip archive (`.pt`, `.bin`).
    case torchZip
    /// A safetensors file.
    case safetensors
    /// A Hugging Face model directory (`config.json` plus `model.safetensors` or `pytorch_model.bin`, possibly sharded).
    case huggingFaceDirectory

    /// Detects the format of `url` from its first bytes (or from being a directory).
    package static func detect(_ url: URL) throws -> CheckpointFormat {
        let path = url.path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FileError(path: path, reason: "no such file or directory")
        }
        if isDir.boolValue { return .huggingFaceDirectory }
        guard let h = FileHandle(forReadingAtPath: path) else { throw FileError(path: path, reason: "cannot open") }
        defer { try? h.close() }
        let head = [UInt8](h.readData(ofLength: 9))
        if head.count >= 4, head[0] == 0x50, head[1] == 0x4b, head[2] == 0x03 || head[2] == 0x05, head[3] == 0x04 || head[3] == 0x06 {
            return .torchZip
        }
        if head.count >= 4, head[0] == 0x80, head[1] == 0x02, head[2] == 0x8a, head[3] == 0x0a {
            throw CheckpointError.legacyTorchFormat(file: path)
        }
        if head.count == 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        if url.pathExtension == "safetensors" { return .safetensors }  // let the reader report what is wrong with it
        throw CheckpointError.unsupportedFormat(file: path, reason: "neither a torch.save zip archive nor a safetensors file")
    }
}

/// The raw tensors of `url` (no prefix stripping or renaming): a torch file's state dict, a safetensors file, or a Hugging Face directory's weights.
package func loadRawStateDict(_ url: URL) throws -> StateDict {
    switch try CheckpointFormat.detect(url) {
    case .torchZip: return try TorchCheckpoint(url: url).stateDict
    case .safetensors: return try SafeTensors.read(url)
    case .huggingFaceDirectory: return try loadHuggingFaceDirectory(url)
    }
}

/// A checkpoint as every command reads it: the tensors ready for a model and, for a cn-clip training checkpoint,
/// the dict's other entries (`epoch`, `step`, `name`, `optimizer`), which only `train --resume` reads.
package struct LoadedCheckpoint: Sendable {
    /// The tensors after `StateDict.normalizedForModel()`: what is accepted, renamed and dropped is decided there.
    package var stateDict: StateDict
    /// The top-level dict of a `torch.save({"epoch", "step", "name", "state_dict", "optimizer"})` file; nil for a
    /// bare state dict, a safetensors file or a Hugging Face directory, which hold weights only.
    package var trainingEntries: PickleDict?
}

/// The one checkpoint loader of every command (encode, extract, zero-shot, index, serve, train): a `.pt`/`.bin`,
/// a `.safetensors` or a Hugging Face directory, its tensors normalised for a model.
///
/// Mirrors how cn-clip reads checkpoints: its inference scripts (`extract_features.py`, `zeroshot_evaluation.py`)
/// take `checkpoint["state_dict"]` and strip `module.`; `load_from_name` does the same for released files; its
/// `main.py` drops `bert.pooler` keys. A bare state dict (no `state_dict` entry) is read as one too.
package func loadCheckpoint(_ url: URL) throws -> LoadedCheckpoint {
    switch try CheckpointFormat.detect(url) {
    case .torchZip:
        let file = try TorchCheckpoint(url: url)
        var entries: PickleDict?
        if case .dict(let top) = file.root, top["state_dict"] != nil { entries = top }
        return LoadedCheckpoint(stateDict: try file.stateDict.normalizedForModel(), trainingEntries: entries)
    case .safetensors, .huggingFaceDirectory:
        return LoadedCheckpoint(stateDict: try loadRawStateDict(url).normalizedForModel(), trainingEntries: nil)
    }
}

/// The tensors of `url` ready for a model: `.pt`/`.bin`/`.safetensors` files or a Hugging Face directory, with `module.` stripped, Hugging Face names mapped to original ones and unused keys dropped (see `StateDict.dropped`).
package func loadStateDict(_ url: URL) throws -> StateDict {
    try loadCheckpoint(url).stateDict
}

private func loadHuggingFaceDirectory(_ dir: URL) throws -> StateDict {
    let fm = FileManager.default
    let config = dir.appendingPathComponent("config.json")
    guard fm.fileExists(atPath: config.path) else {
        throw CheckpointError.unsupportedFormat(file: dir.path, reason: "directory has no config.json, so it is not a Hugging Face model directory")
    }
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let f = dir.appendingPathComponent(name)
        if fm.fileExists(atPath: f.path) {
            var sd = try loadRawStateDict(f)
            sd.source = f.path
            return sd
        }
    }
    for name in ["model.safetensors.index.json", "pytorch_model.bin.index.json"] {
        let f = dir.appendingPathComponent(name)
        guard fm.fileExists(atPath: f.path) else { continue }
        // Sharded weights: the index maps each parameter to a shard; load shards in first-mention order.
        guard let data = fm.contents(atPath: f.path),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let map = json["weight_map"] as? [String: String]
        else {
            throw CheckpointError.unsupportedFormat(file: f.path, reason: "index has no weight_map object")
        }
        var shards: [String] = []
        for shard in map.values.sorted() where !shards.contains(shard) { shards.append(shard) }
        var out = StateDict(source: dir.path)
        for shard in shards {
            let sd = try loadRawStateDict(dir.appendingPathComponent(shard))
            for (k, v) in sd {
                if out.contains(k) {
                    throw CheckpointError.typeMismatch(file: dir.appendingPathComponent(shard).path, key: k, reason: "appears in two shards")
                }
                out[k] = v
            }
        }
        return out
    }
    throw CheckpointError.unsupportedFormat(file: dir.path, reason: "no model.safetensors, pytorch_model.bin or sharded index in the directory")
}
