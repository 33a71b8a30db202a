// Feature extraction as cn-clip's `eval/extract_features.py` does it: image features for every image of an `imgs`
// LMDB in cursor order, text features for every line of a texts JSONL in file order, L2-normalised, one JSON line
// each. Images are decoded and preprocessed on worker threads beside the model (a bounded pipeline: at most two
// batches prepared ahead), so decoding overlaps inference. A job of several processes shares the work by whole
// batches (``BatchShard``): every batch keeps the composition it has in a one-process run, so its features — and
// the files built from them — are the same to the byte.

import ChineseCLIP
import Essentials
import Foundation
import Imaging
import Tensors
import Tokenization

/// One line of a feature file, formatted as the reference's `json.dumps({"image_id": id, "feature": [...]})` writes it.
public enum FeatureLine {
    /// `{"<idKey>": <id>, "feature": [f0, f1, …]}` with each float32 written as Python's `repr` of its float64 value.
    ///
    /// Python prints `float(np.float32(x))` with the shortest repr that round-trips the float64 (`PythonJSON.repr`).
    public static func format(idKey: String, id: String, feature: UnsafeBufferPointer<Float>) -> String {
        var line = "{\"\(idKey)\": \(id), \"feature\": ["
        line.reserveCapacity(24 + feature.count * 22)
        for (i, f) in feature.enumerated() {
            if i > 0 { line += ", " }
            line += pythonFloatRepr(f)
        }
        return line + "]}\n"
    }

    /// Python's `repr(float(x))` for a float32 `x` (`NaN`/`Infinity` as `json.dumps` writes them).
    public static func pythonFloatRepr(_ f: Float) -> String {
        PythonJSON.number(Double(f))
    }
}

/// A pointer handed to worker threads that each write their own disjoint slice of it.
public struct SendablePointer<T>: @unchecked Sendable {
    /// The shared pointer.
    public let pointer: UnsafeMutablePointer<T>
    /// Wraps `pointer`.
    public init(pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

/// The first error recorded by any of several threads.
public final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    /// An empty record.
    public init() {}
    /// Keeps `e` unless an error was recorded before.
    public func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
    /// The first error recorded, if any.
    public var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
}

/// A FIFO of at most `capacity` items between one producer and one consumer thread.
public final class BoundedQueue<T> {
    private var items: [T] = []
    private let capacity: Int
    private let condition = NSCondition()
    private var closed = false
    private(set) var cancelled = false

    /// A queue holding at most `capacity` items.
    public init(capacity: Int) { self.capacity = capacity }

    /// Adds `item`, waiting while full; returns false when the consumer has cancelled.
    public func put(_ item: T) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        if cancelled { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// No more items will come.
    public func close() { condition.lock(); closed = true; condition.broadcast(); condition.unlock() }

    /// The consumer stops; a waiting producer is released.
    public func cancel() { condition.lock(); cancelled = true; items.removeAll(); condition.broadcast(); condition.unlock() }

    /// The next item, waiting while empty; nil once closed and drained.
    public func take() -> T? {
        condition.lock(); defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        if items.isEmpty { return nil }
        let item = items.removeFirst()
        condition.broadcast()
        return item
    }
}

/// The batches one process of a job computes: batch `b` (counted from 0 in input order) belongs to the process
/// with `index == b % count`, so consecutive batches go to consecutive processes and each batch holds exactly the
/// items it holds in a one-process run.
public struct BatchShard: Sendable, Equatable {
    /// This process's index, `0..<count` (its MPI rank).
    public let index: Int
    /// Number of processes sharing the batches.
    public let count: Int

    /// Every batch: a job of one process.
    public static let whole = BatchShard(uncheckedIndex: 0, count: 1)

    /// Process `index` of `count`; throws when `index` is outside `0..<count`.
    public init(index: Int, count: Int) throws(DatasetError) {
        guard count >= 1, (0..<count).contains(index) else {
            throw .invalidArgument("batch shard \(index) of \(count): expected 0 ≤ index < count")
        }
        self.init(uncheckedIndex: index, count: count)
    }

