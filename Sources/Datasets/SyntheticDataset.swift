// The synthetic demo dataset (DESIGN.md, "The synthetic demo"): renders `SyntheticScene`s and writes them in the
// reference's layout, `{split}_imgs.tsv` + `{split}_texts.jsonl`, plus `{split}_texts.caption_groups.jsonl`.
// Choices:
//   - one text per image in `{split}_texts.jsonl` (`image_ids: [its image]`): training pairs are exactly the
//     rendered pairs and Recall is the strict "find *this* image" figure; but about half the scenes have one shape
//     (only 320 such scenes exist), so many images of a split share a caption and no model can tell them apart.
//     `{split}_texts.caption_groups.jsonl` therefore repeats every line with `image_ids` listing every image of the
//     split with that caption: run the evaluation with it as ground truth (same predictions, same text ids) for the
//     recall that counts any image with the query's caption as a hit;
//   - ids: image ids 1000001, 1000002, … and text ids 1, 2, … run on across the splits in the order given, so no
//     id is shared by two splits and a text id never equals an image id (a swapped key cannot score by accident);
//   - determinism: item i of split s is drawn from SplitMix64 seeded from (seed, s's name, i) alone, so the output
//     does not depend on the thread count, and a split's pictures and captions do not depend on the other splits'
//     sizes;
//   - images: JPEG quality 90 by default. Measured on the default set (64 px, seed 20261129): a noisy 64×64 image
//     is ≈ 1.9 KB as JPEG q90 and ≈ 8.2 KB as PNG (the noise does not compress losslessly), so the three TSVs hold
//     56 MB as JPEG and 241 MB as PNG, and PNG encoding (zlib on noise) takes about 5× the CPU time. At q90 the
//     shapes' edges and colours survive: the mean absolute pixel error against the rendering stays below 6 levels;
//   - output: files are written into a temporary directory inside the output directory and renamed into place at
//     the end, so an error or an interrupt leaves the previous files as they were.

import Dispatch
import Essentials
import Foundation
import Imaging

