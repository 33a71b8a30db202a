import Foundation
import TestSupport
import XCTest

/// The README's finetune command on the built binary, against training checkpoints cn-clip's own training code wrote
/// (`Fixtures/resume/{vit,rn}/epoch1.pt`: `module.` keys, BatchNorm counters, numpy learning rates in the optimizer).
final class FinetuneCLITests: XCTestCase {
    let fixtures = CLITests.fixtures
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-finetune-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func path(_ relative: String) -> String { fixtures.appendingPathComponent(relative).path }

    /// The README's example (`--resume X --reset-data-offset --reset-optimizer`, 3 epochs, lr 5e-5, warmup 100, logs
    /// and name as written) with the fixture dataset and tiny models: `--config` stands for the model flags and the
    /// batch sizes fit its 15 training / 8 validation pairs.
    func readmeFinetune(_ arch: String, name: String = "muge_finetune") -> [String] {
        [
            "train", "--train-data", path("dataset/lmdb/train"), "--val-data", path("dataset/lmdb/valid"),
            "--resume", path("resume/\(arch)/epoch1.pt"), "--reset-data-offset", "--reset-optimizer",
            "--config", path("resume/\(arch).json"),
            "--batch-size", "4", "--valid-batch-size", "4", "--max-epochs", "3", "--lr", "5e-5", "--warmup", "100",
            "--logs", scratch.appendingPathComponent("logs").path, "--name", name,
        ]
    }

    func testReadmeFinetuneExampleRunsOnCnClipCheckpoints() throws {
        for arch in ["vit", "rn"] {
            let r = try runCNCLIP(readmeFinetune(arch, name: "muge_finetune_\(arch)"), timeout: 300)
            XCTAssertEqual(r.status, 0, "\(arch): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("=> loaded checkpoint '\(path("resume/\(arch)/epoch1.pt"))' (epoch 1 @ 0 steps)"), r.stderr)
            XCTAssertFalse(r.stderr.contains("optimizer state is restored"), r.stderr)
            XCTAssertEqual(r.stderr.components(separatedBy: "Validation Result (epoch ").count - 1, 3, r.stderr)
            let checkpoints = scratch.appendingPathComponent("logs/muge_finetune_\(arch)/checkpoints")
            for epoch in 1...3 {
                XCTAssertTrue(
                    FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent("epoch\(epoch).pt").path), "\(arch) epoch\(epoch).pt")
            }
            // The finetuned model serves inference.
            let encoded = try runCNCLIP([
                "encode", "--resume", checkpoints.appendingPathComponent("epoch3.pt").path,
                "--config", path("resume/\(arch).json"), "--text", "一只猫",
            ])
            XCTAssertEqual(encoded.status, 0, encoded.stderr)
        }
    }

    /// Every command reads the same file the same way: encode loads cn-clip's training checkpoint (its optimizer holds
    /// numpy scalars, which the pickle reader must accept without running anything).
    func testEncodeReadsCnClipTrainingCheckpoints() throws {
        for arch in ["vit", "rn"] {
            let r = try runCNCLIP([
                "encode", "--resume", path("resume/\(arch)/epoch1.pt"), "--config", path("resume/\(arch).json"),
                "--text", "你好",
            ])
            XCTAssertEqual(r.status, 0, "\(arch): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("\"feature\""), r.stdout)
        }
    }

    /// Without the reset flags the run continues where cn-clip stopped: epoch 2, step 4, its optimizer state.
    func testResumeWithoutResetFlagsContinues() throws {
        var args = readmeFinetune("vit", name: "continued").filter { $0 != "--reset-data-offset" && $0 != "--reset-optimizer" }
        args += ["--max-steps", "8", "--log-interval", "1"]
        let r = try runCNCLIP(args, timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("=> optimizer state is restored from the checkpoint"), r.stderr)
        XCTAssertTrue(r.stderr.contains("(epoch 1 @ 4 steps)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("Global Steps: 8/8"), r.stderr)
    }

    /// A checkpoint whose optimizer entry is empty (`"optimizer": {}`) needs --reset-optimizer; the message says so
    /// and names the file, and the run writes no checkpoint.
    func testEmptyOptimizerWithoutResetIsAClearError() throws {
        let file = path("resume/forms/rn-prefix-empty.pt")
        let r = try runCNCLIP([
            "train", "--train-data", path("dataset/lmdb/train"), "--resume", file,
            "--config", path("resume/rn-forms.json"), "--batch-size", "4", "--lr", "1e-4",
            "--logs", scratch.appendingPathComponent("logs").path, "--name", "empty",
        ])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(file) && r.stderr.contains("no optimizer state") && r.stderr.contains("--reset-optimizer"), r.stderr)
        let checkpoints = scratch.appendingPathComponent("logs/empty/checkpoints").path
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? [], [])
    }

    /// Training a model whose vocab_size (64) is below the vocabulary's 21128 tokens: a clear error before the first
    /// batch, not a trap in the token embedding (the reference fails there with an IndexError).
    func testAVocabSizeBelowTheVocabularyIsAClearError() throws {
        let r = try runCNCLIP([
            "train", "--train-data", path("dataset/lmdb/train"), "--config", path("resume/rn-forms.json"),
            "--batch-size", "4", "--max-steps", "1", "--logs", scratch.appendingPathComponent("logs").path, "--name", "vocab",
        ])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("21128 tokens") && r.stderr.contains("vocab_size is 64"), r.stderr)
    }
}
