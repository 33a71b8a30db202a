// A searchable gallery on disk: what `cnclip index build` writes and `cnclip serve` reads.
//
// DIR/index.json            the manifest (its `count` is the truth: rows past it are leftovers of an interrupted add)
// DIR/image_ids.jsonl       one id per line, as json.dumps renders it (LMDB/TSV ids are ints, folder ids are paths)
// DIR/image_features.f32    `[count, dim]` little-endian float32, L2-normalised, in the order the source was read
// DIR/captions.jsonl        optional: {"text_id": …, "text": …} per line, for image → caption search
// DIR/caption_features.f32  their features `[captions, dim]`
// DIR/thumbnails/           an LMDB: key = decimal row, value = JPEG bytes
// DIR/approximate.faiss     optional: a FAISS index over the same rows (ids = rows)
//
// Exact search scans the memory-mapped features with `TopKSearch` — the very code `make-topk-predictions` runs —
// so its ranking is that command's ranking. Approximate search asks FAISS for candidates and rescores them with the
// same canonical dot product, so the scores it shows are the exact ones and ties order the same way.

import Checkpoints
import ChineseCLIP
import Datasets
import Essentials
import Evaluation
import Foundation
import Tensors

/// Errors building, loading or searching a gallery; each names the file or item at fault.
package enum GalleryError: UserFacingError, Equatable, Sendable {
    /// An index directory's files disagree with its manifest or with each other.
    case badIndex(path: String, reason: String)
    /// An image of the source could not be read or decoded.
    case badImage(source: String, id: String, reason: String)
    /// The source lists an id twice.
    case duplicateID(source: String, id: String)
    /// The model given is not the one the index was built with.
    case modelMismatch(path: String, reason: String)
    /// FAISS refused an operation.
    case faiss(String)
    /// An argument is out of range.
    case invalidArgument(String)

    /// A one-line message for the user.
    package var description: String {
        switch self {
        case .badIndex(let p, let r): return "\(p): not a usable gallery index: \(r)"
        case .badImage(let s, let id, let r): return "\(s): image \(id): \(r)"
        case .duplicateID(let s, let id): return "\(s): image id \(id) appears twice"
        case .modelMismatch(let p, let r): return "\(p): \(r)"
        case .faiss(let m): return m
        case .invalidArgument(let m): return m
        }
    }
}

/// The manifest `index.json` of a gallery directory.
package struct GalleryManifest: Codable, Sendable, Equatable {
    /// The value of `format` in every gallery manifest.
    package static let formatName = "cnclip-gallery"
    /// The layout version this code reads and writes.
    package static let currentVersion = 1

    /// Always ``formatName``.
    package var format = GalleryManifest.formatName
    /// Layout version.
    package var version = GalleryManifest.currentVersion
    /// Images indexed (rows of the feature file that count).
    package var count: Int
    /// Feature length (the model's `embed_dim`).
    package var dim: Int
    /// Captions indexed.
    package var captions: Int
    /// Longest side of the stored thumbnails, in pixels.
    package var thumbnailSize: Int
    /// Tokens per text used for the captions (and the default for queries).
    package var contextLength: Int
    /// A fixed text whose feature identifies the model the index was built with.
    package var probeText: String
    /// That text's L2-normalised feature under the building model.
    package var probeFeature: [Float]
    /// The precision the building model computed in (`fp32` or `int8`; absent in indexes written before int8 existed).
    package var precision: String?
    /// The approximate index, when one was built.
    package var approximate: Approximate?

    /// How the FAISS index was made.
    package struct Approximate: Codable, Sendable, Equatable {
        /// The FAISS factory string (`"IVF1024,Flat"`).
        package var factory: String
        /// Search parameters applied on load (`{"nprobe": 32}`).
        package var parameters: [String: Double]
        /// Vectors the index was trained on.
        package var trainedOn: Int

        enum CodingKeys: String, CodingKey { case factory, parameters, trainedOn = "trained_on" }
    }

    enum CodingKeys: String, CodingKey {
        case format, version, count, dim, captions, approximate
        case thumbnailSize = "thumbnail_size", contextLength = "context_length"
        case probeText = "probe_text", probeFeature = "probe_feature", precision
    }

    /// Reads `DIR/index.json`.
    package static func read(directory: String) throws -> GalleryManifest {
        let path = (directory as NSString).appendingPathComponent(GalleryFiles.manifest)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GalleryError.badIndex(path: directory, reason: "no \(GalleryFiles.manifest) (build one with `cnclip index build`)")
        }
        let m: GalleryManifest
        do { m = try JSONDecoder().decode(GalleryManifest.self, from: data) } catch {
            throw GalleryError.badIndex(path: path, reason: "unreadable manifest: \(error)")
        }
        guard m.format == formatName else { throw GalleryError.badIndex(path: path, reason: "format is \"\(m.format)\", not \"\(formatName)\"") }
        guard m.version == currentVersion else {
            throw GalleryError.badIndex(path: path, reason: "layout version \(m.version); this cnclip reads \(currentVersion)")
        }
        guard m.count >= 0, m.dim > 0, m.captions >= 0, m.probeFeature.count == m.dim else {
            throw GalleryError.badIndex(path: path, reason: "inconsistent counts")
        }
        return m
    }

    /// Writes `DIR/index.json` atomically (written last, so a reader never sees counts the data files lack).
    package func write(directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(self)
        try AtomicOutput.write(path: (directory as NSString).appendingPathComponent(GalleryFiles.manifest)) { try $0.write(Array(data) + [0x0A]) }
    }
}