/// Renders synthetic scenes and writes the synthetic demo dataset.
package enum SyntheticDataset {
    /// How images are stored in the TSVs.
    package enum Encoding: Equatable, Sendable {
        /// Baseline JPEG, 4:2:0, at `quality` (1...100).
        case jpeg(quality: Int)
        /// Lossless PNG.
        case png
    }

    /// The default split sizes: 20,000 training pairs, 1,000 validation and 1,000 test pairs.
    package static let defaultSplits: [(name: String, count: Int)] = [("train", 20_000), ("valid", 1_000), ("test", 1_000)]
    /// The default seed.
    package static let defaultSeed: UInt64 = 20261129
    /// The first image id; text ids start at 1.
    package static let firstImageID = 1_000_001

    /// The caption of `scene` (``SyntheticScene/caption``).
    package static func caption(scene: SyntheticScene) -> String { scene.caption }

    /// Draws `scene` as a `resolution`×`resolution` RGB image: anti-aliased shapes (4×4 supersampling) on a noisy grey
    /// background. `rng` supplies what the caption leaves open: the grey level, each shape's offset (±2% of the side),
    /// scale (±8%), rotation (±15°) and shade, and the pixel noise.
    package static func render(scene: SyntheticScene, resolution: Int = 64, rng: inout SplitMix64) -> Image {
        precondition(resolution >= 8, "resolution must be at least 8 pixels")
        let side = Double(resolution)
        let n = resolution * resolution
        var canvas = [Float](repeating: 0, count: n * 3)
        // Background: a flat grey with a slight tint, so the colour statistics of the background vary per image.
        let grey = Float(105 + rng.below(50))
        let tint = (0..<3).map { _ in Float(rng.below(9)) - 4 }
        for p in 0..<n { for c in 0..<3 { canvas[p * 3 + c] = grey + tint[c] } }

        for object in scene.objects {
            let (cx0, cy0) = object.position.centre
            let cx = (cx0 + rng.uniform(-0.02, 0.02)) * side, cy = (cy0 + rng.uniform(-0.02, 0.02)) * side
            let r = object.size.radius * rng.uniform(0.92, 1.08) * side
            let angle = object.shape == .circle ? 0 : rng.uniform(-15, 15) * .pi / 180
            let nominal = object.colour.rgb
            let colour = [nominal.r, nominal.g, nominal.b].map { Float(min(255, max(0, Int($0) + rng.below(21) - 10))) }
            let outline = SyntheticOutline(shape: object.shape, cx: cx, cy: cy, r: r, angle: angle)
            // Only the pixels of the bounding box can be covered.
            let x0 = max(0, Int((cx - outline.extent).rounded(.down))), x1 = min(resolution - 1, Int((cx + outline.extent).rounded(.up)))
            let y0 = max(0, Int((cy - outline.extent).rounded(.down))), y1 = min(resolution - 1, Int((cy + outline.extent).rounded(.up)))
            guard x0 <= x1, y0 <= y1 else { continue }
            for y in y0...y1 {
                for x in x0...x1 {
                    let a = outline.coverage(x: x, y: y)
                    if a == 0 { continue }
                    let p = (y * resolution + x) * 3
                    for c in 0..<3 { canvas[p + c] += (colour[c] - canvas[p + c]) * a }
                }
            }
        }

        // Sensor-like noise over everything: a triangular luminance term (±14) plus a small per-channel term (±3),
        // all from one 64-bit draw per pixel.
        let lumaScale: Float = 14 / 255, chromaScale: Float = 6 / 255
        let pixels = [UInt8](unsafeUninitializedCapacity: n * 3) { out, initialized in
            canvas.withUnsafeBufferPointer { src in
                for p in 0..<n {
                    let bits = rng.next()
                    let low = Float(bits & 0xFF), high = Float((bits >> 8) & 0xFF)
                    let luma: Float = (low + high - 255) * lumaScale
                    for c in 0..<3 {
                        let byte = Float((bits >> (16 + 8 * UInt64(c))) & 0xFF)
                        let chroma: Float = byte * chromaScale - 3
                        // Clamped first, so adding ½ and truncating rounds (and cheaper than `rounded()`).
                        let value: Float = src[p * 3 + c] + luma + chroma
                        out[p * 3 + c] = UInt8(max(0, min(255, value)) + 0.5)
                    }
                }
            }
            initialized = n * 3
        }
        return Image(width: resolution, height: resolution, mode: .rgb, pixels: pixels)
    }

    /// The generator of item `index` of split `split`: seeded from (seed, split name, index) only.
    package static func itemGenerator(seed: UInt64, split: String, index: Int) -> SplitMix64 {
        // FNV-1a of the name: stable across runs and platforms, unlike `Hasher`.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in split.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var g = SplitMix64(seed: seed ^ h)
        let splitBase = g.next()
        // Mixing the index (rather than adding it to the state) keeps the items' streams from being shifted copies
        // of one another.
        var i = SplitMix64(seed: UInt64(index))
        var item = SplitMix64(seed: splitBase ^ i.next())
        return SplitMix64(seed: item.next())
    }

    /// The scene and image of item `index` of split `split`, as ``write(to:splits:seed:resolution:encoding:threads:progress:temporaryDirectoryChanged:)`` makes them.
    package static func item(seed: UInt64, split: String, index: Int, resolution: Int = 64) -> (scene: SyntheticScene, image: Image) {
        var rng = itemGenerator(seed: seed, split: split, index: index)
        let scene = SyntheticScene.random(using: &rng)
        return (scene, render(scene: scene, resolution: resolution, rng: &rng))
    }

    /// Checks the arguments of ``write(to:splits:seed:resolution:encoding:threads:progress:temporaryDirectoryChanged:)``.
    package static func validate(splits: [(name: String, count: Int)], resolution: Int, encoding: Encoding, threads: Int) throws(DatasetError) {
        guard (16...1024).contains(resolution) else {
            throw .invalidArgument("resolution \(resolution): expected 16 to 1024 pixels (the positions and sizes need at least 16)")
        }
        if case .jpeg(let q) = encoding, !(1...100).contains(q) { throw .invalidArgument("JPEG quality \(q): expected 1 to 100") }
        guard threads >= 1 else { throw .invalidArgument("threads \(threads): expected at least 1") }
        for s in splits {
            guard s.count >= 0 else { throw .invalidArgument("split \(s.name): \(s.count) images; expected 0 or more") }
            guard !s.name.isEmpty, !s.name.contains("/"), !s.name.hasPrefix(".") else {
                throw .invalidArgument("split name '\(s.name)' cannot be used in a file name")
            }
        }
        guard Set(splits.map(\.name)).count == splits.count else { throw .invalidArgument("a split is named twice: \(splits.map(\.name))") }
        guard splits.contains(where: { $0.count > 0 }) else { throw .invalidArgument("every split has 0 images: nothing to write") }
    }

    /// Writes `{split}_imgs.tsv`, `{split}_texts.jsonl` and `{split}_texts.caption_groups.jsonl` for each split with
    /// a positive count into `directory` (created if missing); on error nothing there has changed.
    /// `progress` gets (images done, total) from the writing thread.
    @discardableResult
    package static func write(
        to directory: String, splits: [(name: String, count: Int)] = defaultSplits, seed: UInt64 = defaultSeed,
        resolution: Int = 64, encoding: Encoding = .jpeg(quality: 90),
        threads: Int = ProcessInfo.processInfo.activeProcessorCount,
        progress: ((Int, Int) -> Void)? = nil,
        temporaryDirectoryChanged: ((String?) -> Void)? = nil
    ) throws -> [MadeSplit] {
        try validate(splits: splits, resolution: resolution, encoding: encoding, threads: threads)
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FileError(path: directory, reason: "cannot create: \(error.localizedDescription)")
        }
        let tmp = try AtomicOutput.workingFolder(in: directory, purpose: "synth-dataset")
        temporaryDirectoryChanged?(tmp)
        defer { try? fm.removeItem(atPath: tmp); temporaryDirectoryChanged?(nil) }

        let total = splits.reduce(0) { $0 + $1.count }
        var done = 0, nextImage = firstImageID, nextText = 1
        var made: [MadeSplit] = [], files: [String] = []
        for split in splits where split.count > 0 {
            let names = ["\(split.name)_imgs.tsv", "\(split.name)_texts.jsonl", "\(split.name)_texts.caption_groups.jsonl"]
            let path = { (name: String) in (tmp as NSString).appendingPathComponent(name) }
            let tsv = try OutputFile(path: path(names[0])), texts = try OutputFile(path: path(names[1]))
            var captions: [String] = []
            captions.reserveCapacity(split.count)
            // Batches bound the memory held (a few hundred encoded images) while keeping every thread busy.
            let batch = max(256, 32 * threads)
            var start = 0
            while start < split.count {
                let count = min(batch, split.count - start)
                let rendered = try renderBatch(
                    seed: seed, split: split.name, range: start..<start + count,
                    resolution: resolution, encoding: encoding, threads: threads)
                for (i, item) in rendered.enumerated() {
                    let imageID = nextImage + start + i, textID = nextText + start + i
                    try tsv.write("\(imageID)\t")
                    try tsv.write(item.base64)
                    try tsv.write("\n")
                    try texts.write(
                        "{\"text_id\": \(textID), \"text\": \(PythonJSON.string(item.caption, ensureASCII: false)), \"image_ids\": [\(imageID)]}\n")
                    captions.append(item.caption)
                }
                start += count
                done += count
                progress?(done, total)
            }
            try tsv.close()
            try texts.close()
            // The same texts, with every image of the split that has the same caption as ground truth.
            var group: [String: [Int]] = [:]
            for (i, c) in captions.enumerated() { group[c, default: []].append(nextImage + i) }
            let groups = try OutputFile(path: path(names[2]))
            for (i, c) in captions.enumerated() {
                try groups.write(
                    "{\"text_id\": \(nextText + i), \"text\": \(PythonJSON.string(c, ensureASCII: false)), \"image_ids\": [\(group[c]!.map(String.init).joined(separator: ", "))]}\n"
                )
            }
            try groups.close()
            made.append(MadeSplit(split: split.name, images: split.count, texts: split.count))
            files += names
            nextImage += split.count
            nextText += split.count
        }
        try AtomicOutput.install(files: files, from: tmp, into: directory)
        return made
    }

    /// Renders and encodes items `range` of a split over `threads` threads; results in item order.
    static func renderBatch(
        seed: UInt64, split: String, range: Range<Int>, resolution: Int, encoding: Encoding,
        threads: Int
    ) throws -> [(caption: String, base64: String)] {
        var out = [(caption: String, base64: String)](repeating: ("", ""), count: range.count)
        let failure = FirstError()
        try out.withUnsafeMutableBufferPointer { buffer in
            let chunks = min(threads, range.count)
            concurrentPerform(iterations: chunks) { c in
                let lo = range.count * c / chunks, hi = range.count * (c + 1) / chunks
                for i in lo..<hi {
                    let (scene, image) = item(seed: seed, split: split, index: range.lowerBound + i, resolution: resolution)
                    do {
                        let data: Data
                        switch encoding {
                        case .jpeg(let q): data = try image.jpegData(quality: q)
                        case .png: data = try image.pngData()
                        }
                        buffer[i] = (scene.caption, Base64.encode(data))
                    } catch {
                        failure.record(
                            DatasetError.badImage(
                                file: "\(split)_imgs.tsv", line: range.lowerBound + i + 1,
                                id: "item \(range.lowerBound + i)", reason: "cannot encode: \(error)"))
                        return
                    }
                }
            }
            if let e = failure.error { throw e }
        }
        return out
    }
}

