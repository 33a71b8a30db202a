// Writing a loaded model in the layouts other tools read: a cn-clip training checkpoint (`torch.save`), one
// safetensors file that records its architecture, and a Hugging Face `ChineseCLIPModel` directory.
//
// Every writer starts from the model after strict loading, so what it writes is exactly what every command computes
// with: the reference's key names (Hugging Face names come from the one table in `Checkpoints.KeyRemap`) in the
// reference's state-dict order, fp32 values (a half-precision checkpoint's values widen exactly; int8 weights of a
// quantized file are written dequantized, as `--precision int8` computes with them).

import Checkpoints
import Essentials
import Foundation
import Imaging
import NeuralNet
import Tensors
import Tokenization

/// The layouts `cnclip convert` writes.
public enum ModelFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A Hugging Face `ChineseCLIPModel` directory (ViT models only).
    case hf
    /// A cn-clip checkpoint: `torch.save({"epoch", "step", "name", "state_dict"})`, keys prefixed `module.`.
    case pt
    /// One safetensors file under the reference's key names, its architecture in the metadata.
    case safetensors

    /// The name, as `--to` spells it.
    public var description: String { rawValue }
}

extension CLIP {
    /// The weights in the reference's state-dict order under its key names, fp32, int8 weights dequantized.
    package func exportedWeights() -> [(String, Tensor)] {
        namedParameters().map { key, p in (key, p.fp32Value) }
    }

    /// The reference model's whole state dict: `exportedWeights()` plus, after each BatchNorm's `running_var`, the
    /// `num_batches_tracked` counter torch keeps (int64) — from `counters` (the source checkpoint's) or 0, what a
    /// fresh torch model holds — so that a ResNet's file round-trips key for key.
    package func exportedStateDict(counters: [String: Int64] = [:]) -> [(String, CheckpointTensor)] {
        exportedWeights().flatMap { key, value -> [(String, CheckpointTensor)] in
            guard key.hasSuffix(".running_var") else { return [(key, CheckpointTensor(value))] }
            let counter = String(key.dropLast("running_var".count)) + "num_batches_tracked"
            return [(key, CheckpointTensor(value)), (counter, CheckpointTensor(shape: [], integers: [counters[counter] ?? 0]))]
        }
    }
}

/// The BatchNorm `num_batches_tracked` counters a checkpoint holds, by key without `module.` (none for a file that
/// does not hold them, which loading then treats as torch does: as 0).
package func batchNormCounters(in url: URL) -> [String: Int64] {
    guard let raw = try? loadRawStateDict(url) else { return [:] }
    var counters: [String: Int64] = [:]
    for (key, t) in raw where key.hasSuffix("num_batches_tracked") {
        if let value = t.integers?.first, t.count == 1 { counters[key.hasPrefix("module.") ? String(key.dropFirst(7)) : key] = value }
    }
    return counters
}

/// A safetensors model file that records its architecture (`cnclip convert --to safetensors`), loadable with
/// `--resume FILE` alone.
package enum RecordedModelFile {
    /// The metadata's `format`.
    package static let format = "cnclip"
    /// The layout version this code writes and reads.
    package static let version = "1"

    /// The config recorded in `url` if it is such a file (a safetensors file whose metadata says so), else nil; a file
    /// that claims the format with an unreadable config is an error naming it.
    package static func config(ifRecorded url: URL) throws -> CLIPConfig? {
        try recordedConfig(at: url, format: format, version: version)
    }

    /// Writes `clip`'s state dict (BatchNorm counters from `counters`) and config to `url` atomically; `source` (what
    /// it was read from) goes in the metadata.
    package static func write(_ clip: CLIP, counters: [String: Int64] = [:], source: String, to url: URL) throws {
        let metadata = ["format": format, "format_version": version, "config": try clip.config.canonicalJSON(), "source": source]
        try withFileErrors { try SafeTensors.write(clip.exportedStateDict(counters: counters), metadata: metadata, to: url) }
    }
}

/// The config recorded in `url` if it is a safetensors file whose metadata's `format` is `format`, else nil; such a
/// file with another layout version or an unreadable config is an error naming it.
func recordedConfig(at url: URL, format: String, version: String) throws -> CLIPConfig? {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
        let file = try? SafeTensorsFile(url: url), file.metadata?["format"] == format
    else { return nil }
    return try recordedConfig(of: file, version: version)
}

