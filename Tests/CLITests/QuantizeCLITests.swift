import Foundation
import TestSupport
import XCTest

/// `cnclip quantize` and `--precision int8` end to end: the file loads with no model flags and gives the int8 features
/// of the checkpoint, zero-shot accuracy is unchanged, and bad requests fail cleanly.
final class QuantizeCLITests: ModelFileTestCase {
    var vitArgs: [String] {
        modelArgs("vit-tiny")
    }

    func testQuantizedFileLoadsWithoutModelFlagsAndGivesTheInt8Features() throws {
        let dir = try tempDir()
        let file = dir.appendingPathComponent("vit-tiny.int8.safetensors").path
        var r = try cnclip(["quantize"] + vitArgs + ["--output", file])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("int8 weights"), r.stderr)
        let inputs = ["--image", Self.fixtures.appendingPathComponent("images/rgb.jpg").path, "--text", "皮卡丘", "--text", "红色的圆形"]
        let fromFile = try cnclip(["encode", "--resume", file] + inputs)
        XCTAssertEqual(fromFile.status, 0, fromFile.stderr)
        let onTheFly = try cnclip(["encode"] + vitArgs + ["--precision", "int8"] + inputs)
        XCTAssertEqual(fromFile.stdout, onTheFly.stdout, "the file holds the same int8 model as --precision int8")
        let fp32 = try cnclip(["encode"] + vitArgs + inputs)
        XCTAssertNotEqual(fp32.stdout, onTheFly.stdout, "int8 really computes differently")
        for precision in ["amp", "fp16", "fp32"] {
            r = try cnclip(["encode"] + vitArgs + ["--precision", precision] + inputs)
            XCTAssertEqual(r.stdout, fp32.stdout, "--precision \(precision) computes in fp32")
        }
        // No temporary file is left beside the output.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["vit-tiny.int8.safetensors"])
    }

    func testZeroShotAccuracyIsUnchangedInInt8() throws {
        let zeroshot = Self.fixtures.appendingPathComponent("zeroshot")
        let save = try tempDir()
        let r = try cnclip(
            [
                "zeroshot-eval", "--datapath", zeroshot.appendingPathComponent("test").path,
                "--label-file", zeroshot.appendingPathComponent("label_cn.txt").path, "--save-dir", save.path,
                "--dataset", "fixture-objects", "--img-batch-size", "4", "--precision", "int8",
            ] + vitArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("  precision: int8\n"), r.stdout)
        let expected = try String(contentsOf: zeroshot.appendingPathComponent("fixture-objects.stdout.txt"), encoding: .utf8)
        XCTAssertEqual(r.stdout.components(separatedBy: "Result:\n").last, expected, "the reference's accuracy, in int8")
    }

    func testBadRequestsFailCleanly() throws {
        let dir = try tempDir()
        let file = dir.appendingPathComponent("m.int8.safetensors").path
        XCTAssertEqual(try cnclip(["quantize"] + vitArgs + ["--output", file]).status, 0)
        let cases: [([String], [String])] = [
            (["encode", "--resume", file, "--precision", "fp32", "--text", "x"], [file, "fp32"]),
            (["encode", "--resume", file, "--config", models.appendingPathComponent("rn-tiny.json").path, "--text", "x"], [file, "architecture"]),
            (["encode"] + vitArgs + ["--precision", "int4", "--text", "x"], ["--precision", "int8"]),
            (["quantize"] + vitArgs + ["--precision", "fp32", "--output", dir.appendingPathComponent("b").path], ["--precision"]),
            (["quantize", "--resume", file, "--output", file], ["--output", "checkpoint being read"]),
            (["quantize"] + vitArgs + ["--output", dir.appendingPathComponent("no/such/dir/m").path], ["no/such/dir"]),
        ]
        for (args, mentions) in cases {
            let r = try cnclip(args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertEqual(r.stdout, "", "\(args): no partial output")
            for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(args): stderr '\(r.stderr)' should mention \(m)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["m.int8.safetensors"])
    }

    func testHelpSaysWhatPrecisionMeans() throws {
        for command in ["encode", "similarity", "extract-features", "zeroshot-eval", "serve", "quantize"] {
            let r = try cnclip([command, "--help"])
            XCTAssertEqual(r.status, 0)
            XCTAssertTrue(r.stdout.contains("int8") && r.stdout.contains("amp"), "\(command) --help explains --precision")
        }
        for sub in ["build", "add", "search"] {
            XCTAssertTrue(try cnclip(["index", sub, "--help"]).stdout.contains("int8"), "index \(sub) --help")
        }
    }
}
