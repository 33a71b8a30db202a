import ChineseCLIP
import Foundation
import Imaging
import TestSupport
import Tokenization
import XCTest

/// End-to-end tests of `cnclip build-lmdb`, `make-dataset` and `extract-features` on the built binary.
final class DatasetCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    var fixtures: URL { Self.fixtures }
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// Runs the `cnclip` built beside this test bundle.
    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    /// A copy of the fixture dataset (TSV + JSONL, no LMDB) in a fresh directory.
    func fixtureDataset(_ name: String) throws -> URL {
        let dir = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for f in ["train_imgs.tsv", "train_texts.jsonl", "valid_imgs.tsv", "valid_texts.jsonl"] {
            try FileManager.default.copyItem(at: fixtures.appendingPathComponent("dataset/\(f)"), to: dir.appendingPathComponent(f))
        }
        return dir
    }

    func lines(_ url: URL) throws -> [String] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func testBuildLMDBAcceptsBothSpellings() throws {
        let data = try fixtureDataset("spell")
        var r = try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "train,valid"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Finished serializing 15 train split pairs"), r.stdout)
        XCTAssertTrue(r.stdout.contains("Finished serializing 4 valid split images"), r.stdout)
        for split in ["train", "valid"] {
            for db in ["imgs", "pairs"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: data.appendingPathComponent("lmdb/\(split)/\(db)/data.mdb").path))
            }
        }
        let out = scratch.appendingPathComponent("elsewhere")
        r = try cnclip(["build-lmdb", "--data-dir", data.path, "--splits", "valid", "--lmdb-dir", out.path, "--check-images"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), ["valid"])
    }

    func testBuildLMDBRejectsMalformedInputs() throws {
        let tsv = try lines(fixtures.appendingPathComponent("dataset/train_imgs.tsv"))
        let jsonl = try lines(fixtures.appendingPathComponent("dataset/train_texts.jsonl"))
        func with(_ rows: [String], _ i: Int, _ value: String) -> [String] { var r = rows; r[i] = value; return r }
        let id2 = tsv[1].split(separator: "\t")[0]
        let cases: [(String, [String], [String], [String], String, [String])] = [
            ("no-tab", with(tsv, 2, tsv[2].replacingOccurrences(of: "\t", with: " ")), jsonl, [], "train_imgs.tsv:3", ["tab"]),
            ("base64", with(tsv, 4, tsv[4] + "!"), jsonl, [], "train_imgs.tsv:5", ["base64"]),
            ("duplicate", tsv + [tsv[1]], jsonl, [], "train_imgs.tsv:10", ["image id \(id2)", "line 2"]),
            (
                "bad-image", with(tsv, 6, "\(tsv[6].split(separator: "\t")[0])\t" + Data(repeating: 0x42, count: 300).base64EncodedString()),
                jsonl, ["--check-images"], "train_imgs.tsv:7", ["image id 1000044"]
            ),
            ("no-text-id", tsv, with(jsonl, 3, #"{"text": "x", "image_ids": [1000002]}"#), [], "train_texts.jsonl:4", ["text_id"]),
            ("no-image-ids", tsv, with(jsonl, 1, #"{"text_id": 1, "text": "x"}"#), [], "train_texts.jsonl:2", ["image_ids"]),
            ("bad-json", tsv, with(jsonl, 5, "{\"text_id\": 505, "), [], "train_texts.jsonl:6", ["invalid JSON"]),
            (
                "missing-image", tsv, with(jsonl, 7, #"{"text_id": 507, "text": "x", "image_ids": [1000051, 999]}"#), [],
                "train_texts.jsonl:8", ["image id 999", "train_imgs.tsv"]
            ),
        ]
        for (name, t, j, extra, location, mentions) in cases {
            let dir = scratch.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data((t.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("train_imgs.tsv"))
            try Data((j.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("train_texts.jsonl"))
            let r = try cnclip(["build-lmdb", "--data_dir", dir.path, "--splits", "train"] + extra)
            XCTAssertNotEqual(r.status, 0, "\(name) should fail")
            XCTAssertTrue(r.stderr.contains(dir.appendingPathComponent(location).path), "\(name): '\(r.stderr)' should name \(location)")
            for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(name): '\(r.stderr)' should mention \(m)") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lmdb").path), "\(name): nothing left behind")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["train_imgs.tsv", "train_texts.jsonl"])
        }
    }

    func testBuildLMDBFailureKeepsThePreviousLMDB() throws {
        let data = try fixtureDataset("keep")
        XCTAssertEqual(try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "train"]).status, 0)
        let before = try Data(contentsOf: data.appendingPathComponent("lmdb/train/pairs/data.mdb"))
        try Data("{broken\n".utf8).write(to: data.appendingPathComponent("train_texts.jsonl"))
        let r = try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "train"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("train_texts.jsonl:1"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: data.appendingPathComponent("lmdb/train/pairs/data.mdb")), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("lmdb").path), ["train"])
    }

    // MARK: make-dataset

    func testMakeDatasetThenBuildLMDB() throws {
        let captions = scratch.appendingPathComponent("captions.csv")
        try Data("image_path,caption\nrgb.jpg,一只猫\nrgb.png,\"红色的, 圆形\"\ngray.png,一只猫\nwide.png,宽图\n".utf8).write(to: captions)
        let out = scratch.appendingPathComponent("made")
        var r = try cnclip([
            "make-dataset", "--images", fixtures.appendingPathComponent("images").path, "--captions", captions.path,
            "--output", out.path, "--split-ratio", "0.5,0.5", "--seed", "3", "--resize", "48",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(),
            ["train_imgs.tsv", "train_texts.jsonl", "valid_imgs.tsv", "valid_texts.jsonl"])
        r = try cnclip(["build-lmdb", "--data_dir", out.path, "--splits", "train,valid", "--check-images"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // An error names the captions file and line, and writes nothing.
        let bad = scratch.appendingPathComponent("bad.jsonl")
        try Data(#"{"image": "rgb.jpg", "caption": "猫"}\#n{"image": "nope.png", "caption": "狗"}\#n"#.utf8).write(to: bad)
        let out2 = scratch.appendingPathComponent("made2")
        r = try cnclip(["make-dataset", "--images", fixtures.appendingPathComponent("images").path, "--captions", bad.path, "--output", out2.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(bad.path + ":2") && r.stderr.contains("nope.png"), r.stderr)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: out2.path)) ?? [], [])
    }

    // MARK: extract-features

    var vitArgs: [String] {
        [
            "--resume", fixtures.appendingPathComponent("models/vit-tiny.pt").path,
            "--config", fixtures.appendingPathComponent("models/vit-tiny.json").path,
        ]
    }

    /// (id, feature) per line of a feature file, and the line with every number replaced by N (its format).
    func featureFile(_ url: URL, key: String) throws -> [(id: Int, feature: [Double], shape: String)] {
        let numbers = try NSRegularExpression(pattern: "-?[0-9][0-9.e+-]*")
        return try lines(url).map { line in
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let shape = numbers.stringByReplacingMatches(in: line, range: NSRange(line.startIndex..., in: line), withTemplate: "N")
            return ((obj[key] as! NSNumber).intValue, (obj["feature"] as! [NSNumber]).map(\.doubleValue), shape)
        }
    }

    func assertClose(_ a: [Double], _ e: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, e.count, what, file: file, line: line)
        let scale = max(1e-12, e.map(abs).max() ?? 0)
        let worst = zip(a, e).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, 1e-4, "\(what): max diff \(worst)", file: file, line: line)
    }

    func testExtractFeaturesMatchesTheReferenceScript() throws {
        // Golden files from scripts/reference/make_extract_features_golden.py (the reference's extract_features.py).
        let golden = fixtures.appendingPathComponent("extract")
        let texts = scratch.appendingPathComponent("train_texts.jsonl")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("dataset/train_texts.jsonl"), to: texts)
        let r = try cnclip(
            [
                "extract-features", "--extract-image-feats", "--extract-text-feats",
                "--image-data", fixtures.appendingPathComponent("dataset/lmdb/train/imgs").path,
                "--text-data", texts.path, "--img-batch-size", "4", "--text-batch-size", "3", "--precision", "fp32",
            ] + vitArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        // Default output paths, derived from --text-data as the reference derives them.
        for (ours, theirs, key) in [
            ("train_imgs.img_feat.jsonl", "train_imgs.img_feat.jsonl", "image_id"),
            ("train_texts.txt_feat.jsonl", "train_texts.txt_feat.jsonl", "text_id"),
        ] {
            let a = try featureFile(scratch.appendingPathComponent(ours), key: key)
            let e = try featureFile(golden.appendingPathComponent(theirs), key: key)
            XCTAssertEqual(a.map(\.id), e.map(\.id), ours)
            XCTAssertEqual(a.map(\.shape), e.map(\.shape), "\(ours): same JSON layout")
            for (x, y) in zip(a, e) { assertClose(x.feature, y.feature, "\(ours) id \(x.id)") }
        }
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted(),
            ["train_imgs.img_feat.jsonl", "train_texts.jsonl", "train_texts.txt_feat.jsonl"], "no temporary files left")
    }

    func testExtractFeaturesEqualsTheLibraryEncoders() throws {
        let imgOut = scratch.appendingPathComponent("img.jsonl"), txtOut = scratch.appendingPathComponent("txt.jsonl")
        let textData = fixtures.appendingPathComponent("dataset/valid_texts.jsonl")
        let r = try cnclip(
            [
                "extract-features", "--extract-image-feats", "--extract-text-feats",
                "--image-data", fixtures.appendingPathComponent("dataset/lmdb/valid/imgs").path, "--text-data", textData.path,
                "--image-feat-output-path", imgOut.path, "--text-feat-output-path", txtOut.path,
                "--img-batch-size", "3", "--context-length", "24",
            ] + vitArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = try ChineseCLIPModel(
            checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"),
            config: CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json")))
        // Images: the valid TSV's lines, in LMDB key order (the ids here sort the same as bytes and as numbers).
        let tsv = try lines(fixtures.appendingPathComponent("dataset/valid_imgs.tsv")).map { $0.split(separator: "\t") }
            .sorted { $0[0] < $1[0] }
        let images = try tsv.map { try Image(data: Data(base64Encoded: String($0[1]))!, name: String($0[0])) }
        let expectedImages = model.encodeImages(images, normalized: true).scalars
        let gotImages = try featureFile(imgOut, key: "image_id")
        XCTAssertEqual(gotImages.map(\.id), tsv.map { Int($0[0])! })
        let width = gotImages[0].feature.count
        for (i, row) in gotImages.enumerated() {
            assertClose(row.feature, expectedImages[i * width..<(i + 1) * width].map(Double.init), "image \(row.id)")
        }
        // Texts: file order, through prepareCaption, at the requested context length.
        let objects = try lines(textData).map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let expectedTexts = model.encodeTexts(objects.map { Tokenizer.prepareCaption($0["text"] as! String) }, contextLength: 24).scalars
        let gotTexts = try featureFile(txtOut, key: "text_id")
        XCTAssertEqual(gotTexts.map(\.id), objects.map { ($0["text_id"] as! NSNumber).intValue })
        for (i, row) in gotTexts.enumerated() {
            assertClose(row.feature, expectedTexts[i * width..<(i + 1) * width].map(Double.init), "text \(row.id)")
        }
    }

    func testExtractFeaturesErrorsLeaveNoOutput() throws {
        // A dataset whose LMDB holds an undecodable image (built without --check-images).
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let junk = Data(repeating: 0x41, count: 100).base64EncodedString()
        try Data("5\t\(junk)\n".utf8).write(to: data.appendingPathComponent("test_imgs.tsv"))
        try Data(#"{"text_id": 1, "text": "x", "image_ids": [5]}\#n"#.utf8).write(to: data.appendingPathComponent("test_texts.jsonl"))
        XCTAssertEqual(try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "test"]).status, 0)
        let out = scratch.appendingPathComponent("feat.jsonl")
        var r = try cnclip(
            [
                "extract-features", "--extract-image-feats", "--image-data", data.appendingPathComponent("lmdb/test/imgs").path,
                "--image-feat-output-path", out.path,
            ] + vitArgs)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("lmdb/test/imgs") && r.stderr.contains("image id 5"), r.stderr)
        let missing = scratch.appendingPathComponent("none/imgs").path
        r = try cnclip(["extract-features", "--extract-image-feats", "--image-data", missing, "--image-feat-output-path", out.path] + vitArgs)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(missing), r.stderr)
        r = try cnclip(["extract-features", "--text-data", data.appendingPathComponent("test_texts.jsonl").path] + vitArgs)
        XCTAssertNotEqual(r.status, 0, "neither --extract-image-feats nor --extract-text-feats")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["data"], "no output or temporary file left")
    }
}
