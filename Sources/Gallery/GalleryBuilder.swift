// Builds and grows gallery directories (the layout is described in GalleryIndex.swift).
//
// Images go through the same steps `extract-features` takes (base64 → decode → Pillow-compatible preprocessing →
// `encodeImages(preprocessed:)` in batches of `batchSize`, in source order), so with the same batch size a gallery
// built from an LMDB holds exactly the features that command writes. Decoding, preprocessing and thumbnailing run on
// worker threads while the model encodes the previous batch (at most two batches prepared ahead).
//
// `build` writes a new directory under a temporary name and renames it into place: an interrupted build leaves
// nothing. `add` appends to an existing one and rewrites the manifest last, so an interrupted add leaves the index
// as it was (the rows past the manifest's count are cut off by the next add).

import ChineseCLIP
import Datasets
import Essentials
import FeatureExtraction
import Foundation
import Imaging
import Synchronization
import Tensors

#if canImport(Glibc)
    import Glibc
#endif

/// How to build a gallery.
package struct GalleryBuildOptions: Sendable {
    /// Images (and captions) encoded per batch; the same as `extract-features`'s `--img-batch-size` gives the same features.
    package var batchSize = 64
    /// Longest side of a thumbnail (smaller images are kept at their size).
    package var thumbnailSize = 160
    /// JPEG quality of thumbnails.
    package var thumbnailQuality = 85
    /// Tokens per caption.
    package var contextLength = 52
    /// A FAISS factory string for the approximate index, `"auto"` (IVF sized to the gallery), or nil for none.
    package var approximate: String?
    /// The IVF lists probed per query (ignored by non-IVF indexes).
    package var nprobe = 32
    /// Most vectors the approximate index is trained on (an evenly spaced sample of the gallery).
    package var trainingSample = 100_000

    /// The defaults.
    package init() {}
}

/// What a build or an add did.
package struct GalleryBuildSummary: Sendable, Equatable {
    /// Images added.
    package var imagesAdded = 0
    /// Images skipped because their id was already indexed.
    package var imagesSkipped = 0
    /// Captions added.
    package var captionsAdded = 0
    /// Captions skipped because their text_id was already indexed.
    package var captionsSkipped = 0
    /// Images in the gallery afterwards.
    package var images = 0
    /// Captions in the gallery afterwards.
    package var captions = 0
    /// The approximate index's factory string, if the gallery has one.
    package var approximate: String?
}

