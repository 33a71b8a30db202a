import ArgumentParser
import ChineseCLIP
import Essentials
import Foundation

/// `cnclip convert`: a model written in the layout another tool reads (Hugging Face, cn-clip, safetensors).
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model as a Hugging Face directory, a cn-clip .pt checkpoint or one safetensors file.",
        discussion: """
            Reads any model the other commands read (a cn-clip .pt, a safetensors file, a Hugging Face directory, an \
            int8 file from `cnclip quantize`) and writes it as:
              hf           a directory for transformers: ChineseCLIPModel.from_pretrained(DIR) and \
            ChineseCLIPProcessor.from_pretrained(DIR) (config.json, model.safetensors, vocab.txt, tokenizer and \
            image-processor configs). ViT models only: transformers has no ResNet ChineseCLIP.
              pt           a cn-clip checkpoint {"epoch": 0, "step": 0, "name", "state_dict"} with module.-prefixed \
            keys, as cn-clip's training writes them: its create_model and `main.py --resume` load it (finetune with \
            --reset-data-offset --reset-optimizer, as from a released checkpoint).
              safetensors  one file under cn-clip's key names whose metadata records the architecture, so that every \
            command loads it with --resume FILE alone.
            Weights are written in fp32 (a float16 checkpoint's values widen exactly; int8 weights are written \
            dequantized). Nothing is overwritten without --force, and a failed run leaves no partial output.
            Examples:
              cnclip convert --resume epoch_latest.pt --vision-model ViT-B-16 \\
                --text-model RoBERTa-wwm-ext-base-chinese --to hf --output chinese-clip-finetuned
              cnclip convert --resume ./chinese-clip-vit-base-patch16 --to pt --output vit-b-16.pt
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("to"), help: "The layout to write: hf, pt or safetensors.")
    var to: String

    @Option(name: .customLong("output"), help: "The directory (hf) or file (pt, safetensors) to write.")
    var output: String

    @Flag(name: .customLong("force"), help: "Replace an existing output (atomically: the old one stays if the write fails).")
    var force = false

    func validate() throws {
        if ModelFormat(rawValue: to) == nil {
            let hint = to == "onnx" ? "; for ONNX use `cnclip export onnx`" : ""
            throw ValidationError("unknown --to '\(to)': give hf, pt or safetensors\(hint)")
        }
        if let p = model.computePrecision, p != .fp32 { throw ValidationError("convert writes fp32 weights; drop --precision \(model.precision!)") }
    }

    func run() throws {
        try reported {
            let format = ModelFormat(rawValue: to)!
            let target = OutputTarget(path: output, isFolder: format == .hf, force: force)
            try target.checkWritable(readingFrom: model.checkpointPath)
            let loaded = try model.load()
            loaded.clip.unpack()  // the weights are written as stored: hold one form of them at a time
            if format == .hf, let reason = HuggingFaceDirectory.unsupportedReason(loaded.config) {
                throw CLIPError.invalidInput("cannot write --to hf: \(reason); use --to pt or --to safetensors, or `cnclip export onnx`")
            }
            let url = URL(fileURLWithPath: output)
            let source = model.checkpointPath ?? ""
            // Only a ResNet has BatchNorm counters; reading them reads the checkpoint a second time.
            var counters: [String: Int64] = [:]
            if case .resnet = loaded.config.visionLayers, let path = model.checkpointPath {
                counters = batchNormCounters(in: URL(fileURLWithPath: path))
            }
            switch format {
            case .hf:
                try target.writeFolder { folder in
                    try HuggingFaceDirectory.write(loaded.clip, vocabulary: URL(fileURLWithPath: loaded.tokenizer.vocabularyPath), into: folder)
                }
            case .pt:
                try TorchModelFile.write(
                    loaded.clip, counters: counters, epoch: 0, step: 0, name: url.deletingPathExtension().lastPathComponent, to: url)
            case .safetensors:
                try RecordedModelFile.write(loaded.clip, counters: counters, source: source, to: url)
            }
            let count = loaded.clip.exportedStateDict().count
            printError("wrote \(output) (\(format), \(count) tensors, \(String(format: "%.1f", Double(outputBytes(output)) / 1e6)) MB)")
        }
    }
}

/// The total size of the files at `path` (a file, or a folder's files).
func outputBytes(_ path: String) -> Int {
    let fm = FileManager.default
    var isFolder: ObjCBool = false
    guard fm.fileExists(atPath: path, isDirectory: &isFolder) else { return 0 }
    let files =
        isFolder.boolValue ? ((try? fm.contentsOfDirectory(atPath: path)) ?? []).map { (path as NSString).appendingPathComponent($0) } : [path]
    return files.reduce(0) { $0 + (((try? fm.attributesOfItem(atPath: $1))?[.size] as? Int) ?? 0) }
}
