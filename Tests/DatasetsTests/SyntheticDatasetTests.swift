import Checkpoints
import Datasets
import Essentials
import Foundation
import Imaging
import NeuralNet
import XCTest

/// The synthetic demo dataset: scenes, captions, rendering and the written files.
final class SyntheticDatasetTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-synth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    typealias S = SyntheticScene

    func testCaptionGrammarAndOrder() throws {
        let scene = try S([
            S.Object(shape: .triangle, colour: .black, size: .small, position: .center),
            S.Object(shape: .circle, colour: .red, size: .large, position: .topLeft),
        ])
        XCTAssertEqual(SyntheticDataset.caption(scene: scene), "左上角有一个红色的大圆形，中间有一个黑色的小三角形")
        XCTAssertEqual(scene.objects.map(\.position), [.topLeft, .center], "stored in caption order whatever the input order")
        XCTAssertEqual(S(caption: scene.caption), scene)
        // Every clause of every random scene follows the grammar, in position order, and parses back to the scene.
        let clause = try NSRegularExpression(pattern: "^(左上角|右上角|中间|左下角|右下角)有一个(红色|绿色|蓝色|黄色|紫色|橙色|黑色|白色)的(大|小)(圆形|正方形|三角形|星形)$")
        var rng = SplitMix64(seed: 7)
        var counts = [0, 0, 0]
        for _ in 0..<2000 {
            let s = S.random(using: &rng)
            counts[s.objects.count] += 1
            let clauses = s.caption.components(separatedBy: "，")
            XCTAssertEqual(clauses.count, s.objects.count)
            for (c, o) in zip(clauses, s.objects) {
                XCTAssertEqual(clause.numberOfMatches(in: c, range: NSRange(c.startIndex..., in: c)), 1, c)
                XCTAssertEqual(c, "\(o.position.name)有一个\(o.colour.name)的\(o.size.name)\(o.shape.name)")
            }
            XCTAssertEqual(s.objects.map(\.position), s.objects.map(\.position).sorted())
            XCTAssertEqual(Set(s.objects.map(\.position)).count, s.objects.count, "two shapes never share a position")
            XCTAssertEqual(S(caption: s.caption), s)
        }
        XCTAssertEqual(counts[0], 0)
        XCTAssertTrue((850...1150).contains(counts[1]), "about half the scenes have one shape: \(counts)")
        // Captions outside the grammar are not scenes.
        for bad in [
            "", "左上角有一个红色的大圆形，", "中间有一个红色的大圆形，左上角有一个红色的小圆形", "左上角有一个粉色的大圆形",
            "左上角有一个红色的大圆形，左上角有一个蓝色的小星形", "左上角有一个红色的中圆形",
        ] {
            XCTAssertNil(S(caption: bad), bad)
        }
    }

    func testSceneRejectsSharedPositionsAndBadCounts() {
        let a = S.Object(shape: .star, colour: .blue, size: .large, position: .bottomRight)
        XCTAssertThrowsError(try S([a, a])) { XCTAssertTrue("\($0)".contains("右下角"), "\($0)") }
        XCTAssertThrowsError(try S([]))
    }

    /// The mean colour of the pixels within `radius` of (x, y).
    func meanColour(_ image: Image, x: Double, y: Double, radius: Double) -> [Double] {
        var sum = [0.0, 0.0, 0.0], n = 0.0
        for py in 0..<image.height {
            for px in 0..<image.width where pow(Double(px) + 0.5 - x, 2) + pow(Double(py) + 0.5 - y, 2) <= radius * radius {
                for c in 0..<3 { sum[c] += Double(image.pixels[(py * image.width + px) * 3 + c]) }
                n += 1
            }
        }
        return sum.map { $0 / n }
    }

    func testShapesAppearInTheirColourAtTheirPosition() throws {
        var rng = SplitMix64(seed: 11)
        for position in S.Position.allCases {
            for colour in S.Colour.allCases {
                for shape in S.Shape.allCases {
                    let scene = try S([S.Object(shape: shape, colour: colour, size: .large, position: position)])
                    let image = SyntheticDataset.render(scene: scene, resolution: 64, rng: &rng)
                    XCTAssertEqual(image.mode, .rgb)
                    XCTAssertEqual(image.size.width, 64)
                    let (fx, fy) = position.centre
                    // The shape's core (radius 3 px) has its colour; the noise averages out.
                    let core = meanColour(image, x: fx * 64, y: fy * 64 + (shape == .triangle ? 2 : 0), radius: 3)
                    let want = colour.rgb
                    for (got, expected) in zip(core, [want.r, want.g, want.b]) {
                        XCTAssertEqual(got, Double(expected), accuracy: 20, "\(scene.caption): core \(core)")
                    }
                    // Every other position is grey background: channels within a few levels of one another.
                    for other in S.Position.allCases where other != position {
                        let bg = meanColour(image, x: other.centre.x * 64, y: other.centre.y * 64, radius: 4)
                        XCTAssertLessThan(bg.max()! - bg.min()!, 14, "\(scene.caption): \(other.name) should be grey, got \(bg)")
                        XCTAssertTrue((95...165).contains(bg[0]), "\(scene.caption): \(other.name) grey level \(bg)")
                    }
                }
            }
        }
    }

    func testShapesAreAntiAliasedAndDistinct() throws {
        // Supersampling gives edge pixels between the shape's and the background's level, and the four shapes have
        // different areas at one nominal radius (circle > square > star, triangle): they are not one blob.
        var areas: [S.Shape: Double] = [:]
        for shape in S.Shape.allCases {
            let scene = try S([S.Object(shape: shape, colour: .white, size: .large, position: .center)])
            var rng = SplitMix64(seed: 3)
            let image = SyntheticDataset.render(scene: scene, resolution: 64, rng: &rng)
            let levels = stride(from: 0, to: image.pixels.count, by: 3).map { Double(image.pixels[$0]) }
            let background = levels[0..<64].reduce(0, +) / 64  // the top row
            let coverage = levels.map { min(1, max(0, ($0 - background) / (240 - background))) }
            areas[shape] = coverage.reduce(0, +)
            XCTAssertGreaterThan(coverage.filter { $0 > 0.3 && $0 < 0.7 }.count, 8, "\(shape): anti-aliased edges")
        }
        XCTAssertGreaterThan(areas[.circle]!, areas[.square]!)
        XCTAssertGreaterThan(areas[.square]!, areas[.triangle]!)
        XCTAssertGreaterThan(areas[.square]!, areas[.star]!)
        let small = try S([S.Object(shape: .circle, colour: .white, size: .small, position: .center)])
        var rng = SplitMix64(seed: 3)
        let image = SyntheticDataset.render(scene: small, resolution: 64, rng: &rng)
        let bright = stride(from: 0, to: image.pixels.count, by: 3).filter { image.pixels[$0] > 200 }.count
        XCTAssertLessThan(Double(bright), areas[.circle]! * 0.5, "a small circle is much smaller than a large one")
    }

    func files(_ dir: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            out[name] = try Data(contentsOf: dir.appendingPathComponent(name))
        }
        return out
    }

    func testWriteIsDeterministicAndIndependentOfThreads() throws {
        let splits = [(name: "train", count: 300), (name: "valid", count: 40), (name: "test", count: 0)]
        let a = scratch.appendingPathComponent("a"), b = scratch.appendingPathComponent("b"), c = scratch.appendingPathComponent("c")
        var reported: [(Int, Int)] = []
        let made = try SyntheticDataset.write(to: a.path, splits: splits, seed: 5, threads: 1, progress: { reported.append(($0, $1)) })
        XCTAssertEqual(made.map(\.split), ["train", "valid"])
        XCTAssertEqual(made.map(\.images), [300, 40])
        XCTAssertEqual(made.map(\.texts), [300, 40])
        XCTAssertEqual(reported.last?.0, 340)
        XCTAssertEqual(reported.last?.1, 340)
        try SyntheticDataset.write(to: b.path, splits: splits, seed: 5, threads: 5)
        let fa = try files(a)
        XCTAssertEqual(
            fa.keys.sorted(),
            [
                "train_imgs.tsv", "train_texts.caption_groups.jsonl", "train_texts.jsonl",
                "valid_imgs.tsv", "valid_texts.caption_groups.jsonl", "valid_texts.jsonl",
            ])
        XCTAssertEqual(fa, try files(b), "1 and 5 threads write the same bytes")
        // Another seed changes everything; a split does not depend on the other splits' sizes.
        try SyntheticDataset.write(to: c.path, splits: [(name: "train", count: 10), (name: "valid", count: 40)], seed: 6, threads: 2)
        XCTAssertNotEqual(try files(c)["valid_imgs.tsv"], fa["valid_imgs.tsv"])
        try SyntheticDataset.write(to: c.path, splits: [(name: "train", count: 10), (name: "valid", count: 40)], seed: 5, threads: 2)
        let images = { (d: Data) in String(decoding: d, as: UTF8.self).split(separator: "\n").map { $0.split(separator: "\t")[1] } }
        XCTAssertEqual(images(try files(c)["valid_imgs.tsv"]!), images(fa["valid_imgs.tsv"]!))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: c.path).filter { $0.hasPrefix(".") }, [], "no temporary left")
    }

    func testWrittenFilesMatchTheirScenes() throws {
        let dir = scratch.appendingPathComponent("d")
        try SyntheticDataset.write(to: dir.path, splits: [(name: "train", count: 500), (name: "valid", count: 200)], seed: 9, threads: 2)
        var seenImages = Set<Int>(), seenTexts = Set<Int>()
        for (split, count) in [("train", 500), ("valid", 200)] {
            let tsv = try String(contentsOf: dir.appendingPathComponent("\(split)_imgs.tsv"), encoding: .utf8).split(separator: "\n")
            let texts = try String(contentsOf: dir.appendingPathComponent("\(split)_texts.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            let groups = try String(contentsOf: dir.appendingPathComponent("\(split)_texts.caption_groups.jsonl"), encoding: .utf8)
                .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            XCTAssertEqual(tsv.count, count)
            XCTAssertEqual(texts.count, count)
            XCTAssertEqual(groups.count, count)
            var captionOf: [Int: String] = [:]
            for (i, (line, text)) in zip(tsv, texts).enumerated() {
                let fields = line.split(separator: "\t")
                let id = Int(fields[0])!
                XCTAssertTrue(seenImages.insert(id).inserted, "image id \(id) is unique over all splits")
                XCTAssertTrue(seenTexts.insert(text["text_id"] as! Int).inserted)
                XCTAssertEqual(text["image_ids"] as! [Int], [id])
                let caption = text["text"] as! String
                captionOf[id] = caption
                // The stored image is item i of the split, and the caption is its scene's.
                let (scene, rendered) = SyntheticDataset.item(seed: 9, split: split, index: i)
                XCTAssertEqual(caption, scene.caption)
                XCTAssertNotNil(S(caption: caption))
                let decoded = try Image(data: Data(base64Encoded: String(fields[1]))!, name: "\(id)")
                XCTAssertEqual(decoded.size.width, 64)
                XCTAssertEqual(decoded.size.height, 64)
                let err = zip(decoded.pixels, rendered.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)
                XCTAssertLessThan(Double(err) / Double(rendered.pixels.count), 6, "JPEG q90 stays close to the rendering")
            }
            // Caption groups: the same texts, with exactly the images of the split that share the caption.
            for (text, group) in zip(texts, groups) {
                XCTAssertEqual(group["text_id"] as! Int, text["text_id"] as! Int)
                XCTAssertEqual(group["text"] as! String, text["text"] as! String)
                let ids = group["image_ids"] as! [Int]
                XCTAssertEqual(ids, captionOf.filter { $0.value == text["text"] as! String }.keys.sorted())
                XCTAssertTrue(ids.contains((text["image_ids"] as! [Int])[0]))
            }
            XCTAssertGreaterThan(groups.filter { ($0["image_ids"] as! [Int]).count > 1 }.count, 0, "one-shape scenes recur")
        }
        XCTAssertEqual(seenImages.min(), SyntheticDataset.firstImageID)
        XCTAssertEqual(seenTexts.sorted(), Array(1...700))
    }

    func testBuildsAnLMDBThatReadsBack() throws {
        let dir = scratch.appendingPathComponent("lmdb")
        try SyntheticDataset.write(to: dir.path, splits: [(name: "train", count: 30), (name: "valid", count: 12)], seed: 2, threads: 2)
        let builder = LMDBDatasetBuilder(dataDirectory: dir.path)
        builder.checkImages = true
        let summaries = try builder.build(splits: ["train", "valid"])
        XCTAssertEqual(summaries.map(\.pairs), [30, 12])
        XCTAssertEqual(summaries.map(\.images), [30, 12])
        let pairs = try PairsStore(path: dir.appendingPathComponent("lmdb/valid/pairs").path)
        let images = try ImageStore(path: dir.appendingPathComponent("lmdb/valid/imgs").path)
        XCTAssertEqual(pairs.count, 12)
        for i in 0..<pairs.count {
            let pair = try pairs.pair(at: i)
            guard case .int(let imageID) = pair.imageID, case .string(let text) = pair.text else { return XCTFail("\(pair)") }
            // Valid ids follow the 30 training ids.
            let index = Int(imageID) - SyntheticDataset.firstImageID - 30
            XCTAssertEqual(text, SyntheticDataset.item(seed: 2, split: "valid", index: index).scene.caption)
            let data = try XCTUnwrap(try images.imageData(id: "\(imageID)"))
            XCTAssertEqual(try Image(data: data, name: "lmdb").size.width, 64)
        }
    }

    func testPNGIsLossless() throws {
        let dir = scratch.appendingPathComponent("png")
        try SyntheticDataset.write(to: dir.path, splits: [(name: "test", count: 3)], seed: 1, resolution: 32, encoding: .png, threads: 1)
        let tsv = try String(contentsOf: dir.appendingPathComponent("test_imgs.tsv"), encoding: .utf8).split(separator: "\n")
        for (i, line) in tsv.enumerated() {
            let decoded = try Image(data: Data(base64Encoded: String(line.split(separator: "\t")[1]))!, name: "png")
            XCTAssertEqual(decoded, SyntheticDataset.item(seed: 1, split: "test", index: i, resolution: 32).image)
        }
    }

    func testBadArgumentsAreRejectedBeforeWriting() throws {
        let dir = scratch.appendingPathComponent("bad")
        let cases: [([(name: String, count: Int)], Int, SyntheticDataset.Encoding, Int, String)] = [
            ([("train", 10)], 8, .jpeg(quality: 90), 1, "resolution 8"),
            ([("train", 10)], 64, .jpeg(quality: 0), 1, "JPEG quality 0"),
            ([("train", -1)], 64, .png, 1, "split train: -1"),
            ([("train", 0), ("valid", 0)], 64, .png, 1, "nothing to write"),
            ([("train", 1), ("train", 1)], 64, .png, 1, "named twice"),
            ([("a/b", 1)], 64, .png, 1, "file name"),
            ([("train", 1)], 64, .png, 0, "threads 0"),
        ]
        for (splits, resolution, encoding, threads, message) in cases {
            XCTAssertThrowsError(
                try SyntheticDataset.write(to: dir.path, splits: splits, resolution: resolution, encoding: encoding, threads: threads)
            ) {
                XCTAssertTrue("\($0)".contains(message), "'\($0)' should mention \(message)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path), "nothing created")
        // An output path that is a file.
        let file = scratch.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try SyntheticDataset.write(to: file.path, splits: [("train", 1)])) {
            XCTAssertTrue("\($0)".contains(file.path), "\($0)")
        }
    }
}
