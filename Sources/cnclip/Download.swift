import ArgumentParser
import ChineseCLIP
import Foundation

/// `cnclip download NAME`: fetch a released checkpoint into the cache.
struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download a released checkpoint (ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14, RN50) into the cache.",
        discussion: "An interrupted download is resumed by running the same command again.")

    @Argument(help: "A released model name (see `cnclip models`).")
    var name: String

    @Option(name: .customLong("download-root"), help: "Cache directory (default: ~/.cache/clip, as cn-clip).")
    var downloadRoot: String?

    @Option(name: .customLong("base-url"), help: "Fetch from this mirror instead of the public address (file name appended).")
    var baseURL: String?

    func run() throws {
        try reported {
            guard let model = ModelPresets.released(named: name) else {
                throw CLIPError.unknownModel(name: name, known: ModelPresets.released.map(\.name))
            }
            let downloader = CheckpointDownloader(
                cacheDirectory: downloadRoot.map { URL(fileURLWithPath: $0) } ?? CheckpointDownloader.defaultCacheDirectory,
                baseURL: baseURL)
            let progress = ProgressLine(label: model.fileName)
            let path = try downloader.download(model) { received, total in progress.update(received, total) }
            progress.finish()
            print(path.path)
        }
    }
}
