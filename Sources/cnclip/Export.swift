import ArgumentParser
import ChineseCLIP
import Foundation

/// `cnclip export`: a model for another runtime.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a model for another runtime (ONNX).",
        subcommands: [ExportONNX.self])
}

/// `cnclip export onnx`: vision.onnx and text.onnx with a dynamic batch and sequence length.
struct ExportONNX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx",
        abstract: "Write the image and text towers as ONNX models (dynamic batch and text length) for ONNX Runtime or TensorRT.",
        discussion: """
            Writes into --output:
              vision.onnx         input `image` float32 [batch, 3, R, R] (preprocessed as cn-clip's image_transform) \
            → `unnorm_image_features` float32 [batch, embed_dim]
              text.onnx           inputs `text` (token ids) and `attention_mask` (1 for a token, 0 for padding), \
            int64 [batch, sequence] → `unnorm_text_features` float32 [batch, embed_dim]
              preprocessing.json  the resolution, resize rule, mean and std, the tokenizer's rules and the logit scale
              vocab.txt           the tokenizer's vocabulary
            Input and output names are those of cn-clip's deploy/pytorch_to_onnx.py; unlike its export, the batch \
            and the text length are not fixed, and the text model takes the attention mask. Features are \
            unnormalised: L2-normalise them before cosine similarity. With --fp16 the weights and the arithmetic are \
            half precision (layer norms in float32) and the inputs and outputs stay float32 (as cn-clip's fp16 \
            export). Weights past 1.8 GB (ViT-H-14) go to vision.onnx.data beside the model. ViT and RN50 models.
            Example: cnclip export onnx --resume epoch_latest.pt --vision-model ViT-B-16 \\
              --text-model RoBERTa-wwm-ext-base-chinese --output onnx-vit-b-16
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("output"), help: "The directory to write.")
    var output: String

    @Flag(name: .customLong("fp16"), help: "Half-precision weights and arithmetic (inputs and outputs stay float32).")
    var fp16 = false

    @Option(name: .customLong("opset"), help: "The ONNX opset (13 to 21; default 17, the first with LayerNormalization).")
    var opset: Int = ONNXExport.defaultOpset

    @Option(name: .customLong("context-length"), help: "The text length preprocessing.json states (the model takes any up to the position table's).")
    var contextLength: Int = 52

    @Flag(name: .customLong("force"), help: "Replace an existing non-empty output directory (atomically).")
    var force = false

    func validate() throws {
        if !ONNXExport.opsets.contains(opset) { throw ValidationError("--opset \(opset) is not supported: give 13 to 21") }
        if contextLength < 2 { throw ValidationError("--context-length must be at least 2 ([CLS] and [SEP])") }
        if let p = model.computePrecision, p != .fp32 {
            throw ValidationError("export writes fp32 or (--fp16) half weights; drop --precision \(model.precision!)")
        }
    }

    func run() throws {
        try reported {
            let target = OutputTarget(path: output, isFolder: true, force: force)
            try target.checkWritable(readingFrom: model.checkpointPath)
            let loaded = try model.load()
            loaded.clip.unpack()  // the weights are written as stored: hold one form of them at a time
            if contextLength > loaded.config.textMaxPositionEmbeddings {
                throw CLIPError.invalidInput(
                    "--context-length \(contextLength) is longer than the model's \(loaded.config.textMaxPositionEmbeddings) positions")
            }
            try target.writeFolder { folder in
                try ONNXExport.write(
                    loaded.clip, vocabulary: URL(fileURLWithPath: loaded.tokenizer.vocabularyPath), contextLength: contextLength,
                    opset: opset, half: fp16, source: model.checkpointPath ?? "", producerVersion: cnclipVersion, into: folder)
            }
            printError("wrote \(output) (opset \(opset), \(fp16 ? "fp16" : "fp32"), \(String(format: "%.1f", Double(outputBytes(output)) / 1e6)) MB)")
        }
    }
}
