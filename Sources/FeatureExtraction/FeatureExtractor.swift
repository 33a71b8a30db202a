// Feature extraction as cn-clip's `eval/extract_features.py` does it: image features for every image of an `imgs`
// LMDB in cursor order, text features for every line of a texts JSONL in file order, L2-normalised (written one JSON
// line each by `FeatureLine`, in Evaluation). Images are decoded and preprocessed beside the model (Essentials'
// `BatchPipeline`: at most two batches prepared ahead), so decoding overlaps inference. A job of several processes shares the work by whole
// batches (``BatchShard``): every batch keeps the composition it has in a one-process run, so its features — and
// the files built from them — are the same to the byte.

import ChineseCLIP
import Datasets
import Essentials
import Foundation
import Imaging
import Tensors
import Tokenization

/// The batches one process of a job computes: batch `b` (counted from 0 in input order) belongs to the process
/// with `index == b % count`, so consecutive batches go to consecutive processes and each batch holds exactly the
/// items it holds in a one-process run.
package struct BatchShard: Sendable, Equatable {
    /// This process's index, `0..<count` (its MPI rank).
    package let index: Int
    /// Number of processes sharing the batches.
    package let count: Int

    /// Every batch: a job of one process.
    package static let whole = BatchShard(uncheckedIndex: 0, count: 1)

    /// Process `index` of `count`; throws when `index` is outside `0..<count`.
    package init(index: Int, count: Int) throws(DatasetError) {
        guard count >= 1, (0..<count).contains(index) else {
            throw .invalidArgument("batch shard \(index) of \(count): expected 0 ≤ index < count")
        }
        self.init(uncheckedIndex: index, count: count)
    }

    private init(uncheckedIndex: Int, count: Int) { index = uncheckedIndex; self.count = count }

    /// Whether batch `batch` is this process's.
    package func owns(batch: Int) -> Bool { batch % count == index }
}

/// Computes the features of a dataset's images and texts with a Chinese-CLIP model.
package struct FeatureExtractor {
    /// The model.
    package let model: ChineseCLIPModel
    /// Called after each batch with (items done, total or nil).
    package var progress: ((Int, Int?) -> Void)?

    /// An extractor running `model`.
    package init(model: ChineseCLIPModel) { self.model = model }

    /// Image features of every image in the `imgs` LMDB at `lmdbPath`, in cursor order; calls `write` with each
    /// batch's ids (the LMDB keys as ints, as the reference's `int(key)`) and L2-normalised features `[n, embed]`.
    /// With a `shard`, only that process's batches are decoded and computed (every key is still checked, so every
    /// process rejects a bad key alike). Returns the number of images computed here.
    @discardableResult
    package func extractImageFeatures(
        lmdbPath: String, batchSize: Int, shard: BatchShard = .whole,
        write: (_ ids: [Int], _ features: Tensor) throws -> Void
    ) throws -> Int {
        let store = try ImageStore(path: lmdbPath)
        let resolution = model.resolution
        var done = 0
        try BatchPipeline.run(
            floatsPerItem: 3 * resolution * resolution,
            produce: { ship in
                // Reads the LMDB on the producer thread only (its read transaction stays on the thread that opened it).
                var pending: [(id: Int, key: String, base64: [UInt8])] = []
                var stopped = false
                var batch = 0, inBatch = 0
                try store.forEachBase64 { key, b64 in
                    if stopped { return }
                    guard let id = Int(key) else {
                        throw DatasetError.badRecord(path: lmdbPath, key: key, reason: "image ids must be integers (the reference reads int(key))")
                    }
                    // Other processes' images are skipped undecoded: the cursor walk itself is cheap (memory-mapped).
                    if shard.owns(batch: batch) { pending.append((id, key, Array(b64))) }
                    inBatch += 1
                    if inBatch == batchSize {
                        stopped = !ship(pending)
                        pending.removeAll(keepingCapacity: true)
                        batch += 1
                        inBatch = 0
                    }
                }
                if !stopped { _ = ship(pending) }
            },
            prepare: { item, pixels in
                do {
                    let data = try Base64.decode(item.base64)
                    let image = try Image(data: Data(data), name: "\(lmdbPath) key '\(item.key)'")
                    let chw = image.preprocess(resolution: resolution)
                    _ = pixels.update(fromContentsOf: chw)
                } catch {
                    throw DatasetError.badImage(file: lmdbPath, line: nil, id: item.key, reason: "\(error)")
                }
            },
            consume: { items, pixels, _ in
                let input = Tensor(shape: [items.count, 3, resolution, resolution], scalars: pixels)
                try write(items.map(\.id), model.encodeImages(preprocessed: input, normalized: true))
                done += items.count
                progress?(done, store.count)
            })
        return done
    }

    /// Text features of every line of the texts JSONL at `jsonlPath`, in file order: each text goes through
    /// `Tokenizer.prepareCaption` (the reference's `_preprocess_text`) and is tokenized at `contextLength`.
    /// Calls `write` with each batch's `text_id` values and L2-normalised features `[n, embed]`. With a `shard`,
    /// only that process's batches are computed (every line is still checked). Returns the count computed here.
    @discardableResult
    package func extractTextFeatures(
        jsonlPath: String, batchSize: Int, contextLength: Int, shard: BatchShard = .whole,
        write: (_ ids: [PyJSON], _ features: Tensor) throws -> Void
    ) throws -> Int {
        let reader = JSONLReader(path: jsonlPath)
        var ids: [PyJSON] = [], texts: [String] = []
        var done = 0, seen = 0
        func flush() throws {
            guard !ids.isEmpty else { return }
            let tokens = model.tokenize(texts, contextLength: contextLength)
            try write(ids, model.encodeTexts(tokens: tokens, count: texts.count, normalized: true))
            done += ids.count
            progress?(done, nil)
            ids.removeAll(keepingCapacity: true)
            texts.removeAll(keepingCapacity: true)
        }
        try reader.forEach { object, line, _ in
            for field in ["text_id", "text"] where object[field] == nil {
                throw DatasetError.malformedLine(file: jsonlPath, line: line, reason: "field '\(field)' is missing")
            }
            if shard.owns(batch: seen / batchSize) {
                ids.append(object["text_id"]!)
                // The reference applies str() to the text before lower-casing it.
                texts.append(Tokenizer.prepareCaption(pythonStr(object["text"]!)))
            }
            seen += 1
            if seen % batchSize == 0 { try flush() }
        }
        try flush()
        return done
    }
}
