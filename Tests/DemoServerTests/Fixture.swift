// A small synthetic gallery shared by the demo server's tests, made once per test process with the built `cnclip`
// (synth-dataset → build-lmdb → index build) and the tiny test model: quality does not matter here, only that
// every stage runs for real.

import Foundation
import TestSupport
import XCTest

/// Paths of the shared test gallery.
struct DemoFixture {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    /// The repository root (screenshots go under its git-ignored `.test-artifacts/`).
    static let repositoryRoot = fixtures.deletingLastPathComponent().deletingLastPathComponent()
    static let artifacts = repositoryRoot.appendingPathComponent(".test-artifacts")

    let root: URL
    var data: URL { root.appendingPathComponent("data") }
    var validImages: String { data.appendingPathComponent("lmdb/valid/imgs").path }
    var testImages: String { data.appendingPathComponent("lmdb/test/imgs").path }
    var validTexts: String { data.appendingPathComponent("valid_texts.jsonl").path }
    var validTSV: String { data.appendingPathComponent("valid_imgs.tsv").path }
    var testTexts: String { data.appendingPathComponent("test_texts.jsonl").path }
    /// The gallery of the valid split's 48 images and captions (image batch size 16).
    var index: String { root.appendingPathComponent("index").path }

    /// `--resume`/`--config` of the tiny fixture model.
    static var model: [String] {
        [
            "--resume", fixtures.appendingPathComponent("models/vit-tiny.pt").path,
            "--config", fixtures.appendingPathComponent("models/vit-tiny.json").path,
        ]
    }

    static let shared: Result<DemoFixture, Error> = Result {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-demo-fixture-\(getpid())")
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        atexit {
            try? FileManager.default.removeItem(at: FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-demo-fixture-\(getpid())"))
        }
        let f = DemoFixture(root: root)
        try f.run(["synth-dataset", "--output", f.data.path, "--train", "0", "--valid", "48", "--test", "24", "--seed", "7", "--image-format", "png"])
        try f.run(["build-lmdb", "--data_dir", f.data.path, "--splits", "valid,test"])
        try f.run(
            ["index", "build"] + model + [
                "--image-data", f.validImages, "--text-data", f.validTexts,
                "--output", f.index, "--img-batch-size", "16", "--thumbnail-size", "48",
            ])
        return f
    }

    /// Runs `cnclip` and throws with its output unless it succeeds.
    func run(_ args: [String]) throws {
        let r = try runCNCLIP(args)
        if r.status != 0 { throw ChromiumError("cnclip \(args.prefix(2).joined(separator: " ")) failed (\(r.status)): \(r.stderr)") }
    }

    /// The fixture, or a test failure explaining why it could not be made.
    static func get() throws -> DemoFixture { try shared.get() }

    /// Each line of a JSONL file as an object.
    static func jsonLines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// The image bytes of the valid split's TSV, by image id.
    func validImageFiles() throws -> [(id: Int, data: Data)] {
        try String(contentsOfFile: validTSV, encoding: .utf8).split(separator: "\n").map { line in
            let parts = line.split(separator: "\t")
            return (Int(parts[0])!, Data(base64Encoded: String(parts[1]))!)
        }
    }
}