/// The config a cnclip safetensors file records in its metadata (`format_version` and `config`), strictly.
func recordedConfig(of file: SafeTensorsFile, version: String) throws -> CLIPConfig {
    let path = file.file.path
    let meta = file.metadata ?? [:]
    guard meta["format_version"] == version else {
        throw CLIPError.checkpoint(
            path: path, reason: "\(meta["format"] ?? "model") file layout version \(meta["format_version"] ?? "(none)"); this cnclip reads \(version)"
        )
    }
    guard let json = meta["config"] else { throw CLIPError.checkpoint(path: path, reason: "no model config in its metadata") }
    do { return try JSONDecoder().decode(CLIPConfig.self, from: Data(json.utf8)) } catch {
        throw CLIPError.badConfig(path: path + " (metadata 'config')", reason: describe(error))
    }
}

/// Copies the tokenizer's vocabulary file to `folder/vocab.txt` (atomically), the name every BERT tokenizer looks for.
func copyVocabulary(_ vocabulary: URL, into folder: URL) throws {
    let words: Data
    do { words = try Data(contentsOf: vocabulary) } catch {
        throw FileError(path: vocabulary.path, reason: "cannot read the vocabulary: \(error.localizedDescription)")
    }
    try AtomicOutput.write(Array(words), to: folder.appendingPathComponent("vocab.txt").path)
}

/// Runs `body`, turning the checkpoint writers' errors into `CLIPError`s (their messages already name the file).
func withFileErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as FileError {
        throw CLIPError.io(path: error.path, reason: error.reason)
    } catch let error as CheckpointError { throw CLIPError.invalidInput(error.description) }
}

extension CLIPConfig {
    /// The reference's keyword arguments as compact JSON with sorted keys (what model files record).
    package func canonicalJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// A cn-clip training checkpoint of a model, as `main.py` saves one minus the optimizer.
package enum TorchModelFile {
    /// Writes `clip` as `torch.save({"epoch", "step", "name", "state_dict"})` with `module.` keys (BatchNorm counters
    /// from `counters`), atomically: what cn-clip's `create_model` and `main.py --resume` load.
    package static func write(_ clip: CLIP, counters: [String: Int64] = [:], epoch: Int, step: Int, name: String, to url: URL) throws {
        let stateDict = clip.exportedStateDict(counters: counters).map { ($0.0, $0.1.tensor) }  // counters stay int64 on write
        try withFileErrors { try TrainingCheckpoint(epoch: epoch, step: step, name: name, stateDict: stateDict).write(to: url) }
    }
}

/// A Hugging Face `ChineseCLIPModel` directory: the files `transformers.ChineseCLIPModel.from_pretrained` and
/// `ChineseCLIPProcessor.from_pretrained` read.
package enum HuggingFaceDirectory {
    /// Why `config` has no Hugging Face layout, or nil.
    package static func unsupportedReason(_ config: CLIPConfig) -> String? {
        if case .resnet = config.visionLayers {
            return "an RN50 (ResNet) vision tower has no Hugging Face layout: transformers' ChineseCLIPModel holds a ViT only"
        }
        return nil
    }

    /// Writes the directory's files for `clip` and the vocabulary at `vocabulary` into the existing folder `folder`.
    package static func write(_ clip: CLIP, vocabulary: URL, into folder: URL) throws {
        if let reason = unsupportedReason(clip.config) { throw CLIPError.invalidInput(reason) }
        let original = StateDict(clip.exportedWeights().map { ($0.0, CheckpointTensor($0.1)) }, source: "<model>")
        let tensors = try withFileErrors { try KeyRemap.toHuggingFace(original) }
        func file(_ name: String) -> URL { folder.appendingPathComponent(name) }
        try withFileErrors {
            try AtomicOutput.write(try configJSON(clip.config), to: file("config.json").path)
            // transformers checks this key before it trusts a safetensors file's tensors as PyTorch ones.
            try SafeTensors.write(tensors, metadata: ["format": "pt"], to: file("model.safetensors"))
            try copyVocabulary(vocabulary, into: folder)
            try AtomicOutput.write(try json(tokenizerConfig(clip.config)), to: file("tokenizer_config.json").path)
            try AtomicOutput.write(try json(specialTokens), to: file("special_tokens_map.json").path)
            try AtomicOutput.write(try json(preprocessorConfig(clip.config)), to: file("preprocessor_config.json").path)
        }
    }

    /// Pretty JSON with sorted keys, as `save_pretrained` writes it.
    static func json(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self) + "\n"
    }

