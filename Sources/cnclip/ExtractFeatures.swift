import ArgumentParser
import ChineseCLIP
import Datasets
import Foundation
import Tensors

/// `cnclip extract-features`: cn-clip's `eval/extract_features.py` — image and text features as JSON lines.
struct ExtractFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract-features",
        abstract: "Extract L2-normalised image features from an LMDB and text features from a JSONL, as extract_features.py does.",
        discussion: """
        Writes {"text_id": ID, "feature": [...]} per line of --text-data (file order) and {"image_id": ID, "feature": \
        [...]} per image of the --image-data LMDB (key byte order, as the reference's cursor walks it), numbers \
        formatted as the reference's json.dumps writes them. Texts are lower-cased and “ ” mapped to " first, as the \
        reference's eval dataset does. Default outputs, derived from --text-data as the reference derives them: \
        texts → TEXT_DATA minus its last 6 characters + ".txt_feat.jsonl"; images → TEXT_DATA with "_texts.jsonl" \
        replaced by "_imgs" + ".img_feat.jsonl".
        --precision is accepted for compatibility; features are always computed in fp32 (the reference's "amp" and \
        "fp32" compute in fp32 on its GPU too; "fp16" would differ in the last digits). --debug is accepted and ignored.
        Model: --resume CHECKPOINT with --vision-model/--text-model (defaults ViT-B-16 and RoBERTa-wwm-ext-base-chinese, \
        as the reference) or --config, or --model NAME.
        Example: cnclip extract-features --extract-image-feats --extract-text-feats --image-data data/lmdb/valid/imgs \\
          --text-data data/valid_texts.jsonl --resume epoch_latest.pt --vision-model ViT-B-16 --text-model RoBERTa-wwm-ext-base-chinese
        """)

    @Flag(name: .customLong("extract-image-feats"), help: "Extract image features.")
    var extractImageFeats = false

    @Flag(name: .customLong("extract-text-feats"), help: "Extract text features.")
    var extractTextFeats = false

    @Option(name: .customLong("image-data"), help: "The LMDB directory of the images (a {split}/imgs directory).")
    var imageData = "../Multimodal_Retrieval/lmdb/test/imgs"

    @Option(name: .customLong("text-data"), help: "The texts JSONL ({\"text_id\", \"text\", …} per line).")
    var textData = "../Multimodal_Retrieval/test_texts.jsonl"

    @Option(name: .customLong("image-feat-output-path"), help: "Image features output (default derived from --text-data).")
    var imageFeatOutputPath: String?

    @Option(name: .customLong("text-feat-output-path"), help: "Text features output (default derived from --text-data).")
    var textFeatOutputPath: String?

    @Option(name: .customLong("img-batch-size"), help: "Image batch size.")
    var imgBatchSize = 64

    @Option(name: .customLong("text-batch-size"), help: "Text batch size.")
    var textBatchSize = 64

    @Option(name: .customLong("context-length"), help: "Tokens per text, [CLS] and [SEP] included.")
    var contextLength = 52

    @Option(name: .customLong("precision"), help: "amp, fp16 or fp32: accepted; computation is fp32.")
    var precision = "amp"

    @Flag(name: .customLong("debug"), help: "Accepted for compatibility; ignored.")
    var debug = false

    @OptionGroup var model: ModelOptions

    func validate() throws {
        if !extractImageFeats && !extractTextFeats {
            throw ValidationError("--extract-image-feats and --extract-text-feats cannot both be False!")
        }
        if !["amp", "fp16", "fp32"].contains(precision) { throw ValidationError("--precision must be amp, fp16 or fp32") }
        if imgBatchSize < 1 || textBatchSize < 1 { throw ValidationError("batch sizes must be positive") }
        if contextLength < 2 { throw ValidationError("--context-length must be at least 2") }
    }

    /// The reference's default text output: `text_data[:-6] + ".txt_feat.jsonl"` (Python slices by characters).
    static func defaultTextOutput(_ textData: String) -> String { String(textData.dropLast(6)) + ".txt_feat.jsonl" }

    /// The reference's default image output: `text_data.replace("_texts.jsonl", "_imgs") + ".img_feat.jsonl"`.
    static func defaultImageOutput(_ textData: String) -> String {
        textData.replacingOccurrences(of: "_texts.jsonl", with: "_imgs") + ".img_feat.jsonl"
    }

    func run() throws {
        var options = model
        // The reference defaults the presets; ModelOptions has no defaults because other commands need none.
        if options.resume != nil && options.config == nil && options.visionModel == nil && options.model == nil {
            var isDir: ObjCBool = false
            if !(FileManager.default.fileExists(atPath: options.resume!, isDirectory: &isDir) && isDir.boolValue) {
                options.visionModel = "ViT-B-16"
                options.textModel = "RoBERTa-wwm-ext-base-chinese"
            }
        }
        let clip = try reported { try options.load() }
        if contextLength > clip.config.textMaxPositionEmbeddings {
            printError("error: --context-length \(contextLength) exceeds the model's \(clip.config.textMaxPositionEmbeddings) positions")
            throw ExitCode.failure
        }
        var extractor = FeatureExtractor(model: clip)
        let pending = PendingPath()
        let cleanup = removeOnSignal { pending.get() }
        defer { cleanup.forEach { $0.cancel() } }
        try reportedDataset {
            if extractTextFeats {
                let path = textFeatOutputPath ?? Self.defaultTextOutput(textData)
                print("Make inference for texts...")
                let out = try AtomicOutputFile(path: path)
                pending.set(out.temporaryPath)
                let bar = ProgressLine(label: "texts")
                extractor.progress = { done, _ in bar.update(Int64(done), nil, unit: "texts") }
                let n = try extractor.extractTextFeatures(jsonlPath: textData, batchSize: textBatchSize, contextLength: contextLength) { ids, f in
                    try write(f, ids.map(Self.jsonID), key: "text_id", to: out)
                }
                bar.finish()
                try out.commit()
                print("\(n) text features are stored in \(path)")
            }
            if extractImageFeats {
                let path = imageFeatOutputPath ?? Self.defaultImageOutput(textData)
                print("Make inference for images...")
                let out = try AtomicOutputFile(path: path)
                pending.set(out.temporaryPath)
                let bar = ProgressLine(label: "images")
                extractor.progress = { done, total in bar.update(Int64(done), total.map(Int64.init), unit: "images") }
                let n = try extractor.extractImageFeatures(lmdbPath: imageData, batchSize: imgBatchSize) { ids, f in
                    try write(f, ids.map(String.init), key: "image_id", to: out)
                }
                bar.finish()
                try out.commit()
                print("\(n) image features are stored in \(path)")
            }
        }
        print("Done!")
    }

    /// A `text_id` as json.dumps writes it.
    static func jsonID(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return jsonString(s)
        default: return v.pythonString
        }
    }

    private func write(_ features: Tensor, _ ids: [String], key: String, to out: AtomicOutputFile) throws {
        let width = features.shape[1]
        let scalars = features.scalars
        var text = ""
        scalars.withUnsafeBufferPointer { all in
            for (i, id) in ids.enumerated() {
                text += FeatureLine.format(idKey: key, id: id, feature: UnsafeBufferPointer(rebasing: all[i * width..<(i + 1) * width]))
            }
        }
        try out.write(text)
    }
}