/// A shape's outline in pixel coordinates, with its anti-aliased coverage of a pixel.
struct SyntheticOutline {
    /// Circle radius, or nil for a polygon.
    let radius: Double?
    /// Polygon vertices (x, y).
    let vertices: [(x: Double, y: Double)]
    let cx: Double, cy: Double
    /// No covered point is farther than this from (cx, cy) along either axis.
    let extent: Double

    /// The outline of `shape` with nominal radius `r` around (cx, cy), turned by `angle` radians. The per-shape
    /// factors give the four shapes about the same visual weight at one nominal radius.
    init(shape: SyntheticScene.Shape, cx: Double, cy: Double, r: Double, angle: Double) {
        self.cx = cx
        self.cy = cy
        func polygon(_ radii: [Double], shiftY: Double) -> [(x: Double, y: Double)] {
            radii.enumerated().map { k, rho in
                let t = -Double.pi / 2 + angle + 2 * Double.pi * Double(k) / Double(radii.count)
                return (cx + rho * cos(t), cy + shiftY + rho * sin(t))
            }
        }
        switch shape {
        case .circle:
            radius = 0.95 * r
            vertices = []
        case .square:
            // Vertices at ±45° from "up": an axis-aligned square of half-side 0.8r before rotation.
            radius = nil
            let rho = 0.8 * r * 2.0.squareRoot()
            vertices = (0..<4).map { k in
                let t = Double.pi / 4 + angle + Double.pi / 2 * Double(k)
                return (cx + rho * cos(t), cy + rho * sin(t))
            }
        case .triangle:
            // Pointing up; moved down by a quarter of its circumradius so its bounding box, not its centroid, is centred.
            radius = nil
            vertices = polygon([1.1 * r, 1.1 * r, 1.1 * r], shiftY: 0.275 * r)
        case .star:
            // Five points; the inner radius 0.45 of the outer keeps the points distinct at 64 px.
            radius = nil
            vertices = polygon((0..<10).map { $0 % 2 == 0 ? 1.15 * r : 0.45 * 1.15 * r }, shiftY: 0)
        }
        extent = (radius ?? vertices.map { max(abs($0.x - cx), abs($0.y - cy)) }.max()!) + 1
    }

