import ArgumentParser
import ChineseCLIP
import Foundation
import Tensors

/// `cnclip similarity`: the image × text probability table of the reference README's example.
struct Similarity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print, for each image, the probability of each text (softmax of get_similarity's logits_per_image).",
        discussion: "Example: cnclip similarity --model ViT-B-16 --image pokemon.jpeg --text 杰尼龟 --text 妙蛙种子 --text 小火龙 --text 皮卡丘")

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("image"), help: "An image file; repeat for more.")
    var images: [String] = []

    @Option(name: .customLong("text"), help: "A candidate text; repeat for more.")
    var texts: [String] = []

    @Option(name: .customLong("context-length"), help: "Tokens per text, [CLS] and [SEP] included.")
    var contextLength = 52

    @Flag(name: .customLong("logits"), help: "Print the logits instead of probabilities.")
    var logits = false

    func validate() throws {
        if images.isEmpty || texts.isEmpty { throw ValidationError("give at least one --image and one --text") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        try reported {
            let clip = try model.load()
            let img = try clip.encodeImageFiles(images)
            let txt = clip.encodeTexts(texts, contextLength: contextLength)
            let table = clip.similarity(imageFeatures: img, textFeatures: txt).logitsPerImage
            let shown = logits ? table : softmax(table)
            print(render(shown))
        }
    }

    /// A text table: one row per image, one column per text.
    func render(_ t: Tensor) -> String {
        let names = images.map { ($0 as NSString).lastPathComponent }
        let first = max(5, names.map(width).max() ?? 0)
        let cols = texts.map { max(10, width($0)) }
        func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - width(s))) }
        var lines = [pad(logits ? "logits" : "probs", first) + "  " + zip(texts, cols).map { pad($0, $1) }.joined(separator: "  ")]
        for (i, name) in names.enumerated() {
            let cells = (0..<texts.count).map { j in pad(String(format: logits ? "%.4f" : "%.6f", t[i, j]), cols[j]) }
            lines.append(pad(name, first) + "  " + cells.joined(separator: "  "))
        }
        return lines.joined(separator: "\n")
    }

    /// Display width: CJK and other wide characters take two columns.
    func width(_ s: String) -> Int {
        s.unicodeScalars.reduce(0) { n, u in
            n
                + ((0x1100...0x115F).contains(u.value) || (0x2E80...0xA4CF).contains(u.value)
                    || (0xAC00...0xD7A3).contains(u.value) || (0xF900...0xFAFF).contains(u.value) || (0xFE30...0xFE4F).contains(u.value)
                    || (0xFF00...0xFF60).contains(u.value) || (0xFFE0...0xFFE6).contains(u.value) || (0x20000...0x3FFFD).contains(u.value) ? 2 : 1)
        }
    }
}
