import ArgumentParser
import Foundation
import Gallery

/// `cnclip index add`: grows an existing gallery with images (and captions) it does not hold yet.
struct IndexAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add new images (and captions) to a gallery; ids already indexed are skipped.",
        discussion: """
            Use the model the gallery was built with (it is checked). A FAISS index, if the gallery has one, gets the new
            vectors in its existing clusters; rebuild the gallery when it has grown several times over.
            Restart `cnclip serve` to serve the additions.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var source: GallerySourceFlags

    @Option(name: .customLong("index"), help: "The gallery directory.")
    var index: String

    func validate() throws {
        if source.imageData == nil && source.textData == nil { throw ValidationError("give --image-data, --text-data or both") }
        if source.batchSize < 1 { throw ValidationError("--img-batch-size must be positive") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        let clip = try reported { try model.load() }
        var options = GalleryBuildOptions()
        options.batchSize = source.batchSize
        let builder = GalleryBuilder(model: clip, options: options)
        let progress = BuilderProgress()
        builder.progress = { progress.update($0, $1, $2) }
        let summary = try reported {
            defer { progress.finish() }  // end the progress line before the summary or an error
            return try builder.add(images: try source.imageData.map(GalleryImageSource.detect), captions: source.textData, directory: index)
        }
        printSummary(summary, directory: index)
    }
}