    /// Whether the point (x, y) is inside (even–odd rule for the star's concave outline).
    func contains(_ x: Double, _ y: Double) -> Bool {
        if let radius { return (x - cx) * (x - cx) + (y - cy) * (y - cy) <= radius * radius }
        var inside = false
        var j = vertices.count - 1
        for i in vertices.indices {
            let a = vertices[i], b = vertices[j]
            if (a.y > y) != (b.y > y), x < (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x { inside.toggle() }
            j = i
        }
        return inside
    }

    /// The distance from (x, y) to the outline.
    func distanceToEdge(_ x: Double, _ y: Double) -> Double {
        if let radius { return abs(((x - cx) * (x - cx) + (y - cy) * (y - cy)).squareRoot() - radius) }
        var best = Double.infinity
        var j = vertices.count - 1
        for i in vertices.indices {
            let a = vertices[i], b = vertices[j]
            let ex = b.x - a.x, ey = b.y - a.y
            let t = max(0, min(1, ((x - a.x) * ex + (y - a.y) * ey) / (ex * ex + ey * ey)))
            let dx = x - a.x - t * ex, dy = y - a.y - t * ey
            best = min(best, dx * dx + dy * dy)
            j = i
        }
        return best.squareRoot()
    }

    /// The covered fraction of pixel (x, y) (the unit square from (x, y) to (x+1, y+1)), from 4×4 samples.
    func coverage(x: Int, y: Int) -> Float {
        // All 16 samples lie within 0.53 px of the pixel's centre: a centre farther than that from the outline
        // means they all fall on its side, so one test gives the same answer as sixteen (most pixels; 5× faster).
        let mx = Double(x) + 0.5, my = Double(y) + 0.5
        if distanceToEdge(mx, my) > 0.55 { return contains(mx, my) ? 1 : 0 }
        var hits = 0
        for sy in 0..<4 {
            for sx in 0..<4 where contains(Double(x) + (Double(sx) + 0.5) / 4, Double(y) + (Double(sy) + 0.5) / 4) { hits += 1 }
        }
        return Float(hits) / 16
    }
}
