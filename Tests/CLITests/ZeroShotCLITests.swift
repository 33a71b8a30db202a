import Foundation
import TestSupport
import XCTest

/// `cnclip zeroshot-eval` end to end: the reference's printed result, its ELEVATER file, and clean failures.
final class ZeroShotCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    var zeroshot: URL { Self.fixtures.appendingPathComponent("zeroshot") }

    /// Two units of the 6th decimal: the reference's own spread across batch sizes (see ZeroShotTests.tolerance).
    static let tolerance = 2e-6 + 1e-12

    /// Runs the `cnclip` built beside this test bundle.
    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zs-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// The reference's command line from make_fixtures.py, with our --config supplying vit-tiny's structure.
    func args(datapath: String? = nil, labelFile: String? = nil, saveDir: String, dataset: String) -> [String] {
        let models = Self.fixtures.appendingPathComponent("models")
        return [
            "zeroshot-eval", "--datapath", datapath ?? zeroshot.appendingPathComponent("test").path,
            "--label-file", labelFile ?? zeroshot.appendingPathComponent("label_cn.txt").path,
            "--save-dir", saveDir, "--dataset", dataset, "--img-batch-size", "4", "--context-length", "52",
            "--num-workers", "0", "--resume", models.appendingPathComponent("vit-tiny.pt").path,
            "--vision-model", "ViT-B-32", "--text-model", "RBT3-chinese",
            "--config", models.appendingPathComponent("vit-tiny.json").path,
        ]
    }

    func testPrintsAndWritesWhatTheReferenceDoes() throws {
        let save = try tempDir()
        for dataset in ["fixture-objects", "food-101"] {
            let r = try cnclip(args(saveDir: save.path, dataset: dataset))
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.hasPrefix("Params:\n"), r.stdout)
            XCTAssertTrue(r.stdout.contains("torch.Size([13, 3])\n"))
            let expected = try String(contentsOf: zeroshot.appendingPathComponent("\(dataset).stdout.txt"), encoding: .utf8)
            XCTAssertEqual(r.stdout.components(separatedBy: "Result:\n").last, expected, dataset)

            let written = try String(contentsOf: save.appendingPathComponent("\(dataset).json"), encoding: .utf8)
            let reference = try String(contentsOf: zeroshot.appendingPathComponent("\(dataset).json"), encoding: .utf8)
            let marker = "\"predictions\": "
            XCTAssertEqual(written.components(separatedBy: marker).first, reference.components(separatedBy: marker).first)
            let a = try JSONSerialization.jsonObject(with: Data(written.utf8)) as! [String: Any]
            let e = try JSONSerialization.jsonObject(with: Data(reference.utf8)) as! [String: Any]
            XCTAssertEqual(Set(a.keys), Set(e.keys))
            let pa = a["predictions"] as! [[[Double]]], pe = e["predictions"] as! [[[Double]]]
            XCTAssertEqual(pa[0].map(\.count), pe[0].map(\.count))
            let worst = zip(pa[0], pe[0]).flatMap { zip($0, $1).map { abs($0 - $1) } }.max() ?? 1
            XCTAssertLessThanOrEqual(worst, Self.tolerance, dataset)
        }
        XCTAssertEqual(
            Set(try FileManager.default.contentsOfDirectory(atPath: save.path)),
            ["fixture-objects.json", "food-101.json"], "no temporary files left")
    }

    func testEmptyFlagValueAsTheRunScriptPassesIt() throws {
        let save = try tempDir()
        // zeroshot_eval.sh writes `--index=${index}` with index usually empty; argparse reads that as "".
        let r = try cnclip(args(saveDir: save.path, dataset: "food-101") + ["--index="])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("  index: \n"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: save.appendingPathComponent("food-101.json").path))
    }

    func testRunScriptCallsCnclipAsTheReferenceScriptCallsPython() throws {
        // run_scripts/zeroshot_eval.sh with the reference's positional arguments; CNCLIP points at a wrapper that adds
        // --config, since vit-tiny is no preset (the reference run lent it the names ViT-B-32 / RBT3-chinese too).
        let root = try tempDir()
        let datasets = root.appendingPathComponent("datasets/fixture-objects")
        try FileManager.default.createDirectory(at: datasets, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            at: datasets.appendingPathComponent("test"),
            withDestinationURL: zeroshot.appendingPathComponent("test"))
        try FileManager.default.copyItem(
            at: zeroshot.appendingPathComponent("label_cn.txt"),
            to: datasets.appendingPathComponent("label_cn.txt"))
        let binary = builtCNCLIP.path
        let config = Self.fixtures.appendingPathComponent("models/vit-tiny.json").path
        let wrapper = root.appendingPathComponent("cnclip-wrapper")
        try Data("#!/bin/bash\nexec '\(binary)' \"$@\" --config '\(config)'\n".utf8).write(to: wrapper)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)

        let script = Self.fixtures.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("run_scripts/zeroshot_eval.sh").path
        let r = try runCommand(
            URL(fileURLWithPath: "/bin/bash"),
            [
                script, "0", root.path, "fixture-objects", "ViT-B-32", "RBT3-chinese",
                Self.fixtures.appendingPathComponent("models/vit-tiny.pt").path,
            ],
            environment: ["CNCLIP": wrapper.path])
        let stdout = r.stdout
        XCTAssertEqual(r.status, 0, stdout + r.stderr)
        let expected = try String(contentsOf: zeroshot.appendingPathComponent("fixture-objects.stdout.txt"), encoding: .utf8)
        XCTAssertEqual(stdout.components(separatedBy: "Result:\n").last, expected)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("save_predictions/fixture-objects.json").path))
    }

    func assertFails(_ r: CommandResult, mentioning text: String, save: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(text), "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stdout.contains("Result:"), file: file, line: line)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: save.path), [], "nothing written", file: file, line: line)
    }

    func testMissingLabelFile() throws {
        let save = try tempDir()
        let missing = save.appendingPathComponent("nope/label_cn.txt").path
        try assertFails(try cnclip(args(labelFile: missing, saveDir: save.path, dataset: "x")), mentioning: missing, save: save)
    }

    func testLabelCountDiffersFromFolderCount() throws {
        let save = try tempDir(), work = try tempDir()
        let labels = work.appendingPathComponent("two.txt")
        try Data("猫\n汽车\n".utf8).write(to: labels)
        try assertFails(
            try cnclip(args(labelFile: labels.path, saveDir: save.path, dataset: "x")),
            mentioning: "\(labels.path): 2 labels, but", save: save)
    }

    /// A copy of the fixture test set in a temporary folder, to break. Its images are links into `Fixtures/images`
    /// (one copy of each fixture); the copy holds their bytes, so it can be changed without touching the fixtures.
    func copyOfTestSet() throws -> URL {
        let fm = FileManager.default
        let source = zeroshot.appendingPathComponent("test"), dir = try tempDir().appendingPathComponent("test")
        for folder in try fm.contentsOfDirectory(atPath: source.path) {
            try fm.createDirectory(at: dir.appendingPathComponent(folder), withIntermediateDirectories: true)
            for name in try fm.contentsOfDirectory(atPath: source.appendingPathComponent(folder).path) {
                try Data(contentsOf: source.appendingPathComponent(folder).appendingPathComponent(name))
                    .write(to: dir.appendingPathComponent(folder).appendingPathComponent(name))
            }
        }
        return dir
    }

    func testEmptyClassFolder() throws {
        let save = try tempDir(), data = try copyOfTestSet()
        for f in try FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("001").path) {
            try FileManager.default.removeItem(at: data.appendingPathComponent("001/\(f)"))
        }
        try assertFails(
            try cnclip(args(datapath: data.path, saveDir: save.path, dataset: "x")),
            mentioning: "no image file in the class folder(s) 001", save: save)
    }

    func testUnreadableImageIsNamed() throws {
        let save = try tempDir(), data = try copyOfTestSet()
        let bad = data.appendingPathComponent("002/rgba.png")
        try Data("truncated".utf8).write(to: bad)
        try assertFails(try cnclip(args(datapath: data.path, saveDir: save.path, dataset: "x")), mentioning: bad.path, save: save)
    }
}
