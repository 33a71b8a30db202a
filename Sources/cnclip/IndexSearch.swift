import ArgumentParser
import ChineseCLIP
import Datasets
import Essentials
import FeatureExtraction
import Foundation
import Gallery
import Tensors
import Tokenization

/// `cnclip index search`: queries a gallery from the command line, or writes a prediction file for a texts JSONL.
struct IndexSearch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search a gallery by text or image; with --text-data, write make-topk-predictions's file.",
        discussion: """
            --text / --image print one JSON line per query: {"query": …, "results": [{"row", "id", "score"}, …]}.
            --text-data TEXTS.jsonl --output PRED.jsonl writes {"text_id": …, "image_ids": […]} lines: with the exact
            index and the same batch sizes, the same file extract-features + make-topk-predictions write.
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("index"), help: "The gallery directory.")
    var index: String

    @Option(name: .customLong("text"), help: "A text query; repeat for more.")
    var texts: [String] = []

    @Option(name: .customLong("image"), help: "An image query file; repeat for more.")
    var images: [String] = []

    @Option(name: .customLong("text-data"), help: "A texts JSONL whose every text is a query (writes --output).")
    var textData: String?

    @Option(name: .customLong("output"), help: "The prediction file for --text-data.")
    var output: String?

    @Option(name: .customLong("text-batch-size"), help: "Texts encoded per batch for --text-data.")
    var textBatchSize = 64

    @Option(name: .customLong("top-k"), help: "Results per query.")
    var topK = 10

    @Flag(name: .customLong("approximate"), help: "Search through the FAISS index (the gallery must have one).")
    var approximate = false

    func validate() throws {
        if texts.isEmpty && images.isEmpty && textData == nil { throw ValidationError("give --text, --image or --text-data") }
        if (textData == nil) != (output == nil) { throw ValidationError("--text-data and --output go together") }
        if topK < 1 { throw ValidationError("--top-k must be positive") }
        if textBatchSize < 1 { throw ValidationError("--text-batch-size must be positive") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        let clip = try reported { try model.load() }
        try reported {
            let gallery = try GalleryIndex(directory: index, loadApproximate: approximate)
            try gallery.checkModel(clip)
            if approximate && gallery.approximate == nil {
                throw GalleryError.invalidArgument("\(index) has no FAISS index (build it with --approximate)")
            }
            let context = gallery.manifest.contextLength
            func lines(_ label: (Int) -> PyJSON, _ features: Tensor, count: Int) throws -> String {
                let hits = try features.withUnsafeBufferPointer { try gallery.searchImages($0, queryCount: count, k: topK, approximate: approximate) }
                return hits.enumerated().map { q, list in
                    pythonDumps(
                        .object([
                            (key: "query", value: label(q)),
                            (
                                key: "results",
                                value: .array(
                                    list.map { h in
                                        .object([
                                            (key: "row", value: .int(Int64(h.row))),
                                            (key: "id", value: (try? PyJSONParser.parse(gallery.ids[h.row])) ?? .null),
                                            (key: "score", value: .float(Double(h.score))),
                                        ])
                                    })
                            ),
                        ])) + "\n"
                }.joined()
            }
            var out = ""
            if !texts.isEmpty {
                let features = clip.encodeTexts(texts.map { Tokenizer.prepareCaption($0) }, contextLength: context)
                out += try lines({ .string(texts[$0]) }, features, count: texts.count)
            }
            if !images.isEmpty {
                out += try lines({ .string(images[$0]) }, try clip.encodeImageFiles(images), count: images.count)
            }
            FileHandle.standardOutput.write(Data(out.utf8))
            if let textData, let output { try writePredictions(gallery: gallery, model: clip, textData: textData, output: output, context: context) }
        }
    }

    /// The make-topk-predictions file for every text of `textData`, its features computed as extract-features does.
    private func writePredictions(gallery: GalleryIndex, model: ChineseCLIPModel, textData: String, output: String, context: Int) throws {
        var ids: [String] = [], features: [Float] = []
        try FeatureExtractor(model: model).extractTextFeatures(jsonlPath: textData, batchSize: textBatchSize, contextLength: context) { batch, f in
            ids += batch.map { pythonDumps($0) }  // as json.dumps renders a text_id
            features += f.scalars
        }
        let hits = try features.withUnsafeBufferPointer { try gallery.searchImages($0, queryCount: ids.count, k: topK, approximate: approximate) }
        try AtomicOutput.write(path: output) { sink in
            for (q, list) in hits.enumerated() {
                try sink.write("{\"text_id\": \(ids[q]), \"image_ids\": [" + list.map { gallery.ids[$0.row] }.joined(separator: ", ") + "]}\n")
            }
        }
        print("Top-\(topK) predictions are saved in \(output)")
    }
}
