// `cnclip index`: the searchable galleries `cnclip serve` serves (build, add, search).

import ArgumentParser
import Foundation
import Gallery
import Synchronization

/// `cnclip index`: groups the gallery subcommands.
struct Index: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build, grow and query a searchable image gallery (the index `cnclip serve` serves).",
        subcommands: [IndexBuild.self, IndexAdd.self, IndexSearch.self, IndexRecall.self])
}

/// The flags that say where a gallery's images and captions come from.
struct GallerySourceFlags: ParsableArguments {
    @Option(
        name: .customLong("image-data"), help: "Images: an imgs LMDB directory, an images TSV (id<TAB>base64), or a folder of JPEG/PNG/WebP files.")
    var imageData: String?

    @Option(name: .customLong("text-data"), help: "Captions for image-to-caption search: a texts JSONL ({\"text_id\", \"text\", …} per line).")
    var textData: String?

    @Option(
        name: .customLong("img-batch-size"), help: "Images (and captions) encoded per batch; equal to extract-features's gives its exact features.")
    var batchSize = 64
}

/// Prints a build or add summary.
func printSummary(_ s: GalleryBuildSummary, directory: String) {
    var line = "\(directory): \(s.images) images (\(s.imagesAdded) added"
    if s.imagesSkipped > 0 { line += ", \(s.imagesSkipped) already indexed" }
    line += "), \(s.captions) captions (\(s.captionsAdded) added"
    if s.captionsSkipped > 0 { line += ", \(s.captionsSkipped) already indexed" }
    line += "), index: flat" + (s.approximate.map { " + FAISS \($0)" } ?? "")
    print(line)
}

/// The builder's progress on a terminal: one line per stage, each ended when the next stage starts.
final class BuilderProgress: Sendable {
    private let line = Mutex<(stage: String, bar: ProgressLine)?>(nil)

    /// Shows `done` of `total` items of `stage`.
    func update(_ stage: String, _ done: Int, _ total: Int?) {
        line.withLock { line in
            if line?.stage != stage {
                line?.bar.finish()
                line = (stage, ProgressLine(label: stage))
            }
            line?.bar.update(Int64(done), total.map(Int64.init), unit: "items")
        }
    }

    /// Ends the current line.
    func finish() {
        line.withLock { line in
            line?.bar.finish()
            line = nil
        }
    }
}