/// Builds a gallery directory from images (and optionally captions) with a Chinese-CLIP model.
package final class GalleryBuilder {
    /// The fixed text whose feature identifies the model in a manifest.
    package static let probeText = "一张照片"

    /// The model computing features.
    package let model: ChineseCLIPModel
    /// Build settings.
    package var options: GalleryBuildOptions
    /// Called after each batch with (stage, items done, total if known).
    package var progress: ((_ stage: String, _ done: Int, _ total: Int?) -> Void)?

    /// A builder using `model`.
    package init(model: ChineseCLIPModel, options: GalleryBuildOptions = GalleryBuildOptions()) {
        self.model = model
        self.options = options
    }

    /// Builds a new gallery at `output` (which must not exist, or be an empty directory) from `images` and, when
    /// given, the captions of the texts JSONL `captions` (`{"text_id", "text", …}` per line).
    @discardableResult
    package func build(images: GalleryImageSource, captions: String?, output: String) throws -> GalleryBuildSummary {
        guard options.batchSize > 0 else { throw GalleryError.invalidArgument("the batch size must be positive") }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: output, isDirectory: &isDir) {
            guard isDir.boolValue, (try? fm.contentsOfDirectory(atPath: output))?.isEmpty == true else {
                throw FileError(path: output, reason: "already exists; use `cnclip index add` to grow an index, or choose a new directory")
            }
        }
        let url = URL(fileURLWithPath: output).standardizedFileURL
        let folder: AtomicOutputFolder
        do {
            try fm.createDirectory(atPath: url.deletingLastPathComponent().path, withIntermediateDirectories: true)
            folder = try AtomicOutputFolder(path: url.path)
        } catch let e as FileError {
            throw e
        } catch {
            throw FileError(path: url.deletingLastPathComponent().path, reason: "cannot create: \(error.localizedDescription)")
        }
        let tmp = folder.temporaryPath
        do {
            let probe = model.encodeTexts([Self.probeText], contextLength: options.contextLength).scalars
            var manifest = GalleryManifest(
                count: 0, dim: model.config.embedDim, captions: 0, thumbnailSize: options.thumbnailSize,
                contextLength: options.contextLength, probeText: Self.probeText, probeFeature: probe,
                precision: model.precision.rawValue)
            var summary = try append(directory: tmp, manifest: &manifest, images: images, captions: captions, newApproximate: options.approximate)
            try manifest.write(directory: tmp)
            do { try folder.commit() } catch let e as FileError {
                throw FileError(path: output, reason: e.reason)
            }
            summary.approximate = manifest.approximate?.factory
            return summary
        } catch {
            folder.discard()
            throw error
        }
    }

    /// Adds the images (and captions) whose ids the gallery at `directory` lacks, built with the same model.
    /// The approximate index, if any, gets the new vectors too (its clustering stays the one it was trained with).
    @discardableResult
    package func add(images: GalleryImageSource?, captions: String?, directory: String) throws -> GalleryBuildSummary {
        guard options.batchSize > 0 else { throw GalleryError.invalidArgument("the batch size must be positive") }
        var manifest = try GalleryManifest.read(directory: directory)
        options.contextLength = manifest.contextLength
        options.thumbnailSize = manifest.thumbnailSize
        let probe = model.encodeTexts([manifest.probeText], contextLength: manifest.contextLength).scalars
        try GalleryIndex.check(probe: probe, precision: model.precision.rawValue, against: manifest, directory: directory)
        var summary = try append(directory: directory, manifest: &manifest, images: images, captions: captions, newApproximate: nil)
        try manifest.write(directory: directory)
        summary.approximate = manifest.approximate?.factory
        return summary
    }

    // MARK: Appending

    private func path(_ dir: String, _ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    private func append(
        directory dir: String, manifest: inout GalleryManifest, images: GalleryImageSource?, captions: String?,
        newApproximate: String?
    ) throws -> GalleryBuildSummary {
        var summary = GalleryBuildSummary()
        let dim = manifest.dim
        let startCount = manifest.count
        if let images {
            let ids = try Self.truncate(lines: path(dir, GalleryFiles.imageIDs), to: manifest.count)
            try Self.truncate(file: path(dir, GalleryFiles.imageFeatures), to: manifest.count * dim * 4)
            let known = Set(ids)
            let idsOut = try openForAppending(path(dir, GalleryFiles.imageIDs))
            let featuresOut = try openForAppending(path(dir, GalleryFiles.imageFeatures))
            defer { try? idsOut.close(); try? featuresOut.close() }
            let thumbs = try LMDBEnvironment(creatingAt: path(dir, GalleryFiles.thumbnails), mapSize: 64 << 20)
            let writer = LMDBBatchWriter(thumbs)
            var row = manifest.count
            summary.imagesSkipped = try encodeImages(images, skipping: known) { ids, features, thumbnails in
                try featuresOut.write(contentsOf: Self.bytes(features))
                try idsOut.write(contentsOf: Data(ids.map { $0 + "\n" }.joined().utf8))
                for t in thumbnails {
                    try writer.put(String(row), t)
                    row += 1
                }
            }
            try writer.finish()
            try thumbs.sync()
            try featuresOut.synchronize()
            try idsOut.synchronize()
            summary.imagesAdded = row - manifest.count
            manifest.count = row
        }
        if let captions {
            let lines = try Self.truncate(lines: path(dir, GalleryFiles.captions), to: manifest.captions)
            try Self.truncate(file: path(dir, GalleryFiles.captionFeatures), to: manifest.captions * dim * 4)
            var known = Set(
                try lines.map { line -> String in
                    guard case .object(let m)? = try? PyJSONParser.parse(line), let id = m.last(where: { $0.key == "text_id" })?.value else {
                        throw GalleryError.badIndex(path: path(dir, GalleryFiles.captions), reason: "unreadable line \(line.prefix(60))")
                    }
                    return pythonDumps(id)
                })
            let linesOut = try openForAppending(path(dir, GalleryFiles.captions))
            let featuresOut = try openForAppending(path(dir, GalleryFiles.captionFeatures))
            defer { try? linesOut.close(); try? featuresOut.close() }
            // The texts, in file order, as the feature extractor will see them.
            var texts: [(id: String, text: String)] = []
            try JSONLReader(path: captions).forEach { object, line, _ in
                guard let id = object["text_id"], let text = object["text"] else {
                    throw DatasetError.malformedLine(file: captions, line: line, reason: "a caption needs \"text_id\" and \"text\"")
                }
                // The id as json.dumps renders it (what prediction files echo).
                texts.append((pythonDumps(id), pythonStr(text)))
            }
            var next = 0
            let extractor = FeatureExtractor(model: model)
            try extractor.extractTextFeatures(jsonlPath: captions, batchSize: options.batchSize, contextLength: manifest.contextLength) {
                _, features in
                let n = features.shape[0]
                var keep: [Int] = []
                var out = ""
                for r in 0..<n {
                    let t = texts[next + r]
                    if known.contains(t.id) { summary.captionsSkipped += 1; continue }
                    known.insert(t.id)
                    keep.append(r)
                    var line = [UInt8]()
                    pythonDumps(.object([(key: "text_id", value: try PyJSONParser.parse(t.id)), (key: "text", value: .string(t.text))]), into: &line)
                    out += String(decoding: line, as: UTF8.self) + "\n"
                }
                next += n
                let kept = features.scalars
                var rows = [Float]()
                rows.reserveCapacity(keep.count * dim)
                for r in keep { rows += kept[(r * dim)..<((r + 1) * dim)] }
                try featuresOut.write(contentsOf: Self.bytes(rows))
                try linesOut.write(contentsOf: Data(out.utf8))
                summary.captionsAdded += keep.count
                progress?("captions", next, texts.count)
            }
            try featuresOut.synchronize()
            try linesOut.synchronize()
            manifest.captions += summary.captionsAdded
        }
        try updateApproximate(directory: dir, manifest: &manifest, from: startCount, newFactory: newApproximate)
        summary.images = manifest.count
        summary.captions = manifest.captions
        return summary
    }

    /// Builds the FAISS index (when `newFactory` is given) or adds rows `from..<count` to the existing one.
    private func updateApproximate(directory dir: String, manifest: inout GalleryManifest, from: Int, newFactory: String?) throws {
        let file = path(dir, GalleryFiles.approximate)
        if newFactory == nil && (manifest.approximate == nil || from == manifest.count) { return }
        guard manifest.count > 0 else {
            if newFactory != nil { throw GalleryError.invalidArgument("an approximate index needs at least one image") }
            return
        }
        let mapped = try GalleryIndex.mapRows(path(dir, GalleryFiles.imageFeatures), rows: manifest.count, dim: manifest.dim, directory: dir)
        let all = GalleryIndex.floats(mapped, rows: manifest.count, dim: manifest.dim)
        let dim = manifest.dim
        if let requested = newFactory {
            let factory = requested == "auto" ? Self.autoFactory(count: manifest.count, trainingSample: options.trainingSample) : requested
            let index = try FaissIndex(dim: dim, factory: factory)
            // An evenly spaced sample: the same rows on every run, spread over the whole gallery.
            let n = manifest.count, sample = min(n, max(1, options.trainingSample))
            var training = [Float](repeating: 0, count: sample * dim)
            for i in 0..<sample {
                let r = Int((Int64(i) * Int64(n)) / Int64(sample))
                for j in 0..<dim { training[i * dim + j] = all[r * dim + j] }
            }
            progress?("training \(factory)", 0, nil)
            if !index.isTrained { try index.train(training, count: sample) }
            var parameters: [String: Double] = [:]
            if factory.uppercased().contains("IVF") { parameters["nprobe"] = Double(max(1, options.nprobe)) }
            for (k, v) in parameters { try index.setParameter(k, v) }
            try addInChunks(index, all, rows: 0..<n, dim: dim)
            try index.write(to: file)
            manifest.approximate = .init(factory: factory, parameters: parameters, trainedOn: sample)
        } else {
            let index = try FaissIndex(contentsOf: file)
            guard index.count == from else {
                throw GalleryError.badIndex(path: file, reason: "holds \(index.count) vectors, the gallery had \(from); rebuild the index")
            }
            try addInChunks(index, all, rows: from..<manifest.count, dim: dim)
            try index.write(to: file)
        }
    }

    private func addInChunks(_ index: FaissIndex, _ all: UnsafeBufferPointer<Float>, rows: Range<Int>, dim: Int) throws {
        var start = rows.lowerBound
        while start < rows.upperBound {
            let end = min(rows.upperBound, start + 65536)
            try index.add(all.baseAddress! + start * dim, count: end - start)
            progress?("approximate index", end - rows.lowerBound, rows.count)
            start = end
        }
    }

    /// `IVF{lists},Flat` with about 4·√n lists, but at most one per 39 training vectors (FAISS's minimum per list,
    /// below which its k-means warns and clusters poorly).
    package static func autoFactory(count n: Int, trainingSample: Int) -> String {
        let lists = max(1, min(Int((4 * Double(n).squareRoot()).rounded()), min(n, trainingSample) / 39))
        return "IVF\(lists),Flat"
    }

    // MARK: The image pipeline

    /// Reads `source` in order, skipping the ids in `indexed`, and calls `write` with each batch's ids, features
    /// `[n, dim]` and JPEG thumbnails; returns how many images were skipped.
    private func encodeImages(
        _ source: GalleryImageSource, skipping indexed: Set<String>,
        write: (_ ids: [String], _ features: [Float], _ thumbnails: [Data]) throws -> Void
    ) throws -> Int {
        let resolution = model.resolution
        let batchSize = options.batchSize, thumbSize = options.thumbnailSize, quality = options.thumbnailQuality
        let sourceName = source.path
        var done = 0
        let skipped = Atomic(0)
        try BatchPipeline.run(
            floatsPerItem: 3 * resolution * resolution,
            produce: { ship in
                var pending: [GalleryImageSource.Item] = []
                var seen = Set<String>()
                var going = true
                try source.forEach { item in
                    if !seen.insert(item.id).inserted { throw GalleryError.duplicateID(source: sourceName, id: item.id) }
                    if indexed.contains(item.id) { skipped.add(1, ordering: .relaxed); return true }
                    pending.append(item)
                    if pending.count == batchSize {
                        going = ship(pending)
                        pending.removeAll(keepingCapacity: true)
                    }
                    return going
                }
                if going { _ = ship(pending) }
            },
            prepare: { item, pixels in
                do {
                    let image = try Image(data: try item.bytes(), name: "\(sourceName) id \(item.id)")
                    _ = pixels.update(fromContentsOf: image.preprocess(resolution: resolution))
                    return try Self.thumbnail(image, size: thumbSize, quality: quality)
                } catch {
                    throw GalleryError.badImage(source: sourceName, id: item.id, reason: "\(error)")
                }
            },
            consume: { items, pixels, thumbnails in
                let input = Tensor(shape: [items.count, 3, resolution, resolution], scalars: pixels)
                try write(items.map(\.id), model.encodeImages(preprocessed: input, normalized: true).scalars, thumbnails)
                done += items.count
                progress?("images", done, nil)
            })
        return skipped.load(ordering: .relaxed)
    }

    /// A JPEG of `image` in RGB whose longer side is at most `size` (never enlarged), resized bicubically.
    static func thumbnail(_ image: Image, size: Int, quality: Int) throws -> Data {
        var rgb = image.converted(to: .rgb)
        let longer = max(rgb.width, rgb.height)
        if longer > size {
            let w = max(1, Int((Double(rgb.width) * Double(size) / Double(longer)).rounded()))
            let h = max(1, Int((Double(rgb.height) * Double(size) / Double(longer)).rounded()))
            rgb = rgb.resized(to: (w, h), filter: .bicubic)
        }
        return try rgb.jpegData(quality: quality)
    }

    // MARK: Files

    static func bytes(_ floats: [Float]) -> Data {
        // Little-endian on every platform this runs on (x86-64, arm64).
        floats.withUnsafeBytes { Data($0) }
    }

    /// Cuts `path` to `bytes` (an interrupted add may have left more).
    static func truncate(file path: String, to bytes: Int) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            if bytes == 0 { return }
            throw GalleryError.badIndex(path: path, reason: "missing")
        }
        guard Glibc.truncate(path, off_t(bytes)) == 0 else {
            throw FileError(path: path, reason: "cannot truncate: \(String(cString: strerror(errno)))")
        }
    }

    /// The first `count` lines of `path`, after cutting the file after them.
    static func truncate(lines path: String, to count: Int) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            if count == 0 { return [] }
            throw GalleryError.badIndex(path: path, reason: "missing")
        }
        var lines: [String] = [], end = 0
        var start = data.startIndex
        while lines.count < count, let nl = data[start...].firstIndex(of: 0x0A) {
            lines.append(String(decoding: data[start..<nl], as: UTF8.self))
            start = nl + 1
            end = start - data.startIndex
        }
        guard lines.count == count else { throw GalleryError.badIndex(path: path, reason: "fewer than the manifest's \(count) lines") }
        try truncate(file: path, to: end)
        return lines
    }
}

