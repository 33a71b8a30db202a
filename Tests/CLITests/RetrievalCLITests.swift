import Foundation
import TestSupport
import XCTest

/// End-to-end tests of the retrieval subcommands of the built `cnclip`: the files the reference scripts write, byte for byte.
final class RetrievalCLITests: XCTestCase {
    static let eval = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/eval")
    func eval(_ name: String) -> String { Self.eval.appendingPathComponent(name).path }

    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("retrieval-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }
    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }
    func bytes(_ p: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: p)) }

    /// Runs the `cnclip` built beside this test bundle.
    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    var feats: [String] { ["--image-feats", eval("valid_imgs.img_feat.jsonl"), "--text-feats", eval("valid_texts.txt_feat.jsonl")] }

    func testMakeTopKPredictionsBothDirections() throws {
        var r = try cnclip(["make-topk-predictions"] + feats + ["--top-k", "10", "--eval-batch-size", "128", "--output", path("p.jsonl")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try bytes(path("p.jsonl")), try bytes(eval("valid_predictions.jsonl")))
        XCTAssertTrue(r.stdout.hasPrefix("Params:\n  eval_batch_size: 128\n"), r.stdout)
        XCTAssertTrue(r.stdout.hasSuffix("Top-10 predictions are saved in \(path("p.jsonl"))\nDone!\n"), r.stdout)
        r = try cnclip(["make-topk-predictions-tr"] + feats + ["--output", path("tr.jsonl")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try bytes(path("tr.jsonl")), try bytes(eval("valid_tr_predictions.jsonl")))
    }

    func testSmallEvalBatchSizeGivesTheSameFile() throws {
        for size in ["1", "7", "64"] {
            let r = try cnclip(["make-topk-predictions"] + feats + ["--eval-batch-size", size, "--output", path("p.jsonl")])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try bytes(path("p.jsonl")), try bytes(eval("valid_predictions.jsonl")), size)
        }
    }

    func testTransformAndEvaluations() throws {
        try FileManager.default.copyItem(atPath: eval("valid_texts.jsonl"), toPath: path("valid_texts.jsonl"))
        var r = try cnclip(["transform-ir-annotation-to-tr", "--input", path("valid_texts.jsonl")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try bytes(path("valid_texts.tr.jsonl")), try bytes(eval("valid_texts.tr.jsonl")))
        r = try cnclip(["evaluation", eval("valid_texts.jsonl"), eval("valid_predictions.jsonl"), path("output.json")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try bytes(path("output.json")), try bytes(eval("output.json")))
        XCTAssertEqual(
            r.stdout,
            "Read standard from \(eval("valid_texts.jsonl"))\nRead user submit file from \(eval("valid_predictions.jsonl"))\nThe evaluation finished successfully.\n"
        )
        r = try cnclip(["evaluation-tr", eval("valid_texts.tr.jsonl"), eval("valid_tr_predictions.jsonl"), path("output_tr.json")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try bytes(path("output_tr.json")), try bytes(eval("output_tr.json")))
    }

    /// A malformed submission is reported in the output JSON, with exit status 0, as the reference does.
    func testEvaluationReportsMalformedPredictionInJSON() throws {
        try "{\"text_id\": 200000, \"image_ids\": [1, 2, 3]}\n".write(toFile: path("bad.jsonl"), atomically: true, encoding: .utf8)
        let r = try cnclip(["evaluation", eval("valid_texts.jsonl"), path("bad.jsonl"), path("out.json")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let msg = "Text_id 200000 has wrong number of predicted image_ids! Require 10, but 3 founded."
        XCTAssertEqual(
            try String(contentsOfFile: path("out.json"), encoding: .utf8),
            "{\"errorDetail\": \"\(msg)\", \"errorMsg\": \"\(msg)\", \"score\": 0, \"scoreJson\": {}, \"success\": false}")
        XCTAssertTrue(r.stdout.hasSuffix("The evaluation failed: \(msg)\n"), r.stdout)
    }

    func testBadFeatureFileFailsWithFileAndLineAndWritesNothing() throws {
        try "{\"text_id\": 1, \"feature\": [0.5]}\n{\"text_id\": 2, \"feature\": [0.5\n".write(
            toFile: path("t.jsonl"), atomically: true, encoding: .utf8)
        let r = try cnclip([
            "make-topk-predictions", "--image-feats", eval("valid_imgs.img_feat.jsonl"), "--text-feats", path("t.jsonl"),
            "--output", path("p.jsonl"),
        ])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("\(path("t.jsonl")):2: invalid JSON"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path), ["t.jsonl"])
        let r2 = try cnclip([
            "make-topk-predictions", "--image-feats", path("none.jsonl"), "--text-feats", path("t.jsonl"), "--output", path("p.jsonl"),
        ])
        XCTAssertEqual(r2.status, 1)
        let r3 = try cnclip(["make-topk-predictions"] + feats + ["--eval-batch-size", "0", "--output", path("p.jsonl")])
        XCTAssertNotEqual(r3.status, 0)
    }
}
