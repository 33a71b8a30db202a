// Resuming and finetuning from checkpoints cn-clip's own training code wrote (`Tests/Fixtures/resume/`, made by
// `scripts/reference/make_resume_fixtures.py`): its `main.py` loop over the fixture LMDB saved `epoch1.pt` (keys
// `module.`-prefixed, BatchNorm `num_batches_tracked` included, learning rates stored as numpy float64), then
// resumed it and trained the second epoch (`after8.safetensors`). Tolerances are the training fixtures' own:
// loss ≤ 1e-5 relative, weights ≤ 1e-4 × max(1, max |expected|).
// `forms/` holds one state dict saved with the optimizer entry in every form (`optimizer.state_dict()`, `{}`,
// None, absent, another model's), with and without the prefix; `forms.json` is what main.py's resume block did
// with each under the four combinations of --reset-data-offset / --reset-optimizer.

import Checkpoints
import ChineseCLIP
import Foundation
import NeuralNet
import Tensors
import TestSupport
import Tokenization
import XCTest

@testable import Training

final class ResumeInteropTests: XCTestCase {
    let resumeFixtures = fixtures.appendingPathComponent("resume")
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-resume-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    struct Expected: Decodable {
        struct FromOurs: Decodable { let accepted: Bool; let losses: [Double] }
        struct Arch: Decodable {
            let losses: [Double]
            let lrs: [Double]
            let from_cnclip_checkpoint: FromOurs?
        }
        let vit: Arch
        let rn: Arch
        func arch(_ name: String) -> Arch { name == "vit" ? vit : rn }
    }

    lazy var expected: Expected = try! JSONDecoder().decode(
        Expected.self, from: Data(contentsOf: resumeFixtures.appendingPathComponent("expected.json")))

    /// The flags the reference script trained with (its `HP`).
    func options(_ name: String, arch: String, _ edit: (inout TrainingOptions) -> Void = { _ in }) -> TrainingOptions {
        var o = TrainingOptions(trainData: trainLMDB)
        o.logs = tmp.path
        o.name = name
        o.batchSize = 4
        o.contextLength = 24
        o.lr = 1e-3
        o.beta1 = 0.9
        o.beta2 = 0.98
        o.eps = 1e-6
        o.wd = 0.2
        o.warmup = 2
        o.maxSteps = 8
        o.seed = 123
        o.logInterval = 1
        o.validEpochInterval = nil
        o.config = "\(arch).json"
        edit(&o)
        return o
    }

    func config(_ file: String) throws -> CLIPConfig {
        try CLIPConfig.load(contentsOf: resumeFixtures.appendingPathComponent(file))
    }

    func trainer(_ o: TrainingOptions, config file: String) throws -> Trainer {
        let t = try Trainer(options: o, config: try config(file), tokenizer: try Tokenizer.bundled())
        t.echoLog = false
        return t
    }

    /// Every tensor of `model` against `file` (keys without `module.`; counters the model does not keep are skipped).
    func assertWeights(_ model: CLIP, equal file: URL, _ label: String, file f: StaticString = #filePath, line: UInt = #line) throws {
        let want = try loadStateDict(file)
        let got = model.stateDict()
        XCTAssertEqual(Set(got.keys), Set(want.keys), "\(label): keys", file: f, line: line)
        for (key, value) in got.sorted(by: { $0.key < $1.key }) {
            guard let w = want[key] else { continue }
            assertClose(value, w.tensor.reshaped(value.shape), tolerance: 1e-4, "\(label): \(key)", file: f, line: line)
        }
    }

