import Foundation
import TestSupport
import XCTest

/// End-to-end tests of the built `cnclip` binary: outputs the reference gives, exit codes, messages, no partial output.
final class CLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    var fixtures: URL { Self.fixtures }

    /// Runs the `cnclip` built beside this test bundle.
    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    var vitArgs: [String] {
        [
            "--resume", fixtures.appendingPathComponent("models/vit-tiny.pt").path,
            "--config", fixtures.appendingPathComponent("models/vit-tiny.json").path,
        ]
    }

    func image(_ name: String) -> String { fixtures.appendingPathComponent("images/\(name)").path }

    /// The reference's unnormalised features from `models/vit-tiny.expected.safetensors`, row `i`.
    func expected(_ key: String, row: Int) throws -> [Float] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.expected.safetensors"))
        let n = Int(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<8 + n)) as! [String: Any]
        let info = header[key] as! [String: Any]
        let shape = info["shape"] as! [Int], offsets = info["data_offsets"] as! [Int]
        let width = shape[1]
        let start = 8 + n + offsets[0] + row * width * 4
        return data.subdata(in: start..<start + width * 4).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func features(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func assertClose(_ a: [Double], _ e: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, e.count, what, file: file, line: line)
        let scale = max(1, e.map { abs(Double($0)) }.max() ?? 0)
        let worst = zip(a, e).map { abs($0 - Double($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(what): max diff \(worst); first \(a.prefix(4)) vs \(e.prefix(4))", file: file, line: line)
    }

    func testModelsListsPresetsAndReleasedNames() throws {
        let r = try cnclip(["models"])
        XCTAssertEqual(r.status, 0)
        for name in [
            "ViT-B-16", "ViT-L-14-336", "ViT-H-14", "RN50", "ViT-B-32", "RoBERTa-wwm-ext-base-chinese",
            "RoBERTa-wwm-ext-large-chinese", "RBT3-chinese",
        ] {
            XCTAssertTrue(r.stdout.contains(name), name)
        }
    }

    func testEncodeGivesReferenceFeatures() throws {
        let r = try cnclip(
            ["encode"] + vitArgs + [
                "--image", image("rgb.jpg"), "--image", image("palette.png"),
                "--text", "皮卡丘", "--text", "杰尼龟", "--unnormalized",
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try features(r.stdout)
        XCTAssertEqual(lines.count, 4)
        XCTAssertEqual(lines[0]["image"] as? String, image("rgb.jpg"))
        XCTAssertEqual(lines[2]["text"] as? String, "皮卡丘")
        assertClose(lines[0]["feature"] as! [Double], try expected("image_features", row: 0), "rgb.jpg")
        assertClose(lines[1]["feature"] as! [Double], try expected("image_features", row: 6), "palette.png")
        assertClose(lines[2]["feature"] as! [Double], try expected("text_features", row: 0), "皮卡丘")
        assertClose(lines[3]["feature"] as! [Double], try expected("text_features", row: 1), "杰尼龟")
    }

    func testEncodeNormalisesByDefault() throws {
        let r = try cnclip(["encode"] + vitArgs + ["--text", "红色的圆形"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try features(r.stdout)[0]["feature"] as! [Double]
        let e = try expected("text_features", row: 8)
        let norm = e.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        assertClose(f, e.map { Float(Double($0) / norm) }, "normalised")
    }

    func testEncodeWithPresetNames() throws {
        // rn-tiny is no preset: its weights do not fit ViT-B-16, and the error names a key.
        let r = try cnclip([
            "encode", "--resume", fixtures.appendingPathComponent("models/rn-tiny.pt").path,
            "--vision-model", "ViT-B-16", "--text-model", "RBT3-chinese", "--text", "x",
        ])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rn-tiny.pt"), r.stderr)
        XCTAssertTrue(r.stderr.contains("key '"), r.stderr)
        XCTAssertEqual(r.stdout, "")
    }

    func testSimilarityTable() throws {
        let r = try cnclip(
            ["similarity"] + vitArgs + [
                "--image", image("rgb.jpg"), "--image", image("gray.png"),
                "--text", "皮卡丘", "--text", "杰尼龟", "--text", "小火龙",
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = r.stdout.split(separator: "\n")
        XCTAssertEqual(rows.count, 3)
        XCTAssertTrue(rows[0].contains("皮卡丘") && rows[0].contains("小火龙"))
        for row in rows.dropFirst() {
            let probs = row.split(separator: " ").dropFirst().compactMap { Double($0) }
            XCTAssertEqual(probs.count, 3)
            XCTAssertEqual(probs.reduce(0, +), 1, accuracy: 1e-5)
        }
    }

    func testBadInputsFailCleanly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let truncated = dir.appendingPathComponent("cut.jpg")
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: image("rgb.jpg")))
        try jpeg.prefix(jpeg.count / 2).write(to: truncated)
        let text = dir.appendingPathComponent("notes.jpg")
        try Data("not an image".utf8).write(to: text)
        let gif = dir.appendingPathComponent("anim.gif")
        try Data("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8).write(to: gif)
        let cases: [([String], [String])] = [
            (["encode"] + vitArgs + ["--image", image("rgb.jpg"), "--image", truncated.path], [truncated.path]),
            (["encode"] + vitArgs + ["--image", text.path], [text.path]),
            (["encode"] + vitArgs + ["--image", gif.path], [gif.path, "GIF"]),
            (["encode"] + vitArgs + ["--image", dir.appendingPathComponent("missing.png").path], ["missing.png"]),
            (
                [
                    "encode", "--resume", dir.appendingPathComponent("none.pt").path, "--config",
                    fixtures.appendingPathComponent("models/vit-tiny.json").path, "--text", "x",
                ], ["none.pt"]
            ),
            (
                [
                    "encode", "--resume", fixtures.appendingPathComponent("models/vit-tiny.pt").path,
                    "--vision-model", "ViT-Z", "--text-model", "RBT3-chinese", "--text", "x",
                ], ["ViT-Z", "ViT-B-16"]
            ),
            (["encode"] + vitArgs + ["--vocab-file", dir.appendingPathComponent("vocab.txt").path, "--text", "x"], ["vocab.txt"]),
            (["download", "ViT-Q-1"], ["ViT-Q-1", "RN50"]),
            // rgb.jpg has 320 × 240 pixels: one pixel over the limit the flag sets (Pillow's DecompressionBombError).
            (
                ["encode"] + vitArgs + ["--max-image-pixels", "76799", "--image", image("rgb.jpg")],
                ["rgb.jpg", "76800 pixels", "--max-image-pixels"]
            ),
        ]
        for (args, mentions) in cases {
            let r = try cnclip(args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertEqual(r.stdout, "", "\(args): no partial output")
            for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(args): stderr '\(r.stderr)' should mention \(m)") }
        }
    }

    func testDownloadFromLocalMirror() throws {
        let payload = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let server = try LocalHTTPServer(files: ["/m/clip_cn_vit-b-16.pt": payload])
        defer { server.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try cnclip(["download", "ViT-B-16", "--download-root", dir.path, "--base-url", server.baseURL + "/m"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), dir.appendingPathComponent("clip_cn_vit-b-16.pt").path)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("clip_cn_vit-b-16.pt")), payload)
    }

    /// `train --use-augment` runs end to end on the fixture LMDB and records the flag as the reference's params file does.
    func testTrainWithAugment() throws {
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-cli-augment-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: logs) }
        let r = try cnclip([
            "train", "--train-data", fixtures.appendingPathComponent("dataset/lmdb/train").path,
            "--config", fixtures.appendingPathComponent("models/vit-tiny.json").path,
            "--batch-size", "4", "--max-steps", "2", "--warmup", "1", "--num-workers", "1",
            "--use-augment", "--logs", logs.path, "--name", "aug",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let dir = logs.appendingPathComponent("aug")
        let params = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir.path).first { $0.hasPrefix("params_") })
        let text = try String(contentsOf: dir.appendingPathComponent(params), encoding: .utf8)
        XCTAssertTrue(text.split(separator: "\n").contains("use_augment: True"), text)
        let help = try cnclip(["train", "--help"])
        XCTAssertTrue(help.stdout.contains("--use-augment") && !help.stdout.contains("not implemented"), help.stdout)
    }

    func testMaxImagePixelsIsAnExactLimit() throws {
        let r = try cnclip(["encode"] + vitArgs + ["--max-image-pixels", "76800", "--image", image("rgb.jpg")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try features(r.stdout).count, 1)
    }

    func testHelpExplainsFlags() throws {
        let r = try cnclip(["encode", "--help"])
        XCTAssertEqual(r.status, 0)
        for flag in ["--resume", "--vision-model", "--text-model", "--config", "--model", "--context-length", "--unnormalized"] {
            XCTAssertTrue(r.stdout.contains(flag), flag)
        }
    }
}
