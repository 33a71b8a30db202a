import ArgumentParser
import ChineseCLIP
import Foundation

/// The flags that choose a model, spelled as the reference's scripts spell them.
struct ModelOptions: ParsableArguments {
    @Option(
        name: .customLong("resume"), help: "Checkpoint: a torch.save .pt file, a .safetensors file, or a Hugging Face ChineseCLIPModel directory.")
    var resume: String?

    @Option(name: .customLong("vision-model"), help: "Vision preset: ViT-B-32, ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14 or RN50.")
    var visionModel: String?

    @Option(name: .customLong("text-model"), help: "Text preset: RoBERTa-wwm-ext-base-chinese, RoBERTa-wwm-ext-large-chinese or RBT3-chinese.")
    var textModel: String?

    @Option(name: .customLong("config"), help: "A JSON file of the reference CLIP keyword arguments (replaces --vision-model/--text-model).")
    var config: String?

    @Option(name: .customLong("model"), help: "A released model name (ViT-B-16, …); its checkpoint is taken from the download cache.")
    var model: String?

    @Option(name: .customLong("download-root"), help: "Download cache for --model (default: ~/.cache/clip).")
    var downloadRoot: String?

    @Option(name: .customLong("vocab-file"), help: "Vocabulary file (default: the bundled cn-clip vocab.txt).")
    var vocabFile: String?

    @Option(
        name: .customLong("precision"),
        help: """
            fp32 or int8 (linear layers in int8: about 2× faster, features within cosine 0.999 of fp32). The reference's \
            amp and fp16 are accepted and compute in fp32. Default: fp32, or int8 for a file from `cnclip quantize`.
            """)
    var precision: String?

    func validate() throws {
        if model == nil && resume == nil {
            throw ValidationError("give --model NAME, or --resume CHECKPOINT with --vision-model/--text-model or --config")
        }
        if (visionModel == nil) != (textModel == nil) {
            throw ValidationError("--vision-model and --text-model go together")
        }
        if let precision, Precision(argument: precision) == nil {
            throw ValidationError("--precision must be fp32, int8, amp or fp16 (amp and fp16 compute in fp32)")
        }
    }

    /// The file or folder the weights come from: --resume, or the cached checkpoint of the released --model.
    var checkpointPath: String? {
        if let resume { return resume }
        guard let name = model, let released = ModelPresets.released(named: name) else { return nil }
        let cache = downloadRoot.map { URL(fileURLWithPath: $0) } ?? CheckpointDownloader.defaultCacheDirectory
        return CheckpointDownloader(cacheDirectory: cache).cachedPath(for: released).path
    }

    /// The precision asked for; nil: as the checkpoint is stored.
    var computePrecision: Precision? { precision.flatMap(Precision.init(argument:)) }

    /// True when --resume names a quantized model file (`cnclip quantize`), whose architecture is recorded in it.
    func resumesQuantizedModel() throws -> Bool {
        guard let resume else { return false }
        return try ChineseCLIPModel.isQuantizedModel(URL(fileURLWithPath: resume))
    }

    /// The architecture recorded in --resume when it names a model file from `cnclip convert --to safetensors`.
    func recordedConfig() throws -> CLIPConfig? {
        guard let resume else { return nil }
        return try RecordedModelFile.config(ifRecorded: URL(fileURLWithPath: resume))
    }

    /// True when --resume is a lone checkpoint file that says nothing of its architecture (no model flags, not a
    /// Hugging Face directory, not a model file that records it): where the reference's scripts assume their default presets.
    func needsDefaultPresets() throws -> Bool {
        guard let resume, config == nil, visionModel == nil, model == nil else { return false }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: resume, isDirectory: &isDir) && isDir.boolValue { return false }
        return try !resumesQuantizedModel() && recordedConfig() == nil
    }

    /// Loads the model the flags describe; `defaultPresets` (vision, text) name the architecture of a lone checkpoint
    /// file, as the reference's scripts default them.
    func load(defaultPresets: (vision: String, text: String)? = nil) throws -> ChineseCLIPModel {
        let precision = computePrecision
        if let name = model, resume == nil {
            let cache = downloadRoot.map { URL(fileURLWithPath: $0) } ?? CheckpointDownloader.defaultCacheDirectory
            return try ChineseCLIPModel(released: name, cacheDirectory: cache, precision: precision, vocabularyPath: vocabFile)
        }
        guard let resume else { throw CLIPError.invalidInput("--resume is required") }
        let url = URL(fileURLWithPath: resume)
        if let presets = defaultPresets, try needsDefaultPresets() {
            return try ChineseCLIPModel(
                checkpoint: url, visionModel: presets.vision, textModel: presets.text, precision: precision, vocabularyPath: vocabFile)
        }
        let config: CLIPConfig
        if let file = self.config {
            config = try CLIPConfig.load(contentsOf: URL(fileURLWithPath: file))
        } else if let v = visionModel, let t = textModel {
            config = try ModelPresets.config(vision: v, text: t)
        } else if let name = model {
            config = try ModelPresets.config(named: name)
        } else if try resumesQuantizedModel() {
            return try ChineseCLIPModel(quantizedModel: url, precision: precision, vocabularyPath: vocabFile)
        } else if let recorded = try recordedConfig() {
            config = recorded
        } else {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resume, isDirectory: &isDir), isDir.boolValue else {
                throw CLIPError.invalidInput("\(resume): say which model it holds with --vision-model and --text-model, or --config")
            }
            return try ChineseCLIPModel(huggingFaceDirectory: url, precision: precision, vocabularyPath: vocabFile)
        }
        return try ChineseCLIPModel(checkpoint: url, config: config, precision: precision, vocabularyPath: vocabFile)
    }
}
