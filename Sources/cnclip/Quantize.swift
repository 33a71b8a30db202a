import ArgumentParser
import ChineseCLIP
import Foundation

/// `cnclip quantize`: a model file whose linear layers are stored in int8, loadable with no model flags.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an int8 model file (about a quarter of the checkpoint's size) that every command loads directly.",
        discussion: """
            The weights of the linear layers (BERT's and ViT's attention and MLP layers, ViT's stacked attention input \
            projections, the ResNet attention pool's projections) are stored in int8 with one scale per output \
            channel; every other tensor stays fp32. The file is a safetensors file with the architecture in its \
            metadata, so commands load it with --resume FILE alone and compute in int8 (--precision int8). Its \
            features are those of --precision int8 on the original checkpoint, bit for bit.
            Example: cnclip quantize --resume epoch_latest.pt --vision-model ViT-B-16 \\
              --text-model RoBERTa-wwm-ext-base-chinese --output vit-b-16.int8.safetensors
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("output"), help: "The int8 model file to write (replaced atomically if it exists).")
    var output: String

    func validate() throws {
        if let p = model.computePrecision, p != .int8 { throw ValidationError("quantize writes int8 weights; drop --precision \(model.precision!)") }
    }

    func run() throws {
        try reported {
            let outputURL = URL(fileURLWithPath: output)
            if let resume = model.resume,
                URL(fileURLWithPath: resume).standardizedFileURL.resolvingSymlinksInPath().path
                    == outputURL.standardizedFileURL.resolvingSymlinksInPath().path
            {
                throw CLIPError.invalidInput("--output \(output) is the checkpoint being read; write the int8 model elsewhere")
            }
            var options = model
            options.precision = "int8"
            let loaded = try options.load()
            try QuantizedModelFile.write(loaded.clip, source: model.resume ?? model.model ?? "", to: outputURL)
            let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
            let inputBytes = model.resume.flatMap { try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int }
            let ratio = inputBytes.map { $0 > 0 ? String(format: " (%.2f× the checkpoint)", Double(bytes) / Double($0)) : "" } ?? ""
            printError(
                "wrote \(output): \(loaded.clip.linearWeights().count) int8 weights, \(String(format: "%.1f", Double(bytes) / 1e6)) MB\(ratio)")
        }
    }
}