extension GalleryIndex {
    /// Throws unless `probe` (computed in `precision`) matches the manifest's probe feature: the same model built the
    /// index. Within one precision the features agree to the last bits (a different BLAS split may move them); across
    /// fp32 and int8 they agree to the int8 path's guarantee, a cosine of at least 0.999 (measured ≥ 0.9999). A
    /// different model moves whole digits either way.
    static func check(probe: [Float], precision: String, against manifest: GalleryManifest, directory: String) throws {
        guard probe.count == manifest.dim else {
            throw GalleryError.modelMismatch(path: directory, reason: "the model's features have \(probe.count) values, the index's \(manifest.dim)")
        }
        let built = manifest.precision ?? "fp32"
        if built == precision {
            let diff = zip(probe, manifest.probeFeature).map { abs($0 - $1) }.max() ?? 0
            guard diff <= 1e-4 else {
                throw GalleryError.modelMismatch(
                    path: directory,
                    reason: "built with another model (probe feature differs by \(diff)); pass the checkpoint and config it was built with")
            }
        } else {
            let dot = zip(probe, manifest.probeFeature).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            let norms = (probe.reduce(Float(0)) { $0 + $1 * $1 } * manifest.probeFeature.reduce(Float(0)) { $0 + $1 * $1 }).squareRoot()
            let cosine = norms > 0 ? dot / norms : 0
            guard cosine >= 0.999 else {
                throw GalleryError.modelMismatch(
                    path: directory,
                    reason:
                        "built with another model (its \(built) probe feature and this \(precision) one have cosine \(cosine), below 0.999); pass the checkpoint and config it was built with"
                )
            }
        }
    }
}
