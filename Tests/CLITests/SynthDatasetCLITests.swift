import Foundation
import Imaging
import TestSupport
import Tokenization
import XCTest

/// End-to-end tests of `cnclip synth-dataset` on the built binary, and of its captions with the bundled tokenizer.
final class SynthDatasetCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    var fixtures: URL { Self.fixtures }
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-synth-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// Runs the `cnclip` built beside this test bundle.
    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    func contents(_ dir: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where !name.hasPrefix("lmdb") {
            out[name] = try Data(contentsOf: dir.appendingPathComponent(name))
        }
        return out
    }

    func jsonLines(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func testWritesADeterministicDatasetThatBuildsAndReadsBack() throws {
        let a = scratch.appendingPathComponent("a"), b = scratch.appendingPathComponent("b")
        let small = ["--train", "200", "--valid", "24", "--test", "0", "--seed", "42"]
        var r = try cnclip(["synth-dataset", "--output", a.path, "--threads", "1"] + small)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: 200 images, 200 texts"), r.stdout)
        XCTAssertTrue(r.stdout.contains("valid: 24 images, 24 texts"), r.stdout)
        r = try cnclip(["synth-dataset", "--output", b.path, "--threads", "3"] + small)
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try contents(a)
        XCTAssertEqual(
            files.keys.sorted(),
            [
                "train_imgs.tsv", "train_texts.caption_groups.jsonl", "train_texts.jsonl",
                "valid_imgs.tsv", "valid_texts.caption_groups.jsonl", "valid_texts.jsonl",
            ])
        XCTAssertEqual(files, try contents(b), "same seed, different thread counts: identical files")

        // build-lmdb accepts it, decoding every image.
        r = try cnclip(["build-lmdb", "--data_dir", a.path, "--splits", "train,valid", "--check-images"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Finished serializing 200 train split pairs"), r.stdout)
        XCTAssertTrue(r.stdout.contains("Finished serializing 24 valid split images"), r.stdout)
        // And the LMDB reads back: extract-features (with the tiny fixture model) finds every valid image and text.
        let imgFeat = scratch.appendingPathComponent("img.jsonl"), txtFeat = scratch.appendingPathComponent("txt.jsonl")
        r = try cnclip([
            "extract-features", "--extract-image-feats", "--extract-text-feats",
            "--image-data", a.appendingPathComponent("lmdb/valid/imgs").path,
            "--text-data", a.appendingPathComponent("valid_texts.jsonl").path,
            "--image-feat-output-path", imgFeat.path, "--text-feat-output-path", txtFeat.path, "--context-length", "32",
            "--resume", fixtures.appendingPathComponent("models/vit-tiny.pt").path,
            "--config", fixtures.appendingPathComponent("models/vit-tiny.json").path,
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let validTexts = try jsonLines(a.appendingPathComponent("valid_texts.jsonl"))
        let validImageIDs = validTexts.map { ($0["image_ids"] as! [Int])[0] }
        XCTAssertEqual(try jsonLines(imgFeat).map { $0["image_id"] as! Int }.sorted(), validImageIDs.sorted())
        XCTAssertEqual(try jsonLines(txtFeat).map { $0["text_id"] as! Int }, validTexts.map { $0["text_id"] as! Int })
        XCTAssertEqual(
            Set(validImageIDs).intersection(
                try jsonLines(a.appendingPathComponent("train_texts.jsonl"))
                    .map { ($0["image_ids"] as! [Int])[0] }), [], "image ids are distinct across splits")
    }

    func testEveryCaptionFitsContextLength32() throws {
        let dir = scratch.appendingPathComponent("tok")
        let r = try cnclip([
            "synth-dataset", "--output", dir.path, "--train", "3000", "--valid", "200", "--test", "200",
            "--resolution", "16",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let tokenizer = try Tokenizer.bundled()
        var longest = 0
        for split in ["train", "valid", "test"] {
            for text in try jsonLines(dir.appendingPathComponent("\(split)_texts.jsonl")) {
                let caption = text["text"] as! String
                // Unpadded length: [CLS] + pieces + [SEP], from a row long enough never to truncate.
                let ids = tokenizer.encode(Tokenizer.prepareCaption(caption), contextLength: 64)
                let length = ids.firstIndex(of: tokenizer.padID) ?? ids.count
                XCTAssertFalse(ids.contains(tokenizer.unkID), "\(caption): every character is in the vocabulary")
                longest = max(longest, length)
                XCTAssertLessThanOrEqual(length, 32, caption)
            }
        }
        // Two-shape captions with 三角形/正方形 reach 29 tokens (DESIGN.md); 3,400 captions include some.
        XCTAssertEqual(longest, 29)
    }

    func testRejectsBadArgumentsAndWritesNothing() throws {
        let out = scratch.appendingPathComponent("out")
        let cases: [([String], String)] = [
            (["--train=-5"], "--train: -5"),
            (["--train", "0", "--valid", "0", "--test", "0"], "all 0"),
            (["--resolution", "4"], "--resolution 4"),
            (["--image-format", "gif"], "--image-format 'gif'"),
            (["--jpeg-quality", "101"], "--jpeg-quality 101"),
            (["--threads", "0"], "--threads 0"),
            (["--seed=-1"], "seed"),
        ]
        for (args, message) in cases {
            let r = try cnclip(["synth-dataset", "--output", out.path] + args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.stderr.contains(message), "\(args): '\(r.stderr)' should mention \(message)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing written")
        // An output path that is a file: a one-line error naming it.
        let file = scratch.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let r = try cnclip(["synth-dataset", "--output", file.path, "--train", "2", "--valid", "0", "--test", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(file.path), r.stderr)
    }
}
