import ChineseCLIP
import Evaluation
import Foundation
import Gallery
import Imaging
import TestSupport
import XCTest

/// `cnclip index build|add|search` and the gallery format: exact search is make-topk-predictions's ranking, FAISS
/// agrees with it when it probes every list, adds are incremental, and bad input fails cleanly.
final class GalleryTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-gallery-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }
    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }

    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    func loadModel() throws -> ChineseCLIPModel {
        try ChineseCLIPModel(
            checkpoint: DemoFixture.fixtures.appendingPathComponent("models/vit-tiny.pt"),
            config: CLIPConfig.load(contentsOf: DemoFixture.fixtures.appendingPathComponent("models/vit-tiny.json")))
    }

    func testFlatIndexGivesMakeTopKPredictionsFileAndFeatures() throws {
        let f = try DemoFixture.get()
        var r = try cnclip(
            [
                "extract-features", "--extract-image-feats", "--extract-text-feats", "--image-data", f.validImages,
                "--text-data", f.validTexts, "--img-batch-size", "16", "--text-batch-size", "64",
                "--image-feat-output-path", path("img.jsonl"), "--text-feat-output-path", path("txt.jsonl"),
            ] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try cnclip([
            "make-topk-predictions", "--image-feats", path("img.jsonl"), "--text-feats", path("txt.jsonl"),
            "--top-k", "10", "--output", path("reference.jsonl"),
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try cnclip(
            [
                "index", "search", "--index", f.index, "--text-data", f.validTexts, "--top-k", "10",
                "--output", path("index.jsonl"),
            ] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try Data(contentsOf: URL(fileURLWithPath: path("reference.jsonl")))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("index.jsonl"))), expected)
        XCTAssertEqual(String(decoding: expected, as: UTF8.self).split(separator: "\n").count, 48)

        // The index holds exactly the features extract-features wrote, in the same order.
        let block = try FeatureFileReader(path: path("img.jsonl"), idKey: "image_id").readAll()
        let gallery = try GalleryIndex(directory: f.index)
        XCTAssertEqual(gallery.ids, block.ids)
        gallery.withImageFeatures { XCTAssertEqual(Array($0), block.values) }
    }

    func testSearchCommandPrintsRankedResults() throws {
        let f = try DemoFixture.get()
        let r = try cnclip(["index", "search", "--index", f.index, "--text", "左上角有一个红色的大圆形", "--top-k", "5"] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(line["query"] as? String, "左上角有一个红色的大圆形")
        let results = try XCTUnwrap(line["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, 5)
        let scores = results.map { $0["score"] as! Double }
        XCTAssertEqual(scores, scores.sorted(by: >))
        // The same query through the library gives the same rows.
        let model = try loadModel()
        let gallery = try GalleryIndex(directory: f.index)
        let q = model.encodeTexts(["左上角有一个红色的大圆形"], contextLength: 52)
        let hits = try q.withUnsafeBufferPointer { try gallery.searchImages($0, queryCount: 1, k: 5) }[0]
        XCTAssertEqual(results.map { $0["row"] as! Int }, hits.map(\.row))
    }

    func testAddAppendsNewImagesAndSkipsKnownOnes() throws {
        let f = try DemoFixture.get()
        let out = path("grown")
        var r = try cnclip(["index", "build"] + DemoFixture.model + ["--image-data", f.testImages, "--output", out, "--img-batch-size", "16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("24 images (24 added), 0 captions"), r.stdout)
        r = try cnclip(
            ["index", "add", "--index", out, "--image-data", f.validImages, "--text-data", f.validTexts, "--img-batch-size", "16"] + DemoFixture.model
        )
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("72 images (48 added), 48 captions (48 added)"), r.stdout)
        r = try cnclip(["index", "add", "--index", out, "--image-data", f.validImages, "--text-data", f.validTexts] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("72 images (0 added, 48 already indexed), 48 captions (0 added, 48 already indexed)"), r.stdout)

        let grown = try GalleryIndex(directory: out), valid = try GalleryIndex(directory: f.index)
        XCTAssertEqual(Array(grown.ids[24...]), valid.ids)
        XCTAssertEqual(grown.captions, valid.captions)
        // Same batches over the same images: bit-identical features for the added rows.
        grown.withImageFeatures { g in valid.withImageFeatures { v in XCTAssertEqual(Array(g[(24 * 32)...]), Array(v)) } }
        XCTAssertNotNil(try grown.thumbnail(row: 71))
        XCTAssertNil(try grown.thumbnail(row: 72))
    }

    func testApproximateIndexProbingEveryListEqualsExactSearchAndGrows() throws {
        let f = try DemoFixture.get()
        let out = path("ivf")
        var r = try cnclip(
            ["index", "build"] + DemoFixture.model + [
                "--image-data", f.validImages, "--output", out,
                "--approximate", "IVF4,Flat", "--nprobe", "4",
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("FAISS IVF4,Flat"), r.stdout)
        let model = try loadModel()
        let texts = try DemoFixture.jsonLines(f.validTexts).map { $0["text"] as! String }
        let queries = model.encodeTexts(texts, contextLength: 52)
        func compare(_ dir: String, count: Int) throws {
            let gallery = try GalleryIndex(directory: dir)
            XCTAssertEqual(gallery.count, count)
            XCTAssertEqual(gallery.approximate?.count, count)
            try queries.withUnsafeBufferPointer { q in
                let exact = try gallery.searchImages(q, queryCount: texts.count, k: 10, approximate: false)
                let approximate = try gallery.searchImages(q, queryCount: texts.count, k: 10, approximate: true)
                XCTAssertEqual(approximate, exact)
            }
        }
        try compare(out, count: 48)
        r = try cnclip(["index", "add", "--index", out, "--image-data", f.testImages] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        try compare(out, count: 72)
        // With one list probed of four, FAISS sees only part of the gallery: the flag really switches the index.
        var manifest = try GalleryManifest.read(directory: out)
        manifest.approximate?.parameters["nprobe"] = 1
        try manifest.write(directory: out)
        let gallery = try GalleryIndex(directory: out)
        let differs = try queries.withUnsafeBufferPointer { q in
            try gallery.searchImages(q, queryCount: texts.count, k: 10, approximate: true) != gallery.searchImages(q, queryCount: texts.count, k: 10)
        }
        XCTAssertTrue(differs)
    }

    func testRowsPastTheManifestCountAreIgnoredThenCutByTheNextAdd() throws {
        let f = try DemoFixture.get()
        let out = path("cut")
        var r = try cnclip(["index", "build"] + DemoFixture.model + ["--image-data", f.testImages, "--output", out, "--img-batch-size", "16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // What an add killed before it rewrote the manifest leaves behind.
        let features = try FileHandle(forWritingTo: URL(fileURLWithPath: out + "/image_features.f32"))
        try features.seekToEnd(); try features.write(contentsOf: Data(repeating: 0x7F, count: 32 * 4 * 3)); try features.close()
        let ids = try FileHandle(forWritingTo: URL(fileURLWithPath: out + "/image_ids.jsonl"))
        try ids.seekToEnd(); try ids.write(contentsOf: Data("999\n998\n99".utf8)); try ids.close()
        XCTAssertEqual(try GalleryIndex(directory: out).ids.count, 24)
        r = try cnclip(["index", "add", "--index", out, "--image-data", f.validImages, "--img-batch-size", "16"] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        let grown = try GalleryIndex(directory: out), valid = try GalleryIndex(directory: f.index)
        XCTAssertEqual(grown.ids.count, 72)
        XCTAssertEqual(Array(grown.ids[24...]), valid.ids)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/image_features.f32")).count, 72 * 32 * 4)
        grown.withImageFeatures { g in valid.withImageFeatures { v in XCTAssertEqual(Array(g[(24 * 32)...]), Array(v)) } }
    }

    func testInt8QueriesSearchAnFP32Index() throws {
        let f = try DemoFixture.get()
        XCTAssertEqual(try GalleryIndex(directory: f.index).manifest.precision, "fp32")
        let query = "左上角有一个红色的大圆形"
        let fp32 = try cnclip(["index", "search", "--index", f.index, "--text", query, "--top-k", "5"] + DemoFixture.model)
        let int8 = try cnclip(["index", "search", "--index", f.index, "--text", query, "--top-k", "5", "--precision", "int8"] + DemoFixture.model)
        XCTAssertEqual(int8.status, 0, int8.stderr)
        func rows(_ r: CommandResult) throws -> [Int] {
            let line = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            return try XCTUnwrap(line["results"] as? [[String: Any]]).map { $0["row"] as! Int }
        }
        XCTAssertEqual(try rows(int8).first, try rows(fp32).first, "the int8 query finds the same best image")
    }

    func testAnotherModelIsRefused() throws {
        let f = try DemoFixture.get()
        let other = [
            "--resume", DemoFixture.fixtures.appendingPathComponent("models/rn-tiny.pt").path,
            "--config", DemoFixture.fixtures.appendingPathComponent("models/rn-tiny.json").path,
        ]
        var r = try cnclip(["index", "search", "--index", f.index, "--text", "圆形"] + other)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("built with another model"), r.stderr)
        r = try cnclip(["serve", "--index", f.index, "--port", "0"] + other)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("built with another model"), r.stderr)
        // Across precisions the check is the int8 path's cosine, which another model does not reach either.
        r = try cnclip(["index", "search", "--index", f.index, "--text", "圆形", "--precision", "int8"] + other)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("built with another model") && r.stderr.contains("int8"), r.stderr)
        r = try cnclip(["serve", "--index", path("none"), "--port", "0"] + DemoFixture.model)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no index.json"), r.stderr)
    }

    func testBuildRefusesBadInputAndLeavesNothing() throws {
        let f = try DemoFixture.get()
        // An existing, non-empty output.
        var r = try cnclip(["index", "build"] + DemoFixture.model + ["--image-data", f.testImages, "--output", f.index])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("already exists"), r.stderr)
        // A TSV whose third image is not an image: the error names it and no directory is left.
        let lines = try String(contentsOfFile: f.validTSV, encoding: .utf8).split(separator: "\n").prefix(5)
        var tsv = lines.enumerated().map { i, l in
            i == 2 ? "\(l.split(separator: "\t")[0])\t\(Data("not an image".utf8).base64EncodedString())" : String(l)
        }
        try (tsv.joined(separator: "\n") + "\n").write(toFile: path("bad.tsv"), atomically: true, encoding: .utf8)
        let badID = lines[2].split(separator: "\t")[0]
        r = try cnclip(["index", "build"] + DemoFixture.model + ["--image-data", path("bad.tsv"), "--output", path("out")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("image \(badID)"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path), ["bad.tsv"])
        // A duplicate id.
        tsv = [String(lines[0]), String(lines[1]), String(lines[0])]
        try (tsv.joined(separator: "\n") + "\n").write(toFile: path("dup.tsv"), atomically: true, encoding: .utf8)
        r = try cnclip(["index", "build"] + DemoFixture.model + ["--image-data", path("dup.tsv"), "--output", path("out")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("appears twice"), r.stderr)
        // A missing source, and a bad FAISS factory string.
        r = try cnclip(["index", "build"] + DemoFixture.model + ["--image-data", path("nowhere"), "--output", path("out")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no such file or directory"), r.stderr)
        r = try cnclip(
            ["index", "build"] + DemoFixture.model + ["--image-data", f.testImages, "--output", path("out"), "--approximate", "NoSuchIndex"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("cannot build a FAISS index"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out")))
    }

    func testFolderSourceUsesRelativePathsAndSmallThumbnails() throws {
        let folder = tmp.appendingPathComponent("photos/sub")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let f = try DemoFixture.get()
        for (i, item) in try f.validImageFiles().prefix(3).enumerated() {
            try item.data.write(to: (i == 0 ? tmp.appendingPathComponent("photos") : folder).appendingPathComponent("img\(i).png"))
        }
        // A big RGBA image: its thumbnail is shrunk to fit, in RGB.
        let big = Image(width: 300, height: 120, mode: .rgba, pixels: [UInt8](repeating: 200, count: 300 * 120 * 4))
        try big.pngData().write(to: folder.appendingPathComponent("big.PNG"))
        try Data("not an image".utf8).write(to: folder.appendingPathComponent("notes.txt"))
        let r = try cnclip(
            ["index", "build"] + DemoFixture.model + [
                "--image-data", tmp.appendingPathComponent("photos").path,
                "--output", path("folder-index"), "--thumbnail-size", "64",
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let gallery = try GalleryIndex(directory: path("folder-index"))
        XCTAssertEqual(gallery.ids, ["\"img0.png\"", "\"sub/big.PNG\"", "\"sub/img1.png\"", "\"sub/img2.png\""])
        let thumb = try Image(data: try XCTUnwrap(try gallery.thumbnail(row: 1)))
        XCTAssertEqual([thumb.width, thumb.height], [64, 26])
        XCTAssertEqual(thumb.mode, .rgb)
        let small = try Image(data: try XCTUnwrap(try gallery.thumbnail(row: 0)))
        XCTAssertEqual([small.width, small.height], [64, 64])
    }
}
