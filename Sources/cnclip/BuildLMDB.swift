import ArgumentParser
import Datasets
import Essentials
import Foundation
import Synchronization

/// `cnclip build-lmdb`: `build_lmdb_dataset.py` — a dataset's TSV/JSONL splits into the LMDBs training and evaluation read.
struct BuildLMDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build-lmdb",
        abstract: "Serialize {split}_imgs.tsv and {split}_texts.jsonl into LMDB, as cn-clip's build_lmdb_dataset.py does.",
        discussion: """
            Writes LMDB_DIR/SPLIT/imgs (key image_id → base64, plus num_images) and LMDB_DIR/SPLIT/pairs (key "0".."N-1" → \
            pickle of (image_id, text_id, text), plus num_samples), with the same keys and values as the reference.
            Inputs are validated (errors name file:line); everything is built in a temporary directory and renamed into \
            place at the end, so a failed or interrupted run changes nothing.
            Example: cnclip build-lmdb --data_dir datasets/MUGE --splits train,valid,test
            """)

    @Option(name: [.customLong("data_dir"), .customLong("data-dir")], help: "The directory holding {split}_imgs.tsv and {split}_texts.jsonl.")
    var dataDir: String

    @Option(name: [.customLong("splits")], help: "Comma-separated splits to build, e.g. train,valid,test.")
    var splits: String

    @Option(name: [.customLong("lmdb_dir"), .customLong("lmdb-dir")], help: "Output directory (default: DATA_DIR/lmdb).")
    var lmdbDir: String?

    @Flag(
        name: [.customLong("check-images"), .customLong("check_images")], help: "Also decode every image and report the first bad one by id and line."
    )
    var checkImages = false

    @Flag(
        name: [.customLong("sync")], help: "Flush every commit to disk before going on, as the reference does (crash-safe, slower on large datasets)."
    )
    var sync = false

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        let splitList = LMDBDatasetBuilder.parseSplits(splits)
        let builder = LMDBDatasetBuilder(dataDirectory: dataDir, lmdbDirectory: lmdbDir)
        builder.checkImages = checkImages
        builder.syncToDisk = sync
        print("Dataset splits to be processed: \(splitList.joined(separator: ", "))")
        var bars: [String: ProgressLine] = [:]
        var current: String?
        builder.progress = { p in
            if current != p.file {
                if let c = current { bars[c]?.finish() }
                current = p.file
                bars[p.file] = ProgressLine(label: (p.file as NSString).lastPathComponent)
            }
            bars[p.file]?.update(p.bytesDone, p.bytesTotal)
        }
        let cleanup = removeOnSignal {
            // The created LMDB directory goes too (rmdir: only when nothing else is in it).
            if let tmp = builder.temporaryDirectory { try? FileManager.default.removeItem(atPath: tmp) }
            if let created = builder.createdDirectory { rmdir(created) }
            return nil
        }
        defer { cleanup.forEach { $0.cancel() } }
        let summaries = try reported { try builder.build(splits: splitList) }
        if let c = current { bars[c]?.finish() }
        for s in summaries {
            print("Finished serializing \(s.pairs) \(s.split) split pairs into \((s.directory as NSString).appendingPathComponent("pairs")).")
            print("Finished serializing \(s.images) \(s.split) split images into \((s.directory as NSString).appendingPathComponent("imgs")).")
        }
        print("done!")
    }
}

/// A path shared with a signal handler: the temporary output in progress, if any.
final class PendingPath: Sendable {
    private let path = Mutex<String?>(nil)
    func set(_ p: String?) { path.withLock { $0 = p } }
    func get() -> String? { path.withLock { $0 } }
}

/// On SIGINT/SIGTERM, removes the path `path()` names (a temporary output) before exiting with 128+signal,
/// so an interrupted run leaves nothing behind.
func removeOnSignal(_ path: @escaping () -> String?) -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            if let p = path() { try? FileManager.default.removeItem(atPath: p) }
            FileHandle.standardError.write(Data("\ninterrupted; nothing was written\n".utf8))
            exit(128 + sig)
        }
        source.resume()
        return source
    }
}
