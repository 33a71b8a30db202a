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

    func validate() throws {
        if model == nil && resume == nil {
            throw ValidationError("give --model NAME, or --resume CHECKPOINT with --vision-model/--text-model or --config")
        }
        if (visionModel == nil) != (textModel == nil) {
            throw ValidationError("--vision-model and --text-model go together")
        }
    }

    /// Loads the model the flags describe.
    func load() throws -> ChineseCLIPModel {
        if let name = model, resume == nil {
            let cache = downloadRoot.map { URL(fileURLWithPath: $0) } ?? CheckpointDownloader.defaultCacheDirectory
            return try ChineseCLIPModel(released: name, cacheDirectory: cache, vocabularyPath: vocabFile)
        }
        guard let resume else { throw CLIPError.invalidInput("--resume is required") }
        let url = URL(fileURLWithPath: resume)
        let config: CLIPConfig
        if let file = self.config {
            config = try CLIPConfig.load(contentsOf: URL(fileURLWithPath: file))
        } else if let v = visionModel, let t = textModel {
            config = try ModelPresets.config(vision: v, text: t)
        } else if let name = model {
            config = try ModelPresets.config(named: name)
        } else {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resume, isDirectory: &isDir), isDir.boolValue else {
                throw CLIPError.invalidInput("\(resume): say which model it holds with --vision-model and --text-model, or --config")
            }
            return try ChineseCLIPModel(huggingFaceDirectory: url, vocabularyPath: vocabFile)
        }
        return try ChineseCLIPModel(checkpoint: url, config: config, vocabularyPath: vocabFile)
    }
}
