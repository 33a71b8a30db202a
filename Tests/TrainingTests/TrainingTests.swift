// Training on the fixture LMDB (15 training pairs, 8 validation pairs) with vit-tiny-sized models: data order
// against torch's randperm, the loop's outputs against the reference's formats, checkpoints, resume, bad input.

import ChineseCLIP
import Foundation
import NeuralNet
import Tensors
import Tokenization
import XCTest

@testable import Training

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")
let trainLMDB = fixtures.appendingPathComponent("dataset/lmdb/train").path
let validLMDB = fixtures.appendingPathComponent("dataset/lmdb/valid").path

final class TrainingTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// vit-tiny, optionally with BERT dropout (so resume must reproduce the masks too).
    func config(dropout: Double = 0) throws -> CLIPConfig {
        var c = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        c.textHiddenDropoutProb = dropout
        c.textAttentionProbsDropoutProb = dropout
        return c
    }

    func options(_ name: String, _ edit: (inout TrainingOptions) -> Void = { _ in }) -> TrainingOptions {
        var o = TrainingOptions(trainData: trainLMDB)
        o.logs = tmp.path
        o.name = name
        o.batchSize = 4
        o.numWorkers = 2
        o.lr = 1e-3
        o.warmup = 2
        o.logInterval = 1
        o.validEpochInterval = nil
        o.maxSteps = 6
        o.config = "vit-tiny.json"
        edit(&o)
        return o
    }

    func train(_ o: TrainingOptions, dropout: Double = 0, halt: Int? = nil) throws -> (Trainer, TrainingSummary) {
        let t = try Trainer(options: o, config: try config(dropout: dropout), tokenizer: try Tokenizer.bundled())
        t.echoLog = false
        t.haltAfterStep = halt
        return (t, try t.run())
    }

    // MARK: data order

    func testRandpermMatchesTorch() {
        // torch.randperm(n, generator=torch.Generator().manual_seed(s)).tolist() from the reference's torch.
        XCTAssertEqual(torchRandperm(10, seed: 123), [2, 0, 8, 1, 3, 7, 4, 9, 5, 6])
        XCTAssertEqual(torchRandperm(13, seed: 124), [9, 0, 3, 8, 6, 4, 2, 7, 12, 1, 5, 10, 11])
        XCTAssertEqual(Array(torchRandperm(1000, seed: 123).prefix(8)), [382, 974, 946, 31, 512, 42, 918, 564])
    }

    func testEpochOrderIsSeededPerEpochAndPadded() throws {
        let ds = try LMDBTrainingDataset(path: trainLMDB, split: "train", resolution: 64, contextLength: 24, tokenizer: try Tokenizer.bundled())
        XCTAssertEqual(ds.sampleCount, 15)
        XCTAssertEqual(ds.paddedLength(globalBatchSize: 4), 16)
        XCTAssertEqual(ds.paddedLength(globalBatchSize: 5), 15)
        let e0 = EpochOrder.indices(length: 16, seed: 123, epoch: 0)
        XCTAssertEqual(e0, EpochOrder.indices(length: 16, seed: 123, epoch: 0), "same seed and epoch, same order")
        XCTAssertEqual(e0, torchRandperm(16, seed: 123))
        XCTAssertNotEqual(e0, EpochOrder.indices(length: 16, seed: 123, epoch: 1), "each epoch reshuffles")
        XCTAssertEqual(e0.sorted(), Array(0..<16))
        // Padding wraps around to the first pairs: index 15 is pair 0.
        let wrapped = try ds.sample(at: 15), first = try ds.sample(at: 0)
        XCTAssertEqual(wrapped.tokens, first.tokens)
        XCTAssertEqual(wrapped.image, first.image)
        XCTAssertEqual(first.tokens.count, 24)
        XCTAssertEqual(first.image.count, 3 * 64 * 64)
        // The threaded loader delivers the same batches, in order, as building them one by one.
        let threaded = BatchLoader(dataset: ds, order: e0, batchSize: 4, first: 0, end: 4, workers: 3)
        let inline = BatchLoader(dataset: ds, order: e0, batchSize: 4, first: 1, end: 4, workers: 0)
        var got: [TrainingBatch] = []
        while let b = try threaded.next() { got.append(b) }
        threaded.stop()
        XCTAssertEqual(got.map(\.indices), [Array(e0[0..<4]), Array(e0[4..<8]), Array(e0[8..<12]), Array(e0[12..<16])])
        XCTAssertEqual(try inline.next()?.tokens, got[1].tokens)
        XCTAssertEqual(try inline.next()?.images.scalars, got[2].images.scalars)
    }

    /// With `--use-augment` a sample's image is a function of (seed, epoch, index): the same twice, new each epoch;
    /// the validation split never augments, as the reference.
    func testAugmentIsSeededPerSeedEpochAndIndex() throws {
        let tok = try Tokenizer.bundled()
        let ds = try LMDBTrainingDataset(
            path: trainLMDB, split: "train", resolution: 64, contextLength: 24, tokenizer: tok,
            useAugment: true, seed: 123)
        XCTAssertNotNil(ds.augmentation)
        let a = try ds.sample(at: 3, epoch: 0), again = try ds.sample(at: 3, epoch: 0)
        XCTAssertEqual(a.image, again.image, "same (seed, epoch, index), same tensor")
        XCTAssertEqual(a.image.count, 3 * 64 * 64)
        XCTAssertNotEqual(a.image, try ds.sample(at: 3, epoch: 1).image, "each epoch draws new augmentations")
        XCTAssertEqual(a.tokens, try ds.sample(at: 3, epoch: 1).tokens, "captions are not augmented")
        // The padded copy of a pair (index 15 wraps to pair 0) is augmented on its own, as in the reference.
        XCTAssertNotEqual(try ds.sample(at: 15, epoch: 0).image, try ds.sample(at: 0, epoch: 0).image)
        let reseeded = try LMDBTrainingDataset(
            path: trainLMDB, split: "train", resolution: 64, contextLength: 24, tokenizer: tok,
            useAugment: true, seed: 124)
        XCTAssertNotEqual(a.image, try reseeded.sample(at: 3, epoch: 0).image, "the seed changes the augmentations")
        let plain = try LMDBTrainingDataset(path: trainLMDB, split: "train", resolution: 64, contextLength: 24, tokenizer: tok)
        XCTAssertNotEqual(a.image, try plain.sample(at: 3).image)
        XCTAssertEqual(try plain.sample(at: 3, epoch: 0).image, try plain.sample(at: 3, epoch: 5).image, "no augmentation: no epoch effect")
        let val = try LMDBTrainingDataset(
            path: validLMDB, split: "val", resolution: 64, contextLength: 24, tokenizer: tok,
            useAugment: true, seed: 123)
        XCTAssertNil(val.augmentation, "the reference augments the train split only")
        // Distinct (epoch, index) pairs get distinct generators.
        var seen = Set<UInt64>()
        for e in 0..<8 { for i in 0..<64 { var g = LMDBTrainingDataset.augmentationGenerator(seed: 123, epoch: e, index: i); seen.insert(g.next()) } }
        XCTAssertEqual(seen.count, 8 * 64)
        // Threads do not change what a batch holds.
        let order = EpochOrder.indices(length: 16, seed: 123, epoch: 2)
        let threaded = BatchLoader(dataset: ds, order: order, batchSize: 4, first: 0, end: 4, workers: 3, epoch: 2)
        var got: [TrainingBatch] = []
        while let b = try threaded.next() { got.append(b) }
        threaded.stop()
        let inline = BatchLoader(dataset: ds, order: order, batchSize: 4, first: 3, end: 4, workers: 0, epoch: 2)
        XCTAssertEqual(try inline.next()?.images.scalars, got[3].images.scalars)
    }

    // MARK: options

    func testPerModelDefaults() throws {
        XCTAssertEqual(TrainingOptions.defaultOptimizerParameters(visionModel: "ViT-B-16")?.beta2, 0.98)
        XCTAssertEqual(TrainingOptions.defaultOptimizerParameters(visionModel: "ViT-B-16")?.eps, 1e-6)
        XCTAssertEqual(TrainingOptions.defaultOptimizerParameters(visionModel: "ViT-L-14")?.lr, 4e-4)
        XCTAssertEqual(TrainingOptions.defaultOptimizerParameters(visionModel: "RN50")?.beta2, 0.999)
        XCTAssertEqual(TrainingOptions.defaultOptimizerParameters(visionModel: "RN50")?.eps, 1e-8)
        var o = TrainingOptions(trainData: "x")
        o.beta2 = 0.9
        let r = try o.resolvedOptimizerParameters()
        XCTAssertEqual(r.lr, 5e-4); XCTAssertEqual(r.beta1, 0.9); XCTAssertEqual(r.beta2, 0.9); XCTAssertEqual(r.eps, 1e-6)
        XCTAssertEqual(TrainingLogFormat.pythonFloat(0.0005), "0.0005")
        XCTAssertEqual(TrainingLogFormat.pythonFloat(1e-06), "1e-06")
        XCTAssertEqual(TrainingLogFormat.pythonFloat(0.2), "0.2")
        XCTAssertEqual(TrainingLogFormat.pythonFloat(0.0), "0.0")
        XCTAssertEqual(TrainingLogFormat.join("./logs/", "train_clip", "out_x.log"), "./logs/train_clip/out_x.log")
    }

    // MARK: training

    func testLossFallsAndGroupsAndSchedule() throws {
        let o = options("fall") {
            $0.maxSteps = 40; $0.batchSize = 5; $0.logs = nil; $0.wd = 0.1; $0.lr = 3e-3
        }
        let (t, s) = try train(o)
        XCTAssertEqual(s.losses.count, 40)
        let first = s.losses.prefix(3).reduce(0, +) / 3, last = s.losses.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.85 * first, "loss should fall on 15 pairs: \(s.losses)")
        let scale = t.model.logitScale.value.data[0]
        XCTAssertTrue(scale >= 0 && scale <= 4.6052)
        XCTAssertNil(s.logPath)
    }

    func testFreezeVisionLeavesVisualUntouched() throws {
        let o = options("freeze") {
            $0.maxSteps = 2; $0.freezeVision = true; $0.logs = nil
        }
        let before = try Trainer(options: o, config: try config(), tokenizer: try Tokenizer.bundled()).model.stateDict()
        let (t, _) = try train(o)
        let after = t.model.stateDict()
        for (k, v) in after where k.hasPrefix("visual.") { XCTAssertEqual(v.scalars, before[k]!.scalars, k) }
        XCTAssertNotEqual(after["bert.embeddings.word_embeddings.weight"]!.scalars, before["bert.embeddings.word_embeddings.weight"]!.scalars)
    }

    func testAccumFreqTrains() throws {
        let o = options("accum") {
            $0.maxSteps = 3; $0.accumFreq = 2; $0.logs = nil; $0.reportTrainingBatchAcc = true
        }
        let (_, s) = try train(o, dropout: 0.1)
        XCTAssertEqual(s.losses.count, 3)
        XCTAssertTrue(s.losses.allSatisfy(\.isFinite))
    }

    /// `--grad-checkpointing` recomputes blocks in the backward pass with the same dropout masks: the weights
    /// after a few steps are those of a run without it (up to the order in which a block input's gradients add up).
    func testGradCheckpointingTrainsTheSameWeights() throws {
        let plain = try train(
            options("plain") {
                $0.maxSteps = 3; $0.logs = nil
            }, dropout: 0.1
        ).0.model.stateDict()
        let (t, _) = try train(
            options("ckpt") {
                $0.maxSteps = 3; $0.logs = nil; $0.gradCheckpointing = true
            }, dropout: 0.1)
        XCTAssertTrue((t.model.visual as! VisualTransformer).gradientCheckpointing && t.model.bert.gradientCheckpointing)
        for (key, v) in t.model.stateDict() {
            let expected = plain[key]!.scalars
            let worst = zip(v.scalars, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(key): first values \(Array(v.scalars.prefix(4))) vs \(Array(expected.prefix(4)))")
        }
    }

    /// FLIP (`--mask-ratio`): in training each image keeps its class token and int((L-1)·(1-ratio)) distinct patch
    /// tokens; evaluation keeps all; the masks are reseeded per step, so kill and resume stays exact.
    func testMaskRatio() throws {
        let masking = PatchMasking()
        masking.ratio = 0.75
        let tokens = Variable(Tensor(shape: [3, 17, 2], scalars: (0..<102).map { Float($0 / 2) }))  // row r of item i holds 17i + r
        XCTAssertEqual(masking(tokens).shape, [3, 17, 2], "evaluation mode keeps every token")
        masking.train()
        let kept = masking(tokens).value
        XCTAssertEqual(kept.shape, [3, 5, 2])  // int(16 · 0.25) = 4 patches + the class token
        for i in 0..<3 {
            let rows = (0..<5).map { Int(kept.data[(i * 5 + $0) * 2]) - 17 * i }
            XCTAssertEqual(rows[0], 0, "the class token comes first")
            XCTAssertEqual(Set(rows.dropFirst()).count, 4)
            XCTAssertTrue(rows.dropFirst().allSatisfy { (1...16).contains($0) }, "\(rows)")
        }

        let o = options("flip") {
            $0.maxSteps = 5; $0.saveStepFrequency = 1; $0.maskRatio = 0.5
        }
        let (trainer, summary) = try train(o)
        let straight = trainer.model.stateDict()
        let params = try String(contentsOfFile: try XCTUnwrap(summary.paramsPath), encoding: .utf8)
        XCTAssertTrue(params.contains("mask_ratio: 0.5\n"), params)
        let resumedOptions = options("flip2") {
            $0.maxSteps = 5; $0.saveStepFrequency = 1; $0.maskRatio = 0.5
        }
        _ = try train(resumedOptions, halt: 2)
        let resumed = try train(resumedOptions).0.model.stateDict()
        let unmasked = try train(
            options("noflip") {
                $0.maxSteps = 5; $0.logs = nil
            }
        ).0.model.stateDict()
        for (key, v) in straight { XCTAssertEqual(resumed[key]!.scalars, v.scalars, "\(key) differs after resume") }
        XCTAssertNotEqual(unmasked["visual.proj"]!.scalars, straight["visual.proj"]!.scalars, "masking changes training")
    }

    func testLogAndParamsFormats() throws {
        let o = options("fmt") {
            $0.maxSteps = 4; $0.valData = validLMDB; $0.validBatchSize = 4; $0.validStepInterval = 2
            $0.reportTrainingBatchAcc = true; $0.logInterval = 2
        }
        let (_, s) = try train(o)
        let log = try String(contentsOfFile: try XCTUnwrap(s.logPath), encoding: .utf8)
        let lines = log.split(separator: "\n").map(String.init)
        let prefix = #"^\d{4}-\d\d-\d\d,\d\d:\d\d:\d\d \| INFO \| Rank 0 \| "#
        func matches(_ pattern: String) -> Int {
            lines.filter { $0.range(of: prefix + pattern, options: .regularExpression) != nil }.count
        }
        // f"Global Steps: {step + 1}/{args.max_steps} | Train Epoch: {epoch + 1} [{num_samples}/{samples_per_epoch} ({percent_complete:.0f}%)] | Loss: {:.6f} | Image2Text Acc: {:.2f} | Text2Image Acc: {:.2f} | Data Time: {:.3f}s | Batch Time: {:.3f}s | LR: {:5f} | logit_scale: {:.3f} | Global Batch Size: {}"
        XCTAssertEqual(
            matches(
                #"Global Steps: 2/4 \| Train Epoch: 1 \[8/16 \(50%\)\] \| Loss: \d+\.\d{6} \| Image2Text Acc: \d+\.\d\d \| Text2Image Acc: \d+\.\d\d \| Data Time: \d+\.\d{3}s \| Batch Time: \d+\.\d{3}s \| LR: 0\.\d{6} \| logit_scale: \d\.\d{3} \| Global Batch Size: 4$"#
            ), 1, log)
        XCTAssertEqual(matches(#"Global Steps: 4/4 \| Train Epoch: 1 \[16/16 \(100%\)\]"#), 1, log)
        XCTAssertEqual(matches(#"Begin to eval on validation set \(epoch 1 @ 2 steps\)\.\.\.$"#), 1, log)
        XCTAssertEqual(
            matches(
                #"Validation Result \(epoch 1 @ 4 steps\) \| Valid Loss: \d+\.\d{6} \| Image2Text Acc: \d+\.\d\d \| Text2Image Acc: \d+\.\d\d \| logit_scale: \d\.\d{3} \| Valid Batch Size: 4$"#
            ), 1, log)
        XCTAssertEqual(matches(#"train LMDB file contains 9 images and 15 pairs\.$"#), 1, log)
        XCTAssertEqual(matches(#"Saved checkpoint .*/fmt/checkpoints/epoch1\.pt \(epoch 1 @ 4 steps\) \(writing took [0-9.e-]+ seconds\)$"#), 1, log)
        XCTAssertEqual(matches(#"  lr: 0\.001$"#), 1)
        XCTAssertEqual(s.validations.count, 2)
        // Near ln 4 for batches of 4 at the start of training (a dangling read once gave 1e-5 here).
        for v in s.validations { XCTAssertTrue((1.0...1.8).contains(v.loss) && (0...1).contains(v.imageToTextAccuracy), "\(v)") }
        let params = try String(contentsOfFile: try XCTUnwrap(s.paramsPath), encoding: .utf8)
        let plines = params.split(separator: "\n").map(String.init)
        XCTAssertEqual(plines, plines.sorted(), "sorted by name")
        for expected in [
            "accum_freq: 1", "batch_size: 4", "beta1: 0.9", "beta2: 0.98", "eps: 1e-06", "lr: 0.001", "max_epochs: 1",
            "max_steps: 4", "name: fmt", "resume: None", "seed: 123", "wd: 0.2", "warmup: 2", "valid_step_interval: 2",
            "valid_epoch_interval: None", "vision_model: ViT-B-16", "world_size: 1", "context_length: 52",
            "report_training_batch_acc: True", "log_path: \(tmp.path)/fmt/\(URL(fileURLWithPath: s.logPath!).lastPathComponent)",
        ] {
            XCTAssertTrue(plines.contains(expected), "params file lacks '\(expected)':\n\(params)")
        }
        XCTAssertTrue(
            URL(fileURLWithPath: s.paramsPath!).lastPathComponent.range(of: #"^params_\d{4}(-\d\d){5}\.txt$"#, options: .regularExpression) != nil)
    }

    func testCheckpointCadenceAndNames() throws {
        let o = options("cadence") {
            $0.maxSteps = 6; $0.saveStepFrequency = 2
        }
        let (_, s) = try train(o)
        let names = s.checkpoints.map { URL(fileURLWithPath: $0).lastPathComponent }
        XCTAssertEqual(
            names,
            [
                "epoch_1_2.pt", "epoch_latest.pt", "epoch_1_4.pt", "epoch_latest.pt", "epoch1.pt", "epoch_latest.pt",
                "epoch_2_6.pt", "epoch_latest.pt", "epoch2.pt", "epoch_latest.pt",
            ])
        let latest = try readTrainingCheckpoint(from: URL(fileURLWithPath: s.checkpoints.last!))
        XCTAssertEqual(latest.epoch, 2); XCTAssertEqual(latest.step, 6); XCTAssertEqual(latest.name, "cadence")
        let mid = try readTrainingCheckpoint(from: URL(fileURLWithPath: s.checkpoints[0]))
        XCTAssertEqual(mid.epoch, 1); XCTAssertEqual(mid.step, 2)
    }

    func testCheckpointRoundTrip() throws {
        let (t, s) = try train(options("rt") { $0.maxSteps = 2 })
        let snap = try readTrainingCheckpoint(from: URL(fileURLWithPath: s.checkpoints.last!))
        let live = t.model.namedParameters()
        let saved = Dictionary(uniqueKeysWithValues: snap.stateDict)
        XCTAssertEqual(Set(saved.keys), Set(live.map { "module." + $0.0 }))
        for (k, p) in live { XCTAssertEqual(saved["module." + k]?.scalars, p.value.scalars, k) }
        let opt = try XCTUnwrap(snap.optimizer)
        XCTAssertEqual(opt.groups.map(\.weightDecay), [0, 0.2])
        XCTAssertEqual(opt.groups.flatMap(\.parameterIndices), Array(0..<live.filter { !$0.1.isBuffer }.count))
        XCTAssertEqual(opt.state.values.map(\.step).max(), 2)
    }

    /// A run killed after step k and resumed from its latest checkpoint ends with the uninterrupted run's weights, bit for bit.
    func testKillAndResumeIsExact() throws {
        let straight = try train(
            options("straight") {
                $0.maxSteps = 7; $0.saveStepFrequency = 1
            }, dropout: 0.1
        ).0.model.stateDict()
        for k in [3, 4] {  // inside the first epoch, and exactly at its end
            let name = "killed\(k)"
            let o = options(name) {
                $0.maxSteps = 7; $0.saveStepFrequency = 1
            }
            let (_, halted) = try train(o, dropout: 0.1, halt: k)
            XCTAssertTrue(halted.halted)
            // Resumed automatically from {logs}/{name}/checkpoints/epoch_latest.pt, as the reference does.
            let (resumed, s) = try train(o, dropout: 0.1)
            XCTAssertEqual(s.losses.count, 7 - k)
            let final = resumed.model.stateDict()
            for (key, v) in straight { XCTAssertEqual(final[key]!.scalars, v.scalars, "k=\(k): \(key) differs after resume") }
        }
    }

    /// The same with `--use-augment`: the resumed run replays each sample's augmentation, across an epoch boundary.
    func testKillAndResumeWithAugmentIsExact() throws {
        let straight = try train(
            options("aug-straight") {
                $0.maxSteps = 6; $0.useAugment = true
            }
        ).0.model.stateDict()
        let o = options("aug-killed") {
            $0.maxSteps = 6; $0.saveStepFrequency = 1; $0.useAugment = true
        }
        let (_, halted) = try train(o, halt: 3)
        XCTAssertTrue(halted.halted)
        let (resumed, s) = try train(o)
        XCTAssertEqual(s.losses.count, 3)
        let final = resumed.model.stateDict()
        for (key, v) in straight { XCTAssertEqual(final[key]!.scalars, v.scalars, "\(key) differs after resume with --use-augment") }
        let plain = try train(options("aug-plain") { $0.maxSteps = 6 }).0.model.stateDict()
        XCTAssertNotEqual(plain["visual.conv1.weight"]!.scalars, straight["visual.conv1.weight"]!.scalars, "augmentation changes training")
    }

    /// The same with `--accum-freq 2`: a checkpoint inside an epoch resumes at the next group of batches.
    func testKillAndResumeWithAccumFreqIsExact() throws {
        func make(_ name: String) -> TrainingOptions {
            options(name) {
                $0.maxSteps = 4; $0.accumFreq = 2; $0.saveStepFrequency = 1
            }
        }
        let straight = try train(make("accum-straight"), dropout: 0.1).0.model.stateDict()
        XCTAssertTrue(try train(make("accum-killed"), dropout: 0.1, halt: 1).1.halted)
        let (resumed, s) = try train(make("accum-killed"), dropout: 0.1)
        XCTAssertEqual(s.losses.count, 3)
        let final = resumed.model.stateDict()
        for (key, v) in straight { XCTAssertEqual(final[key]!.scalars, v.scalars, "\(key) differs after resume") }
    }

    // MARK: bad input

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func testBadInputsHaveClearMessages() throws {
        let missing = message { _ = try self.train(self.options("m") { $0.trainData = "/nonexistent/lmdb/train" }) }
        XCTAssertTrue(missing.contains("/nonexistent/lmdb/train") && missing.contains("does not exist"), missing)

        let corrupt = tmp.appendingPathComponent("corrupt")
        for sub in ["pairs", "imgs"] {
            let d = corrupt.appendingPathComponent(sub)
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            try Data(repeating: 0x5A, count: 8192).write(to: d.appendingPathComponent("data.mdb"))
        }
        let bad = message { _ = try self.train(self.options("c") { $0.trainData = corrupt.path }) }
        XCTAssertTrue(bad.contains(corrupt.path), bad)

        let big = message { _ = try self.train(self.options("b") { $0.batchSize = 16 }) }
        XCTAssertTrue(big.contains("--batch-size 16") && big.contains("15 pairs"), big)

        let ratio = message { _ = try self.train(self.options("r") { $0.maskRatio = 1 }) }
        XCTAssertTrue(ratio.contains("--mask-ratio must be in [0, 1), got 1.0"), ratio)

        let nan = message {
            _ = try self.train(
                self.options("nan") {
                    $0.lr = .infinity; $0.warmup = 0; $0.saveStepFrequency = 1
                })
        }
        XCTAssertTrue(nan.contains("at step 2") && nan.contains("nan/checkpoints/epoch_latest.pt"), nan)

        // A checkpoint of vit-tiny resumed into rn-tiny.
        let (_, s) = try train(options("arch") { $0.maxSteps = 1 })
        let rn = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/rn-tiny.json"))
        var o = options("arch2") { $0.maxSteps = 1 }
        o.resume = s.checkpoints.last!
        let arch = message {
            let t = try Trainer(options: o, config: rn, tokenizer: try Tokenizer.bundled())
            t.echoLog = false
            _ = try t.run()
        }
        XCTAssertTrue(arch.contains(s.checkpoints.last!) && arch.contains("key '"), arch)
    }
}
