import ArgumentParser
import ChineseCLIP
import Essentials
import Foundation
import Tensors

/// `cnclip encode`: features of images and texts as JSON lines.
struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the features of images and texts, one JSON line per input.",
        discussion: """
            Each line is {"image": PATH, "feature": [...]} or {"text": TEXT, "feature": [...]}, images first, in the
            order given. Features are L2-normalised (as cn-clip's extract_features writes them) unless --unnormalized,
            which gives encode_image / encode_text as they are.
            Example: cnclip encode --model ViT-B-16 --image cat.jpg --text 一只猫
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("image"), help: "An image file (JPEG, PNG or WebP); repeat for more.")
    var images: [String] = []

    @Option(name: .customLong("text"), help: "A text; repeat for more.")
    var texts: [String] = []

    @Option(name: .customLong("context-length"), help: "Tokens per text, [CLS] and [SEP] included.")
    var contextLength = 52

    @Flag(name: .customLong("unnormalized"), help: "Print features before L2 normalisation.")
    var unnormalized = false

    func validate() throws {
        if images.isEmpty && texts.isEmpty { throw ValidationError("give at least one --image or --text") }
        if contextLength < 2 { throw ValidationError("--context-length must be at least 2") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        try reported {
            let clip = try model.load()
            if contextLength > clip.config.textMaxPositionEmbeddings {
                throw CLIPError.invalidInput(
                    "--context-length \(contextLength) exceeds the model's \(clip.config.textMaxPositionEmbeddings) positions")
            }
            // Everything is computed before anything is printed, so a bad input leaves no partial output.
            let imageFeatures = try clip.encodeImageFiles(images, normalized: !unnormalized)
            let textFeatures = clip.encodeTexts(texts, contextLength: contextLength, normalized: !unnormalized)
            var out = ""
            for (i, path) in images.enumerated() { out += line("image", path, imageFeatures.rows(i..<i + 1)) }
            for (i, text) in texts.enumerated() { out += line("text", text, textFeatures.rows(i..<i + 1)) }
            FileHandle.standardOutput.write(Data(out.utf8))
        }
    }

    private func line(_ kind: String, _ name: String, _ feature: Tensor) -> String {
        "{\"\(kind)\": \(PythonJSON.string(name, ensureASCII: false)), \"feature\": [\(feature.scalars.map { "\($0)" }.joined(separator: ", "))]}\n"
    }
}