    /// `ChineseCLIPConfig` with its text and vision sub-configs (field names of transformers' configuration classes).
    /// Fields left at transformers' defaults are left out: JSONSerialization writes a whole float such as 1.0 as `1`,
    /// which transformers 5's typed configs refuse for float fields (`initializer_factor`).
    static func configJSON(_ c: CLIPConfig) throws -> String {
        let visionHeads = c.visionWidth / c.visionHeadWidth
        let text: [String: Any] = [
            "model_type": "chinese_clip_text_model", "vocab_size": c.vocabSize, "hidden_size": c.textHiddenSize,
            "num_hidden_layers": c.textNumHiddenLayers, "num_attention_heads": c.textNumAttentionHeads,
            "intermediate_size": c.textIntermediateSize, "hidden_act": c.textHiddenAct,
            "hidden_dropout_prob": c.textHiddenDropoutProb, "attention_probs_dropout_prob": c.textAttentionProbsDropoutProb,
            "max_position_embeddings": c.textMaxPositionEmbeddings, "type_vocab_size": c.textTypeVocabSize,
            "initializer_range": c.textInitializerRange,
            "layer_norm_eps": 1e-12,  // cn-clip's BertLayerNorm
            "pad_token_id": 0,
        ]
        var layers = 0
        if case .transformer(let n) = c.visionLayers { layers = n }
        let vision: [String: Any] = [
            "model_type": "chinese_clip_vision_model", "hidden_size": c.visionWidth, "intermediate_size": c.visionWidth * 4,
            "projection_dim": c.embedDim, "num_hidden_layers": layers, "num_attention_heads": visionHeads, "num_channels": 3,
            "image_size": c.imageResolution, "patch_size": c.visionPatchSize ?? 0,
            "hidden_act": "quick_gelu",  // cn-clip's ViT blocks use QuickGELU
            "layer_norm_eps": 1e-5, "initializer_range": 0.02,
        ]
        let top: [String: Any] = [
            "architectures": ["ChineseCLIPModel"], "model_type": "chinese_clip", "projection_dim": c.embedDim,
            "logit_scale_init_value": 2.6592, "text_config": text, "vision_config": vision,
            "dtype": "float32",
        ]
        return try json(top)
    }

    /// BERT-Chinese's tokenizer, as cn-clip's `FullTokenizer` tokenizes: lower-cased, Chinese characters split.
    static func tokenizerConfig(_ c: CLIPConfig) -> [String: Any] {
        [
            "tokenizer_class": "BertTokenizer", "do_lower_case": true, "tokenize_chinese_chars": true, "do_basic_tokenize": true,
            "model_max_length": c.textMaxPositionEmbeddings, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
            "cls_token": "[CLS]", "mask_token": "[MASK]", "processor_class": "ChineseCLIPProcessor", "padding_side": "right",
        ]
    }

    /// BERT's special tokens, as `special_tokens_map.json` names them.
    static var specialTokens: [String: Any] {
        [
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
        ]
    }

    /// cn-clip's `image_transform(R)`: bicubic resize straight to R×R (no crop), RGB, /255, CLIP's mean and std.
    static func preprocessorConfig(_ c: CLIPConfig) -> [String: Any] {
        let r = c.imageResolution
        return [
            "image_processor_type": "ChineseCLIPImageProcessor", "processor_class": "ChineseCLIPProcessor",
            "do_resize": true, "size": ["height": r, "width": r], "resample": 3,
            "do_center_crop": false, "crop_size": ["height": r, "width": r],
            "do_rescale": true, "rescale_factor": 1.0 / 255.0, "do_normalize": true,
            "image_mean": CLIPNormalization.meanAsWritten, "image_std": CLIPNormalization.stdAsWritten,
            "do_convert_rgb": true,
        ]
    }
}
