import ArgumentParser
import Foundation
import Gallery

/// `cnclip index build`: a new gallery directory from images (and captions).
struct IndexBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build a searchable gallery: image features, thumbnails, ids, an exact index and optionally a FAISS one.",
        discussion: """
            Example: cnclip index build --resume epoch_latest.pt --config synthetic-clip.json \\
                       --image-data demo/data/lmdb/test/imgs --text-data demo/data/test_texts.jsonl --output demo/index
            The exact index ranks as make-topk-predictions does. --approximate adds a FAISS index (a factory string such
            as IVF4096,Flat or HNSW32, or auto) for galleries of millions; `cnclip serve` then searches through it.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var source: GallerySourceFlags

    @Option(name: .customLong("output"), help: "The gallery directory to create.")
    var output: String

    @Option(name: .customLong("context-length"), help: "Tokens per text, [CLS] and [SEP] included (captions and queries).")
    var contextLength = 52

    @Option(name: .customLong("thumbnail-size"), help: "Longest side of the stored thumbnails, in pixels.")
    var thumbnailSize = 160

    @Option(name: .customLong("approximate"), help: "Also build a FAISS index: a factory string (IVF1024,Flat, HNSW32, …) or auto.")
    var approximate: String?

    @Option(name: .customLong("nprobe"), help: "IVF lists probed per query by the FAISS index.")
    var nprobe = 32

    @Option(name: .customLong("training-sample"), help: "Most vectors the FAISS index is trained on.")
    var trainingSample = 100_000

    func validate() throws {
        if source.imageData == nil { throw ValidationError("--image-data is required") }
        if source.batchSize < 1 { throw ValidationError("--img-batch-size must be positive") }
        if contextLength < 2 { throw ValidationError("--context-length must be at least 2") }
        if thumbnailSize < 16 || thumbnailSize > 1024 { throw ValidationError("--thumbnail-size must be within 16…1024") }
        if nprobe < 1 || trainingSample < 1 { throw ValidationError("--nprobe and --training-sample must be positive") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        let clip = try reported { try model.load() }
        if contextLength > clip.config.textMaxPositionEmbeddings {
            printError("error: --context-length \(contextLength) exceeds the model's \(clip.config.textMaxPositionEmbeddings) positions")
            throw ExitCode.failure
        }
        var options = GalleryBuildOptions()
        options.batchSize = source.batchSize
        options.contextLength = contextLength
        options.thumbnailSize = thumbnailSize
        options.approximate = approximate
        options.nprobe = nprobe
        options.trainingSample = trainingSample
        let builder = GalleryBuilder(model: clip, options: options)
        let progress = BuilderProgress()
        builder.progress = { progress.update($0, $1, $2) }
        let summary = try reported {
            defer { progress.finish() }  // end the progress line before the summary or an error
            return try builder.build(images: try GalleryImageSource.detect(source.imageData!), captions: source.textData, output: output)
        }
        printSummary(summary, directory: output)
    }
}
