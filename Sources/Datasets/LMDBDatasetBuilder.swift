// Builds the LMDB form of a dataset from `{split}_imgs.tsv` and `{split}_texts.jsonl`, with the same keys and
// values as `build_lmdb_dataset.py` (see DatasetStore.swift for the layout), but:
//   - inputs are streamed and validated, errors name `file:line` (and the id at fault);
//   - images are written first, so each text's image ids can be checked against the split's TSV;
//   - everything is built in a hidden temporary directory inside the LMDB directory and renamed into place only
//     when every split has been built, so a failed or interrupted run leaves no half-built LMDB and
//     an existing one is replaced only at the very end;
//   - parsing and validation run beside LMDB's writing (a pipelined batch writer: two batches in flight);
//   - by default commits are not flushed to disk (`MDB_NOSYNC`): the data reaches the disk through the kernel's
//     writeback, as with `cp`. The reference flushes every commit (py-lmdb's default), which makes it wait for the
//     disk on every batch — on a dataset of gigabytes that wait is most of its run time. `syncToDisk` restores
//     it (each commit flushed, as the reference does); deferring one big flush to the end measured slower still.
// Pairs are numbered in file order, then in `image_ids` order within a line, as the reference numbers them.

import Checkpoints
import Essentials
import Foundation
import Imaging

/// What was built for one split.
package struct SplitSummary: Equatable, Sendable {
    /// The split name.
    package var split: String
    /// The number of image-text pairs written (`num_samples`).
    package var pairs: Int
    /// The number of images written (`num_images`).
    package var images: Int
    /// The split's LMDB directory after the build.
    package var directory: String
}

/// Progress of a build: which file is being read and how far.
package struct BuildProgress: Sendable {
    /// The split being built.
    package var split: String
    /// The input file being read.
    package var file: String
    /// Bytes of `file` read so far.
    package var bytesDone: Int64
    /// The size of `file`.
    package var bytesTotal: Int64
    /// Records (lines) read so far in `file`.
    package var records: Int
}

