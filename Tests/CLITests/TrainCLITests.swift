import Essentials
import Foundation
import TestSupport
import XCTest

/// The reference's whole pipeline on the built binary, on a small synthetic dataset: synth-dataset → build-lmdb →
/// train from scratch → extract-features → make-topk-predictions → evaluation. Training must make the loss fall
/// and the held-out recall rise far above what the model gives after one step.
final class TrainCLITests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-train-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func cnclip(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try runCNCLIP(args)
        XCTAssertEqual(r.status, 0, "cnclip \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// A CLIP small enough to train in seconds: 32-pixel images in 16 patches, 2-layer towers of width 64.
    let config = """
        {"embed_dim": 64, "image_resolution": 32, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8,
         "vision_head_width": 32, "vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
         "text_hidden_dropout_prob": 0.1, "text_hidden_size": 64, "text_initializer_range": 0.02,
         "text_intermediate_size": 256, "text_max_position_embeddings": 512, "text_num_attention_heads": 2,
         "text_num_hidden_layers": 2, "text_type_vocab_size": 2}
        """

    /// Test-split recall (`r1`, `r5`, `r10`) of the checkpoint, strict and counting any image of the caption.
    func recall(_ checkpoint: String, data: URL, configPath: String) throws -> (strict: [Double], groups: [Double]) {
        let img = scratch.appendingPathComponent("img.jsonl").path, txt = scratch.appendingPathComponent("txt.jsonl").path
        let pred = scratch.appendingPathComponent("pred.jsonl").path
        _ = try cnclip([
            "extract-features", "--extract-image-feats", "--extract-text-feats",
            "--image-data", data.appendingPathComponent("lmdb/test/imgs").path,
            "--text-data", data.appendingPathComponent("test_texts.jsonl").path,
            "--image-feat-output-path", img, "--text-feat-output-path", txt,
            "--resume", checkpoint, "--config", configPath, "--context-length", "32",
        ])
        _ = try cnclip(["make-topk-predictions", "--image-feats", img, "--text-feats", txt, "--top-k", "10", "--output", pred])
        func evaluate(_ truth: String) throws -> [Double] {
            let out = scratch.appendingPathComponent("out.json")
            _ = try cnclip(["evaluation", data.appendingPathComponent(truth).path, pred, out.path])
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
            let scores = json["scoreJson"] as! [String: Double]
            return ["r1", "r5", "r10"].map { scores[$0]! }
        }
        return (try evaluate("test_texts.jsonl"), try evaluate("test_texts.caption_groups.jsonl"))
    }

    func testTrainingOnSyntheticDataLearns() throws {
        let data = scratch.appendingPathComponent("data"), logs = scratch.appendingPathComponent("logs")
        let configPath = scratch.appendingPathComponent("clip.json").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = try cnclip([
            "synth-dataset", "--output", data.path, "--train", "2000", "--valid", "200", "--test", "200",
            "--resolution", "32", "--seed", "5",
        ])
        _ = try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "train,valid,test"])
        let common = [
            "train", "--train-data", data.appendingPathComponent("lmdb/train").path,
            "--val-data", data.appendingPathComponent("lmdb/valid").path, "--config", configPath,
            "--context-length", "32", "--batch-size", "100", "--valid-batch-size", "100", "--lr", "2e-3",
            "--wd", "0.001", "--seed", "3", "--logs", logs.path, "--log-interval", "10",
        ]
        _ = try cnclip(common + ["--max-steps", "1", "--warmup", "1", "--name", "early"])
        let run = try cnclip(common + ["--max-steps", "200", "--warmup", "20", "--name", "synthetic"])

        // The log: training lines every 10 steps, validation after each epoch (20 steps), in the reference's format.
        let losses = run.stderr.split(separator: "\n").filter { $0.contains("Global Steps: ") }.map { line -> Double in
            let after = line.components(separatedBy: "| Loss: ")[1]
            return Double(after.prefix { $0 != " " })!
        }
        XCTAssertEqual(losses.count, 20, run.stderr)
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, 0.7 * losses[0], "the loss should fall from ln(100) (chance): \(losses)")
        XCTAssertEqual(run.stderr.components(separatedBy: "Validation Result (epoch ").count - 1, 10, run.stderr)
        // The curves for TensorBoard: the version event, 5 scalars a step, 3 per validation, every record's CRCs right.
        let board = logs.appendingPathComponent("synthetic/tensorboard")
        let files = try FileManager.default.contentsOfDirectory(atPath: board.path)
        XCTAssertEqual(files.count, 1, "\(files)")
        let events = [UInt8](try Data(contentsOf: board.appendingPathComponent(try XCTUnwrap(files.first))))
        var at = 0, records = 0
        func le<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            events[offset..<(offset + MemoryLayout<T>.size)].reversed().reduce(0) { $0 << 8 | T($1) }
        }
        while at + 12 <= events.count {
            let length = Int(le(at, UInt64.self))
            XCTAssertEqual(le(at + 8, UInt32.self), CRC32C.masked(events[at..<(at + 8)]), "length CRC of record \(records)")
            XCTAssertEqual(le(at + 12 + length, UInt32.self), CRC32C.masked(events[(at + 12)..<(at + 12 + length)]), "data CRC of record \(records)")
            at += 16 + length
            records += 1
        }
        XCTAssertEqual(at, events.count)
        XCTAssertEqual(records, 1 + 5 * 200 + 3 * 10)

        let before = try recall(logs.appendingPathComponent("early/checkpoints/epoch_latest.pt").path, data: data, configPath: configPath)
        let after = try recall(logs.appendingPathComponent("synthetic/checkpoints/epoch_latest.pt").path, data: data, configPath: configPath)
        print("recall after 1 step: \(before); after 200 steps: \(after); losses: \(losses)")
        // 200 test images: chance R@10 is 5%.
        XCTAssertGreaterThan(after.strict[2], before.strict[2] + 25, "R@10 should rise: \(before.strict) → \(after.strict)")
        XCTAssertGreaterThan(after.groups[2], after.strict[2], "any image of the caption counts as a hit")
        XCTAssertGreaterThan(after.strict[0], before.strict[0], "R@1 should rise")
    }

    /// A run killed while writing the checkpoints of an epoch's last step may leave `epoch_latest.pt` at that step
    /// (the step's pair is written first) and no `epoch{N}.pt`. Resuming writes the missing file, byte for byte the
    /// uninterrupted run's, and goes on to the same final checkpoints. (Found by scripts/torture.sh.)
    func testResumeAfterAKillInAnEpochSaveWritesTheEpochCheckpoint() throws {
        let data = scratch.appendingPathComponent("data"), logs = scratch.appendingPathComponent("logs")
        let configPath = scratch.appendingPathComponent("clip.json").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = try cnclip(["synth-dataset", "--output", data.path, "--train", "200", "--valid", "0", "--test", "0", "--resolution", "32", "--seed", "5"])
        _ = try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "train"])
        let train = [
            "train", "--train-data", data.appendingPathComponent("lmdb/train").path, "--config", configPath, "--context-length", "32",
            "--batch-size", "20", "--lr", "2e-3", "--wd", "0.001", "--seed", "3", "--max-steps", "20", "--warmup", "5",
            "--save-step-frequency", "5", "--threads", "1", "--logs", logs.path, "--name", "run",
        ]
        _ = try cnclip(train)
        let folder = logs.appendingPathComponent("run/checkpoints")
        func bytes(_ name: String) throws -> Data { try Data(contentsOf: folder.appendingPathComponent(name)) }
        let finished = try ["epoch1.pt", "epoch2.pt", "epoch_2_20.pt", "epoch_latest.pt"].map { ($0, try bytes($0)) }
        // The state of a kill inside epoch1.pt's save: step 10's pair written, nothing after it.
        let fm = FileManager.default
        for name in ["epoch1.pt", "epoch2.pt", "epoch_2_15.pt", "epoch_2_20.pt", "epoch_latest.pt"] {
            try fm.removeItem(at: folder.appendingPathComponent(name))
        }
        try fm.copyItem(at: folder.appendingPathComponent("epoch_1_10.pt"), to: folder.appendingPathComponent("epoch_latest.pt"))
        let resumed = try cnclip(train)
        XCTAssertTrue(resumed.stderr.contains("@ 10 steps"), resumed.stderr)
        for (name, expected) in finished { XCTAssertEqual(try bytes(name), expected, "\(name) differs from the uninterrupted run's") }
    }
}
