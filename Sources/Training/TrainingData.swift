// The reference's training data (`cn_clip/training/data.py`): an LMDB split read as `LMDBDataset`, padded to a
// multiple of the global batch by wrapping around (`index % number_samples`), ordered per epoch by
// `DistributedSampler(shuffle=True, seed=seed)` with `set_epoch(epoch)` — on one process that is
// `randperm(padded_len)` from a generator seeded `seed + epoch` — and cut into consecutive batches.
// Samples: the caption through `_preprocess_text` and `tokenize(context_length)`, the image decoded from base64
// and put through `image_transform(resolution)` — or, for the train split with `--use-augment`, through the
// reference's timm augmentation (`TrainingAugmentation`, Imaging/Augment.swift). Its random choices come from a
// generator derived from (seed, epoch, padded-dataset index) alone, so a sample's augmentation does not depend on
// the decode threads, the batch it lands in or an earlier interrupted run: resuming replays it exactly.

import ChineseCLIP
import Datasets
import Essentials
import Foundation
import Imaging
import NeuralNet
import Tensors
import Tokenization

/// One LMDB split (`{dir}/pairs` + `{dir}/imgs`) read as the reference's `LMDBDataset`.
package final class LMDBTrainingDataset: Sendable {
    /// The split directory.
    package let path: String
    /// "train" or "val": only used in messages, as the reference does.
    package let split: String
    /// Pairs in the LMDB (`num_samples`).
    package let sampleCount: Int
    /// Images in the LMDB (`num_images`).
    package let imageCount: Int
    /// Square side images are resized to.
    package let resolution: Int
    /// Tokens per caption, `[CLS]` and `[SEP]` included.
    package let contextLength: Int
    /// The `--use-augment` transform; nil for the plain resize (always nil outside the train split, as the reference).
    package let augmentation: TrainingAugmentation?
    /// `--seed`: with the epoch and the sample index, it fixes each sample's augmentation.
    package let augmentationSeed: Int
    let pairs: PairsStore
    let images: ImageStore
    let tokenizer: Tokenizer

    /// Opens the split at `path`, checking the directories as the reference's asserts do; `useAugment` takes
    /// effect on the "train" split only (the reference's `split == "train" and use_augment`).
    package init(
        path: String, split: String, resolution: Int, contextLength: Int, tokenizer: Tokenizer,
        useAugment: Bool = false, seed: Int = 0
    ) throws {
        func isDirectory(_ p: String) -> Bool {
            var d: ObjCBool = false
            return FileManager.default.fileExists(atPath: p, isDirectory: &d) && d.boolValue
        }
        guard isDirectory(path) else {
            throw TrainingError.dataset(path: path, reason: "the LMDB directory of the \(split) split does not exist")
        }
        let pairsPath = (path as NSString).appendingPathComponent(DatasetLayout.pairsDirectory)
        let imagesPath = (path as NSString).appendingPathComponent(DatasetLayout.imagesDirectory)
        guard isDirectory(pairsPath) else {
            throw TrainingError.dataset(path: pairsPath, reason: "the LMDB directory of the \(split) image-text pairs does not exist")
        }
        guard isDirectory(imagesPath) else {
            throw TrainingError.dataset(path: imagesPath, reason: "the LMDB directory of the \(split) image base64 strings does not exist")
        }
        do {
            pairs = try PairsStore(path: pairsPath)
            images = try ImageStore(path: imagesPath)
        } catch let e as UserFacingError {  // DatasetError or FileError
            throw TrainingError.dataset(path: pairsPath, reason: "cannot open the \(split) LMDB: \(e.description)")
        }
        guard pairs.count > 0 else {
            throw TrainingError.dataset(path: pairsPath, reason: "the \(split) LMDB holds no pairs (num_samples is 0)")
        }
        self.path = path
        self.split = split
        self.sampleCount = pairs.count
        self.imageCount = images.count
        self.resolution = resolution
        self.contextLength = contextLength
        self.tokenizer = tokenizer
        self.augmentation = split == "train" && useAugment ? TrainingAugmentation(resolution: resolution) : nil
        self.augmentationSeed = seed
    }

    /// The generator of one sample's augmentation, a function of (seed, epoch, index) only. Each step feeds the
    /// next value into a fresh SplitMix64 whose output function is a bijection of its state, so distinct epochs
    /// (then distinct indices) give distinct streams.
    package static func augmentationGenerator(seed: Int, epoch: Int, index: Int) -> SplitMix64 {
        var base = SplitMix64(seed: UInt64(bitPattern: Int64(seed)) ^ 0x6A09_E667_F3BC_C909)
        var perEpoch = SplitMix64(seed: base.next() &+ UInt64(bitPattern: Int64(epoch)))
        var perSample = SplitMix64(seed: perEpoch.next() &+ UInt64(bitPattern: Int64(index)))
        return SplitMix64(seed: perSample.next())
    }

    /// The reference's `pad_dataset`: the length rounded up to a multiple of `globalBatchSize`.
    package func paddedLength(globalBatchSize: Int) -> Int {
        (sampleCount + globalBatchSize - 1) / globalBatchSize * globalBatchSize
    }

    /// Sample `index` of the padded dataset (pair `index % sampleCount`) in `epoch`: the image `[3, res, res]`
    /// (CHW floats; augmented when `augmentation` is set) and the caption's token ids `[contextLength]`.
    package func sample(at index: Int, epoch: Int = 0) throws -> (image: [Float], tokens: [Int32]) {
        let key = index % sampleCount
        let pair: PairRecord
        do { pair = try pairs.pair(at: key) } catch let e as DatasetError {
            throw TrainingError.dataset(path: pairs.environment.path, reason: e.description)
        }
        guard let text = pair.text.stringValue else {
            throw TrainingError.dataset(path: pairs.environment.path, reason: "key '\(key)': the caption is not a string: \(pair.text)")
        }
        let imageID = pair.imageID.intValue.map(String.init) ?? pair.imageID.stringValue ?? "\(pair.imageID)"
        let bytes: Data?
        do { bytes = try images.imageData(id: imageID) } catch let e as DatasetError {
            throw TrainingError.dataset(path: images.environment.path, reason: e.description)
        }
        guard let bytes else {
            throw TrainingError.dataset(
                path: images.environment.path,
                reason: "key '\(imageID)': no such image (pair '\(key)' refers to it)")
        }
        let image: Image
        do { image = try Image(data: bytes, name: "\(images.environment.path) key '\(imageID)'") } catch {
            throw TrainingError.dataset(path: images.environment.path, reason: "key '\(imageID)': cannot decode the image: \(error)")
        }
        let tokens = tokenizer.encode(Tokenizer.prepareCaption(text), contextLength: contextLength)
        if let augmentation {
            var rng = Self.augmentationGenerator(seed: augmentationSeed, epoch: epoch, index: index)
            return (augmentation.tensor(image, using: &rng), tokens)
        }
        return (image.preprocess(resolution: resolution), tokens)
    }
}

