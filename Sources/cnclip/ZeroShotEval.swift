import ArgumentParser
import ChineseCLIP
import Evaluation
import Foundation

/// `cnclip zeroshot-eval`: cn-clip's `zeroshot_evaluation.py` — zero-shot top-1 accuracy and the ELEVATER file.
struct ZeroShotEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zeroshot-eval",
        abstract: "Zero-shot image classification with prompt templates, as cn-clip's zeroshot_evaluation.py.",
        discussion: """
            --datapath is a folder with one sub-folder per class (torchvision ImageFolder layout; folders are taken in
            sorted order), --label-file has one class name per line in that order. Prints `zeroshot-top1: FRACTION`
            after `Result:` and writes the ELEVATER submission to SAVE_DIR/DATASET.json. The prompt templates follow
            --dataset as in the reference (food-101, oxford-flower-102, fgvc-aircraft-2013b-variants102, eurosat_clip,
            resisc45_clip and country211 have their own; any other name uses the OpenAI set).
            Without --vision-model/--text-model/--config the model is ViT-B-16 with RoBERTa-wwm-ext-base-chinese,
            the reference's defaults; --vision-model also names the model in the file ("CN-CLIP-VISION").
            Example: cnclip zeroshot-eval --datapath data/cifar-100/test --label-file data/cifar-100/label_cn.txt \\
              --save-dir data/save_predictions --dataset cifar-100 --resume clip_cn_vit-b-16.pt --vision-model ViT-B-16 \\
              --text-model RoBERTa-wwm-ext-base-chinese
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("datapath"), help: "Test set: one sub-folder of images per class.")
    var datapath: String

    @Option(name: .customLong("label-file"), help: "Class names, one per line, in sorted class-folder order.")
    var labelFile: String

    @Option(name: .customLong("save-dir"), help: "Folder for the ELEVATER file DATASET.json (default: current folder).")
    var saveDir = ""

    @Option(name: .customLong("dataset"), help: "Dataset name: picks the prompt templates and names the output file.")
    var dataset = "imagenet"

    @Option(name: .customLong("index"), help: "A JSON list of row indices that reorders the saved predictions.")
    var index = ""

    @Option(name: .customLong("img-batch-size"), help: "Images per forward pass.")
    var imgBatchSize = 64

    @Option(name: .customLong("context-length"), help: "Tokens per prompt, [CLS] and [SEP] included.")
    var contextLength = 52

    @Option(name: .customLong("num-workers"), help: "Accepted for compatibility; images of a batch are decoded in parallel.")
    var numWorkers = 4

    static let referenceVision = "ViT-B-16", referenceText = "RoBERTa-wwm-ext-base-chinese"

    func validate() throws {
        if imgBatchSize < 1 { throw ValidationError("--img-batch-size must be at least 1") }
        if contextLength < 2 { throw ValidationError("--context-length must be at least 2") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        try reported { try evaluate() }
    }

    /// True when no flag says which model the checkpoint holds, so the reference's default presets apply.
    private var usesReferenceDefaults: Bool { (try? model.needsDefaultPresets()) ?? false }

    /// The vision model's name for `model_name`.
    private var visionModelName: String {
        if let v = model.visionModel { return v }
        if usesReferenceDefaults { return Self.referenceVision }
        if let name = model.model { return String((ModelPresets.released(named: name)?.structure ?? name).split(separator: "@").first ?? "") }
        if let config = model.config { return URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent }
        return URL(fileURLWithPath: model.resume ?? "").lastPathComponent
    }

    private func loadModel() throws -> ChineseCLIPModel {
        try model.load(defaultPresets: (Self.referenceVision, Self.referenceText))
    }

    private func evaluate() throws {
        // The reference prints its sorted arguments first (Python's None for an unset one).
        var params: [(String, String)] = [
            ("context_length", String(contextLength)), ("datapath", datapath), ("dataset", dataset),
            ("img_batch_size", String(imgBatchSize)), ("index", index), ("label_file", labelFile),
            ("num_workers", String(numWorkers)), ("precision", model.precision ?? "amp"), ("resume", model.resume ?? "None"),
            ("save_dir", saveDir),
            ("text_model", model.textModel ?? (usesReferenceDefaults ? Self.referenceText : "None")),
            ("vision_model", model.visionModel ?? (usesReferenceDefaults ? Self.referenceVision : "None")),
        ]
        if let c = model.config { params.append(("config", c)) }
        if let m = model.model { params.append(("model", m)) }
        print("Params:")
        for (name, value) in params.sorted(by: { $0.0 < $1.0 }) { print("  \(name): \(value)") }
        if model.precision == "fp16" {
            printError("note: --precision fp16 is computed in fp32; results may differ slightly from the reference's fp16 run")
        }

        // Everything that can be checked without the model is checked first, so a bad path fails fast.
        print("Preparing zeroshot dataset.")
        let data = try ZeroShotDataset(imageFolder: datapath)
        let classNames = try ZeroShotDataset.readLabels(contentsOfFile: labelFile)
        try data.checkLabels(classNames, labelFile: labelFile)
        let order = index.isEmpty ? nil : try ZeroShotEvaluation.readIndex(contentsOfFile: index)
        let templates = try ZeroShotTemplates.templates(forDataset: dataset)

        print("Begin to load model checkpoint from \(model.resume ?? model.model ?? "").")
        let clip = try loadModel()
        if contextLength > clip.config.textMaxPositionEmbeddings {
            throw CLIPError.invalidInput("--context-length \(contextLength) exceeds the model's \(clip.config.textMaxPositionEmbeddings) positions")
        }
        print("=> loaded checkpoint '\(model.resume ?? model.model ?? "")'")
        print("\(clip.config.imageResolution)")

        print("Building zero-shot classifier")
        let classBar = ProgressLine(label: "classes")
        let classifier = ZeroShotClassifier(
            model: clip, classNames: classNames, templates: templates,
            contextLength: contextLength
        ) { classBar.update(Int64($0), Int64($1), unit: "classes") }
        classBar.finish()

        print("Using classifier")
        let imageBar = ProgressLine(label: "images")
        var result = try ZeroShotEvaluation.run(model: clip, dataset: data, classifier: classifier, batchSize: imgBatchSize) {
            imageBar.update(Int64($0), Int64($1), unit: "images")
        }
        imageBar.finish()
        if let order {
            print("Use index to rearrange the logits...")
            print("[" + order.map(String.init).joined(separator: ", ") + "]")
            result = try result.reordered(by: order, indexFile: index)
        }
        print("torch.Size([\(result.probabilities.shape[0]), \(result.probabilities.shape[1])])")

        let submission = ElevaterSubmission(
            model: clip, visionModelName: visionModelName, datasetName: dataset,
            predictions: result.probabilities)
        try submission.write(to: ElevaterSubmission.path(saveDir: saveDir, dataset: dataset))

        print("Result:")
        print(zeroShotResultLine(top1: result.top1))
        print("Finished.")
    }
}