/// Builds `{lmdb_dir}/{split}/{imgs,pairs}` from a data directory in the reference's layout.
package final class LMDBDatasetBuilder {
    /// The directory holding `{split}_imgs.tsv` and `{split}_texts.jsonl`.
    package let dataDirectory: String
    /// Where the split directories go (the reference's default: `{data_dir}/lmdb`).
    package let lmdbDirectory: String
    /// Whether to decode every image (slower) so a corrupt one is reported by id and line.
    package var checkImages = false
    /// Pairs per LMDB transaction (the reference commits every 5000).
    package var pairsPerCommit = 5000
    /// Images per LMDB transaction (the reference commits every 1000).
    package var imagesPerCommit = 1000
    /// Whether every commit is flushed to disk before the next (the reference's behaviour; slower, crash-safe).
    package var syncToDisk = false
    /// Called now and then while reading inputs.
    package var progress: ((BuildProgress) -> Void)?
    /// The temporary directory of the build in progress (removed when the build ends, whether it succeeds or not).
    package private(set) var temporaryDirectory: String?
    /// The LMDB directory, while a build that created it is in progress (a failed build removes it again).
    package private(set) var createdDirectory: String?

    /// A builder reading `dataDirectory` and writing into `lmdbDirectory` (default `{dataDirectory}/lmdb`).
    package init(dataDirectory: String, lmdbDirectory: String? = nil) {
        self.dataDirectory = dataDirectory
        self.lmdbDirectory = lmdbDirectory ?? (dataDirectory as NSString).appendingPathComponent("lmdb")
    }

    /// `splits` as the reference reads `--splits`: comma-separated, whitespace-trimmed, duplicates dropped (first kept).
    package static func parseSplits(_ text: String) -> [String] {
        var seen = Set<String>()
        return text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",", omittingEmptySubsequences: false)
            .map(String.init).filter { seen.insert($0).inserted }
    }

    /// The image TSV of `split`.
    package func imagesFile(_ split: String) -> String { (dataDirectory as NSString).appendingPathComponent("\(split)_imgs.tsv") }
    /// The text JSONL of `split`.
    package func textsFile(_ split: String) -> String { (dataDirectory as NSString).appendingPathComponent("\(split)_texts.jsonl") }

    /// Builds every split; on success the split directories are in place, on error nothing was changed.
    @discardableResult
    package func build(splits: [String]) throws -> [SplitSummary] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dataDirectory, isDirectory: &isDir), isDir.boolValue else {
            throw FileError(path: dataDirectory, reason: "the data directory does not exist")
        }
        guard !splits.isEmpty else { throw DatasetError.invalidArgument("no split given") }
        for split in splits {
            if split.isEmpty || split.contains("/") || split.hasPrefix(".") {
                throw DatasetError.invalidArgument("invalid split name '\(split)'")
            }
            for file in [imagesFile(split), textsFile(split)] where !fm.isReadableFile(atPath: file) {
                throw FileError(path: file, reason: "no such file (split '\(split)' needs it)")
            }
        }
        let createdRoot = !fm.fileExists(atPath: lmdbDirectory)
        if createdRoot { createdDirectory = lmdbDirectory }
        defer { createdDirectory = nil }
        do {
            try fm.createDirectory(atPath: lmdbDirectory, withIntermediateDirectories: true)
        } catch {
            throw FileError(path: lmdbDirectory, reason: "cannot create: \(error.localizedDescription)")
        }
        let tmp = try AtomicOutput.workingFolder(in: lmdbDirectory, purpose: "build-lmdb")
        temporaryDirectory = tmp
        defer {
            try? fm.removeItem(atPath: tmp)
            temporaryDirectory = nil
        }
        var summaries: [SplitSummary] = []
        do {
            for split in splits {
                let dir = (tmp as NSString).appendingPathComponent(split)
                let images = try buildImages(split: split, into: (dir as NSString).appendingPathComponent(DatasetLayout.imagesDirectory))
                let pairs = try buildPairs(
                    split: split, imageIDs: images.ids,
                    into: (dir as NSString).appendingPathComponent(DatasetLayout.pairsDirectory))
                summaries.append(
                    SplitSummary(
                        split: split, pairs: pairs, images: images.count,
                        directory: (lmdbDirectory as NSString).appendingPathComponent(split)))
            }
            // Everything is built: swap the splits into place.
            // One step per split: the previous LMDB, if any, is swapped out into the temporary folder, removed with it.
            for split in splits {
                let target = (lmdbDirectory as NSString).appendingPathComponent(split)
                try AtomicOutputFolder.install((tmp as NSString).appendingPathComponent(split), at: target)
            }
        } catch {
            if createdRoot { try? fm.removeItem(atPath: lmdbDirectory) }
            throw error
        }
        return summaries
    }

    /// Writes `{split}/imgs` and returns the ids seen (id → line) and the line count (`num_images`).
    func buildImages(split: String, into path: String) throws -> (ids: [String: Int], count: Int) {
        let file = imagesFile(split)
        let reader = ImageTSVReader(path: file)
        let total = try reader.lines.fileSize
        let env = try LMDBEnvironment(creatingAt: path, mapSize: Int(total + total / 4) + (16 << 20), durable: syncToDisk)
        let writer = LMDBBatchWriter(env, maxEntries: imagesPerCommit, pipelined: true)
        var ids: [String: Int] = [:]
        var count = 0
        try reader.forEach { record, line, offset in
            let id = String(decoding: record.id, as: UTF8.self)
            if let first = ids.updateValue(line, forKey: id) {
                throw DatasetError.duplicateImage(file: file, line: line, id: id, firstLine: first)
            }
            if checkImages {
                do {
                    let bytes = try Base64.decode(record.base64)
                    _ = try Image(data: Data(bytes), name: "\(file):\(line)")
                } catch {
                    throw DatasetError.badImage(file: file, line: line, id: id, reason: "\(error)")
                }
            }
            try writer.put(UnsafeRawBufferPointer(record.id), UnsafeRawBufferPointer(record.base64))
            count += 1
            if count % 256 == 0 {
                progress?(BuildProgress(split: split, file: file, bytesDone: offset, bytesTotal: total, records: count))
            }
        }
        try writer.put(DatasetLayout.numImagesKey, Array(String(count).utf8))
        try writer.finish()
        progress?(BuildProgress(split: split, file: file, bytesDone: total, bytesTotal: total, records: count))
        return (ids, count)
    }

    /// Writes `{split}/pairs` and returns the number of pairs (`num_samples`).
    func buildPairs(split: String, imageIDs: [String: Int], into path: String) throws -> Int {
        let file = textsFile(split)
        let imagesFile = imagesFile(split)
        let reader = JSONLReader(path: file)
        let total = try reader.lines.fileSize
        let env = try LMDBEnvironment(creatingAt: path, mapSize: 64 << 20, durable: syncToDisk)
        let writer = LMDBBatchWriter(env, maxEntries: pairsPerCommit, pipelined: true)
        var index = 0, lines = 0
        try reader.forEach { object, line, offset in
            for field in ["text_id", "text", "image_ids"] where object[field] == nil {
                throw DatasetError.malformedLine(file: file, line: line, reason: "field '\(field)' is missing (need text_id, text, image_ids)")
            }
            let textID = object["text_id"]!, text = object["text"]!
            guard case .array(let images) = object["image_ids"]! else {
                throw DatasetError.malformedLine(file: file, line: line, reason: "'image_ids' must be a list")
            }
            func pickled(_ v: PyJSON, _ field: String) throws -> PickleValue {
                guard let p = v.pickleValue else {
                    throw DatasetError.malformedLine(file: file, line: line, reason: "'\(field)' holds an integer beyond 64 bits")
                }
                return p
            }
            let textPickle = try pickled(text, "text"), textIDPickle = try pickled(textID, "text_id")
            for imageID in images {
                let key = pythonStr(imageID)
                if imageIDs[key] == nil {
                    throw DatasetError.missingImage(file: file, line: line, textID: pythonStr(textID), imageID: key, imagesFile: imagesFile)
                }
                let value = try DatasetLayout.pairValue(imageID: try pickled(imageID, "image_ids"), textID: textIDPickle, text: textPickle)
                try writer.put(String(index), value)
                index += 1
            }
            lines += 1
            if lines % 1024 == 0 {
                progress?(BuildProgress(split: split, file: file, bytesDone: offset, bytesTotal: total, records: lines))
            }
        }
        try writer.put(DatasetLayout.numSamplesKey, Array(String(index).utf8))
        try writer.finish()
        progress?(BuildProgress(split: split, file: file, bytesDone: total, bytesTotal: total, records: lines))
        return index
    }
}