    private init(uncheckedIndex: Int, count: Int) { index = uncheckedIndex; self.count = count }

    /// Whether batch `batch` is this process's.
    public func owns(batch: Int) -> Bool { batch % count == index }
}

/// Computes the features of a dataset's images and texts with a Chinese-CLIP model.
public struct FeatureExtractor {
    /// The model.
    public let model: ChineseCLIPModel
    /// Called after each batch with (items done, total or nil).
    public var progress: ((Int, Int?) -> Void)?

    /// An extractor running `model`.
    public init(model: ChineseCLIPModel) { self.model = model }

    /// Image features of every image in the `imgs` LMDB at `lmdbPath`, in cursor order; calls `write` with each
    /// batch's ids (the LMDB keys as ints, as the reference's `int(key)`) and L2-normalised features `[n, embed]`.
    /// With a `shard`, only that process's batches are decoded and computed (every key is still checked, so every
    /// process rejects a bad key alike). Returns the number of images computed here.
    @discardableResult
    public func extractImageFeatures(lmdbPath: String, batchSize: Int, shard: BatchShard = .whole,
                                     write: (_ ids: [Int], _ features: Tensor) throws -> Void) throws -> Int {
        let store = try ImageStore(path: lmdbPath)
        let resolution = model.resolution
        let plane = 3 * resolution * resolution
        typealias Batch = Result<(ids: [Int], pixels: [Float]), Error>
        let queue = BoundedQueue<Batch>(capacity: 2)
        let producer = Thread {
            // Reads the LMDB on this one thread (its read transaction stays on the thread that opened it) and
            // decodes + preprocesses each batch across the cores.
            var pending: [(id: Int, key: String, base64: [UInt8])] = []
            func ship() -> Bool {
                let batch = pending
                pending.removeAll(keepingCapacity: true)
                var pixels = [Float](repeating: 0, count: batch.count * plane)
                let failure = FirstError()
                pixels.withUnsafeMutableBufferPointer { out in
                    let base = SendablePointer(pointer: out.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: batch.count) { i in
                        do {
                            let data = try Base64.decode(batch[i].base64)
                            let image = try Image(data: Data(data), name: "\(lmdbPath) key '\(batch[i].key)'")
                            let chw = image.preprocess(resolution: resolution)
                            chw.withUnsafeBufferPointer { (base.pointer + i * plane).update(from: $0.baseAddress!, count: plane) }
                        } catch {
                            failure.record(DatasetError.badImage(file: lmdbPath, line: nil, id: batch[i].key, reason: "\(error)"))
                        }
                    }
                }
                if let error = failure.error { _ = queue.put(.failure(error)); return false }
                return queue.put(.success((batch.map(\.id), pixels)))
            }
            do {
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
                        if !pending.isEmpty { stopped = !ship() }
                        batch += 1
                        inBatch = 0
                    }
                }
                if !stopped && !pending.isEmpty { _ = ship() }
            } catch {
                _ = queue.put(.failure(error))
            }
            queue.close()
        }
        producer.stackSize = 8 << 20
        producer.start()
        defer { queue.cancel() }
        var done = 0
        while let batch = queue.take() {
            let (ids, pixels) = try batch.get()
            let input = Tensor(shape: [ids.count, 3, resolution, resolution], scalars: pixels)
            try write(ids, model.encodeImages(preprocessed: input, normalized: true))
            done += ids.count
            progress?(done, store.count)
        }
        return done
    }

    /// Text features of every line of the texts JSONL at `jsonlPath`, in file order: each text goes through
    /// `Tokenizer.prepareCaption` (the reference's `_preprocess_text`) and is tokenized at `contextLength`.
    /// Calls `write` with each batch's `text_id` values and L2-normalised features `[n, embed]`. With a `shard`,
    /// only that process's batches are computed (every line is still checked). Returns the count computed here.
    @discardableResult
    public func extractTextFeatures(jsonlPath: String, batchSize: Int, contextLength: Int, shard: BatchShard = .whole,
                                    write: (_ ids: [PyJSON], _ features: Tensor) throws -> Void) throws -> Int {
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