/// The reference's per-epoch sample order on one process.
package enum EpochOrder {
    /// `DistributedSampler(shuffle=True, seed=seed)` after `set_epoch(epoch)` with world size 1: the indices of a
    /// dataset of `length` (padded) samples as `randperm(length)` seeded `seed + epoch`.
    package static func indices(length: Int, seed: Int, epoch: Int) -> [Int] {
        torchRandperm(length, seed: UInt64(bitPattern: Int64(seed + epoch)))
    }
}

/// One batch: images `[batch, 3, res, res]` and token ids `[batch, context]` (flat), plus the dataset indices.
package struct TrainingBatch: Sendable {
    /// `[batch, 3, res, res]`.
    package let images: Tensor
    /// `[batch, context]`, row-major.
    package let tokens: [Int32]
    /// The padded-dataset index of each row.
    package let indices: [Int]
    /// Rows.
    package var count: Int { indices.count }
}

/// Builds batches `first..<end` of `order` (cut into `batchSize` runs) on `workers` threads, at most
/// `prefetch` batches ahead of the consumer, delivered in order — the reference's DataLoader, without processes.
package final class BatchLoader: Sendable {
    let dataset: LMDBTrainingDataset
    let epoch: Int
    let order: [Int]
    let batchSize: Int
    let end: Int
    let workers: Int
    let prefetch: Int
    /// Where the consumer and the workers are, and the batches built but not yet consumed.
    private struct Progress: Sendable {
        var nextToConsume: Int
        var nextToBuild: Int
        var ready: [Int: Result<TrainingBatch, Error>] = [:]
        var stopped = false
        var running: Int
    }
    private let progress: Monitor<Progress>

    /// A loader of batches `first..<end` of `epoch` (which seeds augmentation); `workers` 0 builds each batch on
    /// the consumer's thread when asked.
    package init(dataset: LMDBTrainingDataset, order: [Int], batchSize: Int, first: Int, end: Int, workers: Int, epoch: Int = 0) {
        self.dataset = dataset
        self.epoch = epoch
        self.order = order
        self.batchSize = batchSize
        self.end = end
        self.workers = workers
        self.prefetch = max(2 * workers, 1)  // torch's prefetch_factor 2 per worker
        self.progress = Monitor(Progress(nextToConsume: first, nextToBuild: first, running: max(workers, 0)))
        for _ in 0..<max(workers, 0) {
            let t = Thread { [self] in work() }
            t.stackSize = 8 << 20
            t.start()
        }
    }

    deinit { stop() }

    /// Batch `b` of the order (rows `b*batchSize ..< (b+1)*batchSize`).
    package func build(_ b: Int) throws -> TrainingBatch {
        let rows = Array(order[(b * batchSize)..<((b + 1) * batchSize)])
        let plane = 3 * dataset.resolution * dataset.resolution
        let images = Tensor.uninitialized([rows.count, 3, dataset.resolution, dataset.resolution])
        var tokens = [Int32](repeating: 0, count: rows.count * dataset.contextLength)
        for (i, index) in rows.enumerated() {
            let s = try dataset.sample(at: index, epoch: epoch)
            s.image.withUnsafeBufferPointer { (images.mutableData + i * plane).update(from: $0.baseAddress!, count: plane) }
            for j in 0..<dataset.contextLength { tokens[i * dataset.contextLength + j] = s.tokens[j] }
        }
        return TrainingBatch(images: images, tokens: tokens, indices: rows)
    }

    private func work() {
        while true {
            let claimed = progress.wait(until: { $0.stopped || $0.nextToBuild >= end || $0.nextToBuild < $0.nextToConsume + prefetch }) {
                p -> Int? in
                if p.stopped || p.nextToBuild >= end {
                    p.running -= 1
                    return nil
                }
                defer { p.nextToBuild += 1 }
                return p.nextToBuild
            }
            guard let b = claimed else { return }
            let result = Result { try build(b) }
            progress.withLock { $0.ready[b] = result }
        }
    }

    /// The next batch in order, or nil after the last; rethrows a worker's error for that batch.
    package func next() throws -> TrainingBatch? {
        if workers == 0 {
            let b = progress.withLock { p -> Int? in
                guard p.nextToConsume < end else { return nil }
                defer { p.nextToConsume += 1 }
                return p.nextToConsume
            }
            return try b.map(build)
        }
        let result = progress.wait(until: { $0.nextToConsume >= end || $0.ready[$0.nextToConsume] != nil }) {
            p -> Result<TrainingBatch, Error>? in
            guard p.nextToConsume < end else { return nil }
            defer { p.nextToConsume += 1 }
            return p.ready.removeValue(forKey: p.nextToConsume)!
        }
        return try result?.get()
    }

    /// Stops the workers (after the batches they are building); safe to call twice.
    package func stop() {
        progress.withLock { $0.stopped = true }
        progress.wait(until: { $0.running == 0 }) { _ in }
    }
}