/// File names inside a gallery directory.
package enum GalleryFiles {
    /// The manifest.
    package static let manifest = "index.json"
    /// Image ids, one JSON value per line.
    package static let imageIDs = "image_ids.jsonl"
    /// Image features, raw float32.
    package static let imageFeatures = "image_features.f32"
    /// Captions, one JSON object per line.
    package static let captions = "captions.jsonl"
    /// Caption features, raw float32.
    package static let captionFeatures = "caption_features.f32"
    /// The thumbnails LMDB directory.
    package static let thumbnails = "thumbnails"
    /// The FAISS index.
    package static let approximate = "approximate.faiss"
}

/// One search result: a gallery row and its canonical score (the exact dot product rounded once to float).
package struct GalleryHit: Sendable, Equatable {
    /// Row in the gallery (image or caption order).
    package var row: Int
    /// Inner product of the L2-normalised query and item features.
    package var score: Float

    /// A hit for `row` scoring `score`.
    package init(row: Int, score: Float) { self.row = row; self.score = score }
}

/// One indexed caption.
package struct GalleryCaption: Sendable, Equatable {
    /// Its `text_id` as json.dumps renders it.
    package var id: String
    /// The caption text as given.
    package var text: String
}

/// A gallery loaded for searching: features memory-mapped, ids and captions in memory, thumbnails read on demand.
package final class GalleryIndex: Sendable {
    /// The directory it was read from.
    package let directory: String
    /// Its manifest.
    package let manifest: GalleryManifest
    /// Each image row's id as json.dumps renders it.
    package let ids: [String]
    /// The captions, in row order.
    package let captions: [GalleryCaption]
    /// The FAISS index, when the gallery has one.
    package let approximate: FaissIndex?
    private let imageFile: MappedFile?
    private let captionFile: MappedFile?
    private let thumbnails: LMDBEnvironment?

    /// Images.
    package var count: Int { manifest.count }
    /// Feature length.
    package var dim: Int { manifest.dim }

    /// Opens the gallery at `directory`; with `loadApproximate` false the FAISS index is not read.
    package init(directory: String, loadApproximate: Bool = true) throws {
        self.directory = directory
        manifest = try GalleryManifest.read(directory: directory)
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        ids = try Self.readLines(path(GalleryFiles.imageIDs), count: manifest.count, directory: directory)
        imageFile = try Self.mapRows(path(GalleryFiles.imageFeatures), rows: manifest.count, dim: manifest.dim, directory: directory)
        if manifest.captions > 0 {
            captions = try Self.readLines(path(GalleryFiles.captions), count: manifest.captions, directory: directory).enumerated().map { n, line in
                guard case .object(let members)? = try? PyJSONParser.parse(line),
                    let id = members.last(where: { $0.key == "text_id" })?.value,
                    case .string(let text)? = members.last(where: { $0.key == "text" })?.value
                else {
                    throw GalleryError.badIndex(path: path(GalleryFiles.captions), reason: "line \(n + 1) is not {\"text_id\": …, \"text\": \"…\"}")
                }
                return GalleryCaption(id: pythonDumps(id), text: text)
            }
            captionFile = try Self.mapRows(path(GalleryFiles.captionFeatures), rows: manifest.captions, dim: manifest.dim, directory: directory)
        } else {
            captions = []
            captionFile = nil
        }
        thumbnails = manifest.count > 0 ? try LMDBEnvironment(readingAt: path(GalleryFiles.thumbnails)) : nil
        if loadApproximate, let info = manifest.approximate {
            let index = try FaissIndex(contentsOf: path(GalleryFiles.approximate))
            guard index.count == manifest.count, index.dim == manifest.dim else {
                throw GalleryError.badIndex(
                    path: path(GalleryFiles.approximate),
                    reason: "holds \(index.count) vectors of \(index.dim), the gallery \(manifest.count) of \(manifest.dim)")
            }
            for (name, value) in info.parameters.sorted(by: { $0.key < $1.key }) { try index.setParameter(name, value) }
            approximate = index
        } else {
            approximate = nil
        }
    }

    /// Image features `[count, dim]`, borrowed from the mapped file for the duration of `body`.
    package func withImageFeatures<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(Self.floats(imageFile, rows: count, dim: dim))
    }

    /// Caption features `[captions, dim]`, borrowed for the duration of `body`.
    package func withCaptionFeatures<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(Self.floats(captionFile, rows: captions.count, dim: dim))
    }

    /// The best `k` images for each of `queryCount` L2-normalised queries `[queryCount, dim]`, best first.
    /// Exact unless `approximate` is true and the gallery has a FAISS index.
    package func searchImages(_ queries: UnsafeBufferPointer<Float>, queryCount: Int, k: Int, approximate useApproximate: Bool = false) throws
        -> [[GalleryHit]]
    {
        precondition(queries.count == queryCount * dim, "queries must be [queryCount, dim]")
        if useApproximate, let index = approximate {
            return try withImageFeatures { gallery in
                try Self.rescored(index.search(queries.baseAddress!, count: queryCount, k: k), queries: queries, gallery: gallery, dim: dim)
            }
        }
        return withImageFeatures { gallery in Self.exact(queries, gallery: gallery, dim: dim, k: k) }
    }

    /// The best `k` captions for each of `queryCount` L2-normalised queries `[queryCount, dim]`, best first (exact).
    package func searchCaptions(_ queries: UnsafeBufferPointer<Float>, queryCount: Int, k: Int) -> [[GalleryHit]] {
        precondition(queries.count == queryCount * dim, "queries must be [queryCount, dim]")
        return withCaptionFeatures { gallery in Self.exact(queries, gallery: gallery, dim: dim, k: k) }
    }

    /// The JPEG thumbnail of image `row`, or nil when `row` is out of range.
    package func thumbnail(row: Int) throws -> Data? {
        guard row >= 0, row < count, let thumbnails else { return nil }
        return try thumbnails.read { txn in try txn.get(String(row)).map { Data($0) } }
    }

    /// Checks that `model` is the one the index was built with (by its feature of ``GalleryManifest/probeText``), so
    /// a gallery is never searched with features from another model.
    package func checkModel(_ model: ChineseCLIPModel) throws {
        let probe = model.encodeTexts([manifest.probeText], contextLength: manifest.contextLength).scalars
        try Self.check(probe: probe, precision: model.precision.rawValue, against: manifest, directory: directory)
    }

    // MARK: Internals

    static func exact(_ queries: UnsafeBufferPointer<Float>, gallery: UnsafeBufferPointer<Float>, dim: Int, k: Int) -> [[GalleryHit]] {
        TopKSearch.searchScored(queries: queries, gallery: gallery, dim: dim, options: TopKOptions(k: max(0, k))).map { r in
            zip(r.indices, r.scores).map { GalleryHit(row: $0, score: $1) }
        }
    }

    /// FAISS candidates rescored canonically and ordered as exact search orders them (score desc, row asc).
    static func rescored(
        _ candidates: [[(id: Int, score: Float)]], queries: UnsafeBufferPointer<Float>,
        gallery: UnsafeBufferPointer<Float>, dim: Int
    ) -> [[GalleryHit]] {
        candidates.enumerated().map { q, list in
            list.map { c in GalleryHit(row: c.id, score: canonicalDot(queries.baseAddress! + q * dim, gallery.baseAddress! + c.id * dim, dim)) }
                .sorted { $0.score > $1.score || ($0.score == $1.score && $0.row < $1.row) }
        }
    }

    static func floats(_ file: MappedFile?, rows: Int, dim: Int) -> UnsafeBufferPointer<Float> {
        guard let file, rows > 0 else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(start: file.bytes.baseAddress!.assumingMemoryBound(to: Float.self), count: rows * dim)
    }

    static func mapRows(_ path: String, rows: Int, dim: Int, directory: String) throws -> MappedFile? {
        guard rows > 0 else { return nil }
        let file: MappedFile
        do { file = try MappedFile(url: URL(fileURLWithPath: path)) } catch {
            throw GalleryError.badIndex(path: directory, reason: "\(error)")
        }
        guard file.bytes.count >= rows * dim * 4 else {
            throw GalleryError.badIndex(path: path, reason: "\(file.bytes.count) bytes, the manifest needs \(rows) rows of \(dim) floats")
        }
        return file
    }

    static func readLines(_ path: String, count: Int, directory: String) throws -> [String] {
        guard count > 0 else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GalleryError.badIndex(path: directory, reason: "\((path as NSString).lastPathComponent) is missing")
        }
        var lines: [String] = []
        lines.reserveCapacity(count)
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: false) where lines.count < count {
            lines.append(String(decoding: line, as: UTF8.self))
        }
        guard lines.count == count, !lines.contains(where: \.isEmpty) else {
            throw GalleryError.badIndex(path: path, reason: "fewer than the manifest's \(count) lines")
        }
        return lines
    }
}