    func assertLosses(_ got: [Float], _ want: ArraySlice<Double>, _ label: String, file f: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, "\(label): steps", file: f, line: line)
        for (i, (g, w)) in zip(got, want).enumerated() {
            XCTAssertLessThanOrEqual(
                abs(Double(g) - w), 1e-5 * abs(w), "\(label): loss of step \(want.startIndex + i): \(g), cn-clip \(w)", file: f, line: line)
        }
    }

    // MARK: cn-clip's checkpoint → cnclip train

    /// `epoch1.pt` as cn-clip's main.py saved it resumes here (weights, position, AdamW state with its numpy
    /// learning rates) and the second epoch ends where cn-clip's own resumed run ended.
    func testReferenceCheckpointResumesAsCnClipDoes() throws {
        for arch in ["vit", "rn"] {
            let o = options("resume-\(arch)", arch: arch) { $0.resume = self.resumeFixtures.appendingPathComponent("\(arch)/epoch1.pt").path }
            let t = try trainer(o, config: "\(arch).json")
            let summary = try t.run()
            XCTAssertEqual(summary.steps, 8, arch)
            assertLosses(summary.losses, expected.arch(arch).losses[4...], arch)
            try assertWeights(t.model, equal: resumeFixtures.appendingPathComponent("\(arch)/after8.safetensors"), "\(arch) after 8 steps")
        }
    }

    /// The reverse: `ours-epoch1.pt` is the `epoch1.pt` a `cnclip train` run from `init.pt` wrote; cn-clip's main.py
    /// resumed that very file (`make_resume_fixtures.py --ours`: strict `load_state_dict`, `optimizer.load_state_dict`)
    /// into `ours-after8.safetensors`. Resuming it here continues the same way.
    func testOurCheckpointResumesAsInCnClip() throws {
        for arch in ["vit", "rn"] {
            let from = try XCTUnwrap(expected.arch(arch).from_cnclip_checkpoint, "expected.json lacks phase B (--ours)")
            XCTAssertTrue(from.accepted)
            let o = options("ours-\(arch)", arch: arch) { $0.resume = self.resumeFixtures.appendingPathComponent("\(arch)/ours-epoch1.pt").path }
            let t = try trainer(o, config: "\(arch).json")
            let r = try t.run()
            assertLosses(r.losses, from.losses[...], "\(arch) resumed from our epoch1.pt")
            try assertWeights(t.model, equal: resumeFixtures.appendingPathComponent("\(arch)/ours-after8.safetensors"), "\(arch) resumed from ours")
        }
    }

    /// The file cn-clip read is what our writer writes today: read back and written again, it is the same bytes.
    func testOurWriterStillWritesTheFileCnClipRead() throws {
        for arch in ["vit", "rn"] {
            let original = resumeFixtures.appendingPathComponent("\(arch)/ours-epoch1.pt")
            let snapshot = try readTrainingCheckpoint(from: original)
            // torch.save names the archive's top folder after the file: the file was written as epoch1.pt.
            let again = tmp.appendingPathComponent("\(arch)/epoch1.pt")
            try FileManager.default.createDirectory(at: again.deletingLastPathComponent(), withIntermediateDirectories: true)
            try writeTrainingCheckpoint(snapshot, to: again)
            XCTAssertEqual(try Data(contentsOf: again), try Data(contentsOf: original), "\(arch): our writer's bytes changed since cn-clip read them")
        }
    }

    // MARK: every form of the optimizer entry

    /// main.py's outcome for `file` under the flags, from `forms.json`.
    func referenceOutcome(_ file: String, resetDataOffset: Bool, resetOptimizer: Bool) throws -> String {
        let data = try Data(contentsOf: resumeFixtures.appendingPathComponent("forms.json"))
        let all = try JSONDecoder().decode([String: [String: String]].self, from: data)
        let key = "reset_data_offset=\(resetDataOffset ? "True" : "False"),reset_optimizer=\(resetOptimizer ? "True" : "False")"
        return try XCTUnwrap(all[file]?[key], "\(file) \(key) in forms.json")
    }

    /// The words our refusal must carry for each of main.py's failures: the reference's exception and the flag that skips it.
    func phrases(for outcome: String) -> [String] {
        if outcome.hasPrefix("KeyError: 'optimizer'") {
            return ["no optimizer state", "no 'optimizer' entry", "KeyError: 'optimizer'", "--reset-optimizer"]
        }
        if outcome.hasPrefix("KeyError: 'param_groups'") {
            return ["no optimizer state", "'optimizer' entry is empty", "KeyError: 'param_groups'", "--reset-optimizer"]
        }
        if outcome.hasPrefix("AttributeError: 'NoneType'") {
            return ["no optimizer state", "'optimizer' entry is None", "AttributeError", "--reset-optimizer"]
        }
        if outcome.hasPrefix("ValueError: ") {
            return ["belongs to other parameters", String(outcome.dropFirst("ValueError: ".count)), "--reset-optimizer"]
        }
        return [outcome]
    }

    /// Each form × each flag combination: accepted where main.py accepts it (weights, position and optimizer state
    /// as saved), refused where it refuses, with its reason. One deliberate difference: main.py refuses a state dict
    /// without the `module.` prefix whatever the flags (its model is wrapped in DistributedDataParallel, so strict
    /// loading wants `module.` names), while cn-clip's inference scripts strip the prefix when present. One loader
    /// serves every command here, so the bare forms are held to what main.py does with their prefixed twins.
    func testEveryOptimizerFormUnderEveryResetFlag() throws {
        for arch in ["vit", "rn"] {
            for prefix in ["prefix", "bare"] {
                for form in ["real", "empty", "none", "absent", "foreign"] {
                    let file = "\(arch)-\(prefix)-\(form).pt"
                    let path = resumeFixtures.appendingPathComponent("forms/\(file)").path
                    let saved = try loadStateDict(URL(fileURLWithPath: path))
                    for resetDataOffset in [false, true] {
                        for resetOptimizer in [false, true] {
                            let label = "\(file) reset_data_offset=\(resetDataOffset) reset_optimizer=\(resetOptimizer)"
                            var want = try referenceOutcome(file, resetDataOffset: resetDataOffset, resetOptimizer: resetOptimizer)
                            if prefix == "bare" {
                                XCTAssertTrue(
                                    want.hasPrefix("RuntimeError: Error(s) in loading state_dict for DistributedDataParallel"), "\(label): \(want)")
                                want = try referenceOutcome(
                                    "\(arch)-prefix-\(form).pt", resetDataOffset: resetDataOffset, resetOptimizer: resetOptimizer)
                            }
                            let o = options("forms", arch: arch) {
                                $0.resume = path
                                $0.resetDataOffset = resetDataOffset
                                $0.resetOptimizer = resetOptimizer
                            }
                            let t = try trainer(o, config: "\(arch)-forms.json")
                            let optimizer = AdamW(
                                groups: AdamW.referenceGroups(t.model, weightDecay: 0.2, learningRate: 1e-3), betas: (0.9, 0.98), eps: 1e-6)
                            do {
                                let point = try t.resume(
                                    from: path, optimizer: optimizer, stepsPerEpoch: 4, log: try TrainingLogger(path: nil, echo: false))
                                XCTAssertEqual(want, "accepted", "\(label): accepted here, main.py: \(want)")
                                for (key, value) in t.model.stateDict() {
                                    XCTAssertEqual(value.scalars, try saved.tensor(key).scalars, "\(label): \(key)")
                                }
                                // epoch 2 @ 7 steps: 3 steps into the second epoch of 4 steps.
                                XCTAssertEqual(point, resetDataOffset ? .init() : .init(epoch: 1, stepInEpoch: 3, steps: 7), label)
                                let stepped = optimizer.stateDict().state.values.map(\.step)
                                XCTAssertEqual(stepped.isEmpty, resetOptimizer, "\(label): optimizer state restored?")
                            } catch let e as TrainingError {
                                XCTAssertNotEqual(want, "accepted", "\(label): refused here (\(e)), accepted by main.py")
                                let message = e.description
                                XCTAssertTrue(message.hasPrefix(path), "\(label): the message names the file: \(message)")
                                for p in phrases(for: want) { XCTAssertTrue(message.contains(p), "\(label): '\(p)' missing from: \(message)") }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A file of weights only (safetensors, a Hugging Face directory, a bare state dict) finetunes with both reset
    /// flags; without them the error says which flag the missing entry needs.
    func testWeightsOnlyFilesNeedTheResetFlags() throws {
        let hf = fixtures.appendingPathComponent("models/vit-tiny.hf.safetensors").path
        let modelConfig = fixtures.appendingPathComponent("models/vit-tiny.json")
        func attempt(resetDataOffset: Bool, resetOptimizer: Bool) throws -> String? {
            var o = options("weights-only", arch: "vit") {
                $0.resume = hf
                $0.resetDataOffset = resetDataOffset
                $0.resetOptimizer = resetOptimizer
            }
            o.config = "vit-tiny.json"
            let t = try Trainer(options: o, config: try CLIPConfig.load(contentsOf: modelConfig), tokenizer: try Tokenizer.bundled())
            let optimizer = AdamW(groups: AdamW.referenceGroups(t.model, weightDecay: 0.2, learningRate: 1e-3))
            do {
                _ = try t.resume(from: hf, optimizer: optimizer, stepsPerEpoch: 4, log: try TrainingLogger(path: nil, echo: false))
                let reference = try loadStateDict(URL(fileURLWithPath: hf))
                for (key, value) in t.model.stateDict() { XCTAssertEqual(value.scalars, try reference.tensor(key).scalars, key) }
                return nil
            } catch let e as TrainingError { return e.description }
        }
        XCTAssertNil(try attempt(resetDataOffset: true, resetOptimizer: true))
        let noOffset = try XCTUnwrap(try attempt(resetDataOffset: false, resetOptimizer: true))
        XCTAssertTrue(noOffset.contains("holds weights only") && noOffset.contains("--reset-data-offset"), noOffset)
        let noOptimizer = try XCTUnwrap(try attempt(resetDataOffset: true, resetOptimizer: false))
        XCTAssertTrue(noOptimizer.contains("no optimizer state") && noOptimizer.contains("--reset-optimizer"), noOptimizer)
    }

    /// Resuming takes the optimizer's saved settings, as `optimizer.load_state_dict` does: a different --wd on the
    /// command line changes nothing in a resumed run (the schedule still sets the learning rate).
    func testResumedOptimizerKeepsTheCheckpointsSettings() throws {
        let o = options("settings", arch: "vit") {
            $0.resume = self.resumeFixtures.appendingPathComponent("vit/epoch1.pt").path
            $0.wd = 0.5
            $0.beta2 = 0.999
        }
        let t = try trainer(o, config: "vit.json")
        let optimizer = AdamW(groups: AdamW.referenceGroups(t.model, weightDecay: 0.5, learningRate: 1e-3), betas: (0.9, 0.999), eps: 1e-8)
        _ = try t.resume(from: o.resume!, optimizer: optimizer, stepsPerEpoch: 4, log: try TrainingLogger(path: nil, echo: false))
        XCTAssertEqual(optimizer.groups.map(\.weightDecay), [0, 0.2])
        XCTAssertEqual(optimizer.betas.0, 0.9)
        XCTAssertEqual(optimizer.betas.1, 0.98)
        XCTAssertEqual(optimizer.eps, 1e-6)
        XCTAssertEqual(optimizer.groups[0].learningRate, expected.vit.lrs[3], accuracy: 1e-15, "the numpy float64 lr of step 3")
    }
}
