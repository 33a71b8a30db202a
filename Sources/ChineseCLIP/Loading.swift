// Loading weights into a `CLIP`: torch.save files, safetensors and Hugging Face directories, all through
// `Checkpoints.loadStateDict` (which owns the one key-remap table), then strict `Module.load`.

import Checkpoints
import Essentials
import Foundation
import NeuralNet
import Tensors

extension CLIP {
    /// Builds the model of `config` and fills it from `checkpoint` (a `.pt`/`.bin`, a `.safetensors`, or a
    /// Hugging Face `ChineseCLIPModel` directory). Strict: a missing, extra or mis-shaped key is an error naming it.
    package static func load(checkpoint: URL, config: CLIPConfig) throws -> CLIP {
        try config.checkFits(checkpoint, bytesPerParameter: 2)
        let model = CLIP(config)
        try model.loadWeights(from: checkpoint)
        return model
    }

    /// Fills this model from `checkpoint`, strictly.
    package func loadWeights(from checkpoint: URL) throws {
        let path = checkpoint.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw CLIPError.io(path: path, reason: "no such file or directory")
        }
        let stateDict: StateDict
        do { stateDict = try loadStateDict(checkpoint) } catch let error as CheckpointError {
            throw CLIPError.invalidInput(error.description)  // its message already names the file
        } catch let error as FileError {
            throw CLIPError.io(path: error.path, reason: error.reason)
        } catch {
            throw CLIPError.checkpoint(path: path, reason: "\(error)")
        }
        try loadWeights(stateDict)
    }

    /// Fills this model from tensors `Checkpoints.loadCheckpoint` normalised, strictly: every parameter and buffer
    /// filled with its shape, no key left over (`load_state_dict(strict=True)`); a failed load changes nothing.
    package func loadWeights(_ stateDict: StateDict) throws {
        var tensors: [String: Tensor] = [:]
        for (key, value) in stateDict {
            guard value.isFloatingPoint else {
                throw CLIPError.checkpoint(
                    path: stateDict.source, reason: "key '\(key)' holds \(value.dtype) values; the model has only floating-point weights")
            }
            tensors[key] = value.tensor
        }
        do { try load(stateDict: tensors) } catch let e as StateDictError {
            throw CLIPError.checkpoint(path: stateDict.source, reason: e.description)
        }
    }
}

extension CLIPConfig {
    /// Refuses, before the model is built, a config of more than 1 GiB of fp32 parameters that cannot be in
    /// `checkpoint` (a file, or a folder's files) at `bytesPerParameter` or more each: strict loading would fail
    /// anyway, and a hostile config must not size allocations a small file cannot fill. (Below 1 GiB the model is
    /// built and strict loading names the first key that does not fit, the more useful error for a wrong preset.)
    package func checkFits(_ checkpoint: URL, bytesPerParameter: Double) throws {
        if let problem = sizeProblem { throw CLIPError.badConfig(path: checkpoint.path, reason: problem) }
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: checkpoint.path, isDirectory: &isFolder) else { return }  // the loader names it
        let files =
            isFolder.boolValue
            ? ((try? fm.contentsOfDirectory(atPath: checkpoint.path)) ?? []).map { checkpoint.appendingPathComponent($0).path } : [checkpoint.path]
        let bytes = files.reduce(0.0) { $0 + Double(((try? fm.attributesOfItem(atPath: $1))?[.size] as? Int) ?? 0) }
        let needed = parameterLowerBound * bytesPerParameter
        if needed > bytes && parameterLowerBound * 4 > Double(1 << 30) {
            throw CLIPError.checkpoint(
                path: checkpoint.path,
                reason:
                    "the model config needs at least \(Int(parameterLowerBound)) parameters (\(Int(needed)) bytes), more than the checkpoint's \(Int(bytes)) bytes hold"
            )
        }
    }

    /// The config of a Hugging Face `ChineseCLIPModel` (`config.json`: `projection_dim`, `text_config`, `vision_config`).
    /// Only ViT vision towers exist in that layout.
    package static func huggingFace(contentsOf url: URL) throws -> CLIPConfig {
        struct HF: Decodable {
            struct Text: Decodable {
                var hidden_size: Int, num_hidden_layers: Int, num_attention_heads: Int, intermediate_size: Int
                var vocab_size: Int?, max_position_embeddings: Int?, type_vocab_size: Int?, hidden_act: String?
                var hidden_dropout_prob: Double?, attention_probs_dropout_prob: Double?, initializer_range: Double?
            }
            struct Vision: Decodable {
                var hidden_size: Int, num_hidden_layers: Int, num_attention_heads: Int, patch_size: Int, image_size: Int
            }
            var projection_dim: Int
            var text_config: Text
            var vision_config: Vision
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CLIPError.io(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let hf: HF
        do { hf = try JSONDecoder().decode(HF.self, from: data) } catch {
            throw CLIPError.badConfig(path: url.path, reason: describe(error))
        }
        let t = hf.text_config, v = hf.vision_config
        let config = CLIPConfig(
            embedDim: hf.projection_dim, imageResolution: v.image_size, visionLayers: .transformer(v.num_hidden_layers),
            visionWidth: v.hidden_size, visionPatchSize: v.patch_size,
            visionHeadWidth: v.hidden_size / max(v.num_attention_heads, 1), vocabSize: t.vocab_size ?? 21128,
            textAttentionProbsDropoutProb: t.attention_probs_dropout_prob ?? 0.1, textHiddenAct: t.hidden_act ?? "gelu",
            textHiddenDropoutProb: t.hidden_dropout_prob ?? 0.1, textHiddenSize: t.hidden_size,
            textInitializerRange: t.initializer_range ?? 0.02, textIntermediateSize: t.intermediate_size,
            textMaxPositionEmbeddings: t.max_position_embeddings ?? 512, textNumAttentionHeads: t.num_attention_heads,
            textNumHiddenLayers: t.num_hidden_layers, textTypeVocabSize: t.type_vocab_size ?? 2)
        if let problem = config.sizeProblem { throw CLIPError.badConfig(path: url.path, reason: problem) }
        return config
    }
}
