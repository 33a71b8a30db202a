// `cn_clip/training/main.py` + `train.py` on one process or data-parallel over MPI ranks (DataParallel.swift):
// the epoch loop, the step (with `--accum-freq`
// feature caching), the schedule, the logit-scale clamp, freeze-vision, validation, logs and checkpoints.
//
// Resume loses nothing: the data order is a function of (seed, epoch) as in the reference, each `--use-augment`
// augmentation a function of (seed, epoch, sample index), and every dropout layer is reseeded before each forward from (seed, step, pass, layer), so a run resumed from the checkpoint of
// step S replays steps S+1… exactly as the uninterrupted run did. Unlike the reference — which restarts a
// mid-epoch checkpoint at the next epoch — a checkpoint saved inside an epoch resumes at the batch after it.

import Checkpoints
import ChineseCLIP
import Distributed
import Essentials
import Foundation
import NeuralNet
import Tensors
import Tokenization

/// The result of a validation pass (`evaluate()`).
package struct ValidationResult: Equatable {
    /// Mean contrastive loss over the (padded) validation set.
    package var loss: Float
    /// Fraction of images whose best-scoring text in their batch is their own.
    package var imageToTextAccuracy: Float
    /// Fraction of texts whose best-scoring image in their batch is their own.
    package var textToImageAccuracy: Float
}

/// What a finished run did.
package struct TrainingSummary {
    /// Optimiser steps taken in total (those of the resumed checkpoint included).
    package var steps: Int
    /// The loss of every step this run took, in order.
    package var losses: [Float]
    /// Every validation result, in order.
    package var validations: [ValidationResult]
    /// The checkpoint files written, in order.
    package var checkpoints: [String]
    /// The log file, when outputs are on.
    package var logPath: String?
    /// The params file, when outputs are on.
    package var paramsPath: String?
    /// Whether the run stopped at `Trainer.haltAfterStep` (a simulated kill) rather than finishing.
    package var halted: Bool
}

/// Trains a `CLIP` as the reference's `main.py` does.
package final class Trainer {
    /// The run's settings.
    package let options: TrainingOptions
    /// The model being trained.
    package let model: CLIP
    /// Test hook: stop right after this global step (and its step checkpoints), as if the process were killed.
    package var haltAfterStep: Int?
    /// Echo log lines to standard error (the reference's stream handler).
    package var echoLog = true
    let tokenizer: Tokenizer
    /// The ranks of the job (a world of one unless started by `mpirun`).
    let parallel: DataParallel
    let optimizerSettings: (lr: Double, beta1: Double, beta2: Double, eps: Double)

    /// A trainer for `config`, its weights initialised randomly from `options.seed` (resume or finetune with `--resume`).
    /// With a `communicator` of several ranks, each trains on its shard and rank 0 alone writes logs and checkpoints.
    package init(
        options: TrainingOptions, config: CLIPConfig, tokenizer: Tokenizer,
        communicator: Communicator = SingleProcessCommunicator()
    ) throws {
        try options.validate()
        self.options = options
        self.parallel = DataParallel(communicator: communicator, gatherWithGrad: options.gatherWithGrad)
        self.tokenizer = tokenizer
        self.optimizerSettings = try options.resolvedOptimizerParameters()
        model = CLIP(config)
        model.initializeRandomly(seed: UInt64(bitPattern: Int64(options.seed)))
        if let vit = model.visual as? VisualTransformer {
            vit.patchMasking.ratio = Float(options.maskRatio ?? 0)
            vit.gradientCheckpointing = options.gradCheckpointing
        }
        model.bert.gradientCheckpointing = options.gradCheckpointing
    }

    var isResNet: Bool { if case .resnet = model.config.visionLayers { return true } else { return false } }

    /// Training mode, with the ResNet's BatchNorm statistics frozen under `--freeze-vision` (`freeze_vision_bn`).
    func setTrainingMode() {
        model.train()
        if options.freezeVision && isResNet { model.visual.eval() }
    }

    /// Reseeds every randomized module (dropout, patch masking) from (seed, step, pass): the masks of a step
    /// never depend on earlier steps.
    func reseedRandomness(_ randomized: [RandomizedModule], step: Int, pass: Int) {
        var base = SplitMix64(seed: UInt64(bitPattern: Int64(options.seed)) ^ 0xD5A6_1266_F0C9_392C)
        // Ranks draw different masks for their different samples (rank 0's are those of a single process).
        let a = base.next() &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15
        let b = UInt64(pass) &* 0xC2B2_AE3D_27D4_EB4F ^ UInt64(parallel.rank) &* 0xD6E8_FEB8_6659_FD93
        for (k, d) in randomized.enumerated() {
            var g = SplitMix64(seed: a ^ b ^ (UInt64(k) &* 0x1656_67B1_9E37_79F9))
            d.seed(g.next())
        }
    }

    /// Where a resumed run starts: the epoch (0-based), the batch inside it, and the optimiser steps already taken.
    struct ResumePoint: Equatable {
        var epoch = 0, stepInEpoch = 0, steps = 0
    }

    /// main.py's resume block: `path`'s weights into the model (strictly), then its position unless
    /// `--reset-data-offset` and its optimizer state unless `--reset-optimizer`. Throws `TrainingError.checkpoint`.
    func resume(from r: String, optimizer: AdamW, stepsPerEpoch: Int, log: TrainingLogger) throws -> ResumePoint {
        let o = options
        var point = ResumePoint()
        log.info("=> begin to load checkpoint '\(r)'")
        let checkpoint = try ResumeCheckpoint(contentsOf: URL(fileURLWithPath: r))
        do { try model.loadWeights(checkpoint.stateDict) } catch let e as CLIPError {
            var reason = e.description
            if case .checkpoint(_, let why) = e { reason = why }
            throw TrainingError.checkpoint(path: r, reason: "does not fit the model being trained (another architecture?): \(reason)")
        }
        // The optimizer updates the weights in place: they must not stay views of the file's memory map.
        for (_, p) in model.namedParameters() { p.value = p.value.copy() }
        if !o.resetDataOffset {
            let (epoch, step) = try checkpoint.position()
            point.steps = step
            // The epoch in progress when saved; a step inside it resumes there, a finished epoch at the next.
            let inProgress = max(epoch - 1, 0), offset = step - inProgress * stepsPerEpoch
            if offset >= 0 && offset < stepsPerEpoch { point.epoch = inProgress; point.stepInEpoch = offset } else { point.epoch = epoch }
        }
        if !o.resetOptimizer {
            try optimizer.load(checkpoint.optimizerState(), resumingFrom: r)
            log.info("=> optimizer state is restored from the checkpoint")
        }
        let epochText = checkpoint.epoch.map(String.init) ?? "-"
        log.info("=> loaded checkpoint '\(r)' (epoch \(epochText) @ \(point.steps) steps)")
        return point
    }

    /// The datasets and the step arithmetic of a run: padded epoch length, batches and steps per epoch, totals.
    struct Plan {
        let train: LMDBTrainingDataset
        let val: LMDBTrainingDataset?
        /// Samples per epoch after padding to a multiple of the global batch (`pad_dataset`).
        let padded: Int
        /// Batches per epoch on each rank.
        let numBatches: Int
        let stepsPerEpoch: Int
        let maxSteps: Int
        let maxEpochs: Int
    }

    /// Where a run writes (rank 0 only, as the reference's `is_master`), and its log.
    struct Outputs {
        let writes: Bool
        let logPath: String
        let checkpointDir: String
        let paramsPath: String?
        let log: TrainingLogger
        /// The run's TensorBoard curves (`{logs}/{name}/tensorboard/`), rank 0 only.
        let board: TensorBoardWriter?
    }

    /// What changes while a run goes on: its summary and the newest checkpoint written (named when the loss diverges).
    final class Progress {
        var summary: TrainingSummary
        var lastCheckpoint: String?
        init(summary: TrainingSummary, lastCheckpoint: String?) {
            self.summary = summary
            self.lastCheckpoint = lastCheckpoint
        }
    }

    /// Runs the training; throws `TrainingError` for bad data, flags, checkpoints or a diverged loss.
    package func run() throws -> TrainingSummary {
        if let t = options.threads { ComputeThreads.set(t) }
        let plan = try makePlan()
        let (optimizer, schedule) = makeOptimizer(maxSteps: plan.maxSteps)
        let outputs = try prepareOutputs(plan)
        let (start, resumedFrom) = try resumeIfAsked(optimizer: optimizer, stepsPerEpoch: plan.stepsPerEpoch, log: outputs.log)
        // Before the first batch reaches the token embedding (the reference fails there, mid-epoch).
        try model.config.check(vocabulary: tokenizer)
        // DistributedDataParallel starts every rank from rank 0's parameters and buffers.
        try parallel.broadcastFromMain(model.namedParameters().map(\.1))
        let progress = Progress(
            summary: TrainingSummary(
                steps: start.steps, losses: [], validations: [], checkpoints: [],
                logPath: outputs.writes ? outputs.logPath : nil, paramsPath: outputs.paramsPath,
                halted: false),
            lastCheckpoint: resumedFrom)
        try completeInterruptedEpochSave(start, resumedFrom: resumedFrom, plan: plan, optimizer: optimizer, outputs: outputs, progress: progress)
        for epoch in start.epoch..<max(plan.maxEpochs, start.epoch) {
            let firstStep = epoch == start.epoch ? start.stepInEpoch : 0
            guard
                try trainEpoch(
                    epoch, from: firstStep, plan: plan, optimizer: optimizer, schedule: schedule, outputs: outputs,
                    progress: progress)
            else { return progress.summary }
        }
        let r = parallel.statistics
        if r.calls > 0 {
            outputs.log.info(
                String(
                    format: "Gradient all-reduce over %d processes: %.1f ms per step, %.1f MB of gradients per step",
                    parallel.worldSize, 1000 * r.seconds / Double(r.calls), Double(r.floats) * 4 / 1e6 / Double(r.calls)))
        }
        return progress.summary
    }

    /// Opens the datasets and works out the run's length, refusing batch sizes the data cannot fill.
    func makePlan() throws -> Plan {
        let o = options, world = parallel.worldSize
        let resolution = model.config.imageResolution
        let train = try LMDBTrainingDataset(
            path: o.trainData, split: "train", resolution: resolution,
            contextLength: o.contextLength, tokenizer: tokenizer,
            useAugment: o.useAugment, seed: o.seed)
        guard o.batchSize * world <= train.sampleCount else {
            let what = world == 1 ? "--batch-size \(o.batchSize)" : "--batch-size \(o.batchSize) × \(world) processes"
            throw TrainingError.invalidOption("\(what) is larger than the training set (\(train.sampleCount) pairs in \(o.trainData))")
        }
        var val: LMDBTrainingDataset?
        if let v = o.valData {
            let d = try LMDBTrainingDataset(path: v, split: "val", resolution: resolution, contextLength: o.contextLength, tokenizer: tokenizer)
            guard o.validBatchSize * world <= d.sampleCount else {
                throw TrainingError.invalidOption(
                    "--valid-batch-size \(o.validBatchSize) is larger than the validation set (\(d.sampleCount) pairs in \(v))")
            }
            val = d
        }
        let padded = train.paddedLength(globalBatchSize: o.batchSize * world)
        let numBatches = padded / (o.batchSize * world)  // per rank
        let stepsPerEpoch = numBatches / o.accumFreq
        guard stepsPerEpoch >= 1 else {
            throw TrainingError.invalidOption("--accum-freq \(o.accumFreq) exceeds the \(numBatches) batches of an epoch")
        }
        let maxSteps: Int, maxEpochs: Int
        if let m = o.maxSteps {
            maxSteps = m
            maxEpochs = (m * o.accumFreq + numBatches - 1) / numBatches
        } else {
            maxEpochs = o.maxEpochs
            maxSteps = stepsPerEpoch * maxEpochs
        }
        return Plan(
            train: train, val: val, padded: padded, numBatches: numBatches, stepsPerEpoch: stepsPerEpoch,
            maxSteps: maxSteps, maxEpochs: maxEpochs)
    }

    /// main.py's optimiser: `--freeze-vision` applied, AdamW over the two reference groups, the cosine schedule.
    func makeOptimizer(maxSteps: Int) -> (AdamW, CosineSchedule) {
        model.requireGradients()
        if options.freezeVision { for (_, p) in model.visual.trainableParameters() { p.requiresGrad = false } }
        let named = model.trainableParameters().filter { $0.1.requiresGrad }
        let exempt = named.filter { AdamW.isExemptFromWeightDecay($0.0) }, decayed = named.filter { !AdamW.isExemptFromWeightDecay($0.0) }
        let s = optimizerSettings
        let optimizer = AdamW(
            groups: [
                ParameterGroup(parameters: exempt, weightDecay: 0, learningRate: s.lr),
                ParameterGroup(parameters: decayed, weightDecay: options.wd, learningRate: s.lr),
            ],
            betas: (s.beta1, s.beta2), eps: s.eps)
        return (optimizer, CosineSchedule(baseLearningRate: s.lr, warmupSteps: options.warmup, totalSteps: maxSteps))
    }

    /// The checkpoint folder, the log and the params file, and the log's opening lines, as the reference writes them.
    func prepareOutputs(_ plan: Plan) throws -> Outputs {
        let o = options
        let timeSuffix: String = {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = "yyyy-MM-dd-HH-mm-ss"
            return f.string(from: Date())
        }()
        let writes = o.writesOutputs && parallel.rank == 0
        let logsDir = o.logs ?? "None"
        let logPath = TrainingLogFormat.join(logsDir, o.name, "out_\(timeSuffix).log")
        let checkpointDir = TrainingLogFormat.join(logsDir, o.name, "checkpoints")
        if writes {
            do { try FileManager.default.createDirectory(atPath: checkpointDir, withIntermediateDirectories: true) } catch {
                throw FileError(path: checkpointDir, reason: "cannot create the checkpoint directory: \(error.localizedDescription)")
            }
            // A killed run's temporaries go now: a resumed run that had finished writes nothing that would clean them.
            AtomicOutput.removeStaleTemporaries(inFolder: checkpointDir)
            AtomicOutput.removeStaleTemporaries(inFolder: TrainingLogFormat.join(logsDir, o.name))
        }
        let log = try TrainingLogger(path: writes ? logPath : nil, echo: echoLog && parallel.rank == 0)
        if o.gradCheckpointing { log.info("Grad-checkpointing activated.") }
        log.info("train LMDB file contains \(plan.train.imageCount) images and \(plan.train.sampleCount) pairs.")
        if let val = plan.val { log.info("val LMDB file contains \(val.imageCount) images and \(val.sampleCount) pairs.") }
        let s = optimizerSettings
        let params = paramsValues(
            lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, maxSteps: plan.maxSteps,
            maxEpochs: plan.maxEpochs, logPath: logPath, checkpointDir: checkpointDir)
        var paramsPath: String?
        if writes {
            let path = TrainingLogFormat.join(logsDir, o.name, "params_\(timeSuffix).txt")
            try atomicWrite(TrainingLogFormat.paramsFile(params), to: path)
            paramsPath = path
        }
        log.info("Params:")
        for (k, v) in params.sorted(by: { $0.0 < $1.0 }) { log.info("  \(k): \(v)") }
        log.info("Use CPU (\(ComputeThreads.count) threads) for training")
        if (o.maskRatio ?? 0) > 0 && isResNet {
            log.info(
                "Note: mask_ratio > 0 (FLIP strategy) is currently only implemented for VisualTransformer. "
                    + "It will not function for ResNet backbone.")
        }
        let board = writes ? try TensorBoardWriter(folder: TrainingLogFormat.join(logsDir, o.name, "tensorboard")) : nil
        return Outputs(
            writes: writes, logPath: logPath, checkpointDir: checkpointDir, paramsPath: paramsPath, log: log, board: board)
    }

    /// `--resume`, or else an existing `epoch_latest.pt` (as the reference); rank 0 decides for every rank.
    /// Returns where to start and the checkpoint resumed from.
    func resumeIfAsked(optimizer: AdamW, stepsPerEpoch: Int, log: TrainingLogger) throws -> (ResumePoint, String?) {
        var resume = options.resume
        let latest = TrainingLogFormat.join(TrainingLogFormat.join(options.logs ?? "None", options.name, "checkpoints"), "epoch_latest.pt")
        if resume == nil && options.writesOutputs && FileManager.default.fileExists(atPath: latest) { resume = latest }
        if parallel.worldSize > 1 {
            // Rank 0 decides (another host may not see the file); every rank then reads the same checkpoint.
            let decided = try parallel.communicator.broadcast(Array((resume ?? "").utf8), root: 0)
            resume = decided.isEmpty ? nil : String(decoding: decided, as: UTF8.self)
        }
        guard let r = resume else { return (ResumePoint(), nil) }
        guard FileManager.default.fileExists(atPath: r) else {
            log.info("=> no checkpoint found at '\(r)'")
            return (ResumePoint(), nil)
        }
        return (try self.resume(from: r, optimizer: optimizer, stepsPerEpoch: stepsPerEpoch, log: log), r)
    }

    /// Trains epoch `epoch` from its step `firstStep` (train.py's `train`), then validates and saves as the reference
    /// does at an epoch's end. Returns false when the run was halted (`haltAfterStep`).
    func trainEpoch(
        _ epoch: Int, from firstStep: Int, plan: Plan, optimizer: AdamW, schedule: CosineSchedule, outputs: Outputs,
        progress: Progress
    ) throws -> Bool {
        let o = options, world = parallel.worldSize
        let randomized = model.namedModules().compactMap { $0.1 as? RandomizedModule }
        setTrainingMode()
        let order = parallel.shard(EpochOrder.indices(length: plan.padded, seed: o.seed, epoch: epoch))
        let lastStep = min(plan.stepsPerEpoch, max(plan.maxSteps - plan.stepsPerEpoch * epoch, firstStep))
        let loader = BatchLoader(
            dataset: plan.train, order: order, batchSize: o.batchSize, first: firstStep * o.accumFreq,
            end: lastStep * o.accumFreq, workers: o.numWorkers, epoch: epoch)
        defer { loader.stop() }
        let stepsBefore = progress.summary.steps
        var trained = 0
        var end = Date()
        for local in firstStep..<lastStep {
            let step = plan.stepsPerEpoch * epoch + local
            let lr = schedule.learningRate(at: step)
            optimizer.setLearningRate(lr)
            var batches: [TrainingBatch] = []
            for _ in 0..<o.accumFreq { if let b = try loader.next() { batches.append(b) } }
            let dataTime = Date().timeIntervalSince(end)
            let (loss, acc) = try trainStep(
                batches, step: step, optimizer: optimizer, randomized: randomized,
                lastCheckpoint: progress.lastCheckpoint)
            let batchTime = Date().timeIntervalSince(end)
            end = Date()
            trained += 1
            progress.summary.losses.append(loss)
            progress.summary.steps = stepsBefore + trained
            // Every step, accuracies in percent as the log line prints them (they are computed at every step).
            try outputs.board?.scalars(
                [
                    ("train/loss", loss), ("train/image_to_text_acc", Float(acc.i2t * 100)),
                    ("train/text_to_image_acc", Float(acc.t2i * 100)), ("train/lr", Float(lr)),
                    ("train/logit_scale", model.logitScale.value.data[0]),
                ], step: step + 1)
            if (step + 1) % o.logInterval == 0 {
                let batchSize = o.batchSize * o.accumFreq * world
                outputs.log.info(
                    TrainingLogFormat.trainingLine(
                        step: step + 1, maxSteps: plan.maxSteps, epoch: epoch + 1, samples: (local + 1) * batchSize,
                        samplesPerEpoch: plan.padded, percent: 100.0 * Double(local + 1) / Double(plan.stepsPerEpoch), loss: loss,
                        accuracy: o.reportTrainingBatchAcc ? acc : nil, dataTime: dataTime, batchTime: batchTime, lr: lr,
                        logitScale: model.logitScale.value.data[0], globalBatchSize: batchSize))
            }
            if o.valData != nil, let every = o.validStepInterval, (step + 1) % every == 0 {
                try validate(plan, epoch: epoch, steps: step + 1, outputs: outputs, progress: progress)
                setTrainingMode()
            }
            if outputs.writes && o.saveStepFrequency > 0 && (step + 1) % o.saveStepFrequency == 0 {
                for file in ["epoch_\(epoch + 1)_\(step + 1).pt", "epoch_latest.pt"] {
                    try save(epoch: epoch + 1, step: step + 1, file: file, optimizer: optimizer, outputs: outputs, progress: progress)
                }
            }
            if let h = haltAfterStep, step + 1 >= h {
                progress.summary.halted = true
                return false
            }
        }
        progress.summary.steps = stepsBefore + trained
        try finishEpoch(epoch, from: firstStep, trained: trained, plan: plan, optimizer: optimizer, outputs: outputs, progress: progress)
        return true
    }

    /// The end of an epoch, as main.py ends one: the max_steps notice, epoch validation, the epoch checkpoints.
    func finishEpoch(
        _ epoch: Int, from firstStep: Int, trained: Int, plan: Plan, optimizer: AdamW, outputs: Outputs,
        progress: Progress
    ) throws {
        let o = options
        // The reference notices max_steps at the next batch of the epoch, if there is one.
        let stopBatch = max(0, (plan.maxSteps - plan.stepsPerEpoch * epoch) * o.accumFreq)
        if stopBatch < plan.numBatches && stopBatch >= firstStep * o.accumFreq {
            outputs.log.info(
                "Stopping training due to step \(plan.stepsPerEpoch * epoch + stopBatch / o.accumFreq) has reached max_steps \(plan.maxSteps / o.accumFreq)"
            )
        }
        let steps = progress.summary.steps
        if o.valData != nil, let every = o.validEpochInterval, (epoch + 1) % every == 0 {
            try validate(plan, epoch: epoch, steps: steps, outputs: outputs, progress: progress)
        }
        if outputs.writes && trained > 0 {
            if epochCheckpointIsDue(epoch + 1, plan: plan) {
                try save(epoch: epoch + 1, step: steps, file: "epoch\(epoch + 1).pt", optimizer: optimizer, outputs: outputs, progress: progress)
            }
            try save(epoch: epoch + 1, step: steps, file: "epoch_latest.pt", optimizer: optimizer, outputs: outputs, progress: progress)
        }
    }

    /// Whether epoch `number` (from 1) ends with its own `epoch{number}.pt`: the last epoch, and every
    /// `--save-epoch-frequency`-th.
    func epochCheckpointIsDue(_ number: Int, plan: Plan) -> Bool {
        number == plan.maxEpochs || (options.saveEpochFrequency > 0 && number % options.saveEpochFrequency == 0)
    }

    /// A run killed while saving the checkpoints of an epoch's last step can leave `epoch_latest.pt` at that step
    /// without `epoch{N}.pt` (the step's own pair is written first); resuming from it would never write it, since the
    /// epoch is over. Written here from the same state, so its bytes are those the uninterrupted run wrote.
    func completeInterruptedEpochSave(_ start: ResumePoint, resumedFrom: String?, plan: Plan, optimizer: AdamW, outputs: Outputs, progress: Progress)
        throws
    {
        let latest = TrainingLogFormat.join(outputs.checkpointDir, "epoch_latest.pt")
        guard outputs.writes, resumedFrom == latest else { return }
        // The epoch (from 1) that ends where the run resumes: a whole one, or the last, cut by max_steps.
        let number: Int
        if start.stepInEpoch == 0 && start.epoch >= 1 && start.steps == start.epoch * plan.stepsPerEpoch {
            number = start.epoch
        } else if start.stepInEpoch > 0 && start.steps == plan.maxSteps {
            number = start.epoch + 1
        } else {
            return
        }
        let file = "epoch\(number).pt"
        guard epochCheckpointIsDue(number, plan: plan), !FileManager.default.fileExists(atPath: TrainingLogFormat.join(outputs.checkpointDir, file))
        else { return }
        try save(epoch: number, step: start.steps, file: file, optimizer: optimizer, outputs: outputs, progress: progress)
    }

    /// Writes checkpoint `file` as main.py's `torch.save` dict and logs it as the reference does.
    func save(epoch: Int, step: Int, file: String, optimizer: AdamW, outputs: Outputs, progress: Progress) throws {
        let t0 = Date()
        let path = TrainingLogFormat.join(outputs.checkpointDir, file)
        let snap = TrainingSnapshot(
            epoch: epoch, step: step, name: options.name,
            stateDict: model.namedParameters().map { ("module." + $0.0, $0.1.value) },
            optimizer: optimizer.stateDict())
        try writeTrainingCheckpoint(snap, to: URL(fileURLWithPath: path))
        outputs.log.info(TrainingLogFormat.savedLine(path: path, epoch: epoch, steps: step, seconds: Date().timeIntervalSince(t0)))
        progress.summary.checkpoints.append(path)
        progress.lastCheckpoint = path
    }

    /// Evaluates on the validation set and logs the reference's result line.
    func validate(_ plan: Plan, epoch: Int, steps: Int, outputs: Outputs, progress: Progress) throws {
        guard let val = plan.val else { return }
        outputs.log.info("Begin to eval on validation set (epoch \(epoch + 1) @ \(steps) steps)...")
        let r = try evaluate(val, log: outputs.log)
        progress.summary.validations.append(r)
        outputs.log.info(
            TrainingLogFormat.validationLine(
                epoch: epoch + 1, steps: steps, loss: r.loss, i2t: r.imageToTextAccuracy,
                t2i: r.textToImageAccuracy, logitScale: model.logitScale.value.data[0],
                batchSize: options.validBatchSize))
        try outputs.board?.scalars(
            [
                ("val/loss", r.loss), ("val/image_to_text_acc", r.imageToTextAccuracy * 100),
                ("val/text_to_image_acc", r.textToImageAccuracy * 100),
            ], step: steps)
    }

    /// One optimiser step over `batches` (`--accum-freq` of them): the loss of the last backward and the
    /// in-batch accuracies of its logits.
    func trainStep(
        _ batches: [TrainingBatch], step: Int, optimizer: AdamW, randomized: [RandomizedModule],
        lastCheckpoint: String?
    ) throws -> (Float, (i2t: Double, t2i: Double)) {
        func forward(_ b: TrainingBatch) -> (Variable, Variable, Variable) {
            model.forward(images: Variable(b.images), texts: b.tokens, textBatch: b.count)
        }
        func checked(_ loss: Variable) throws -> Float {
            let v = loss.value.data[0]
            guard v.isFinite else { throw TrainingError.nonFiniteLoss(step: step + 1, loss: v, lastCheckpoint: lastCheckpoint) }
            return v
        }
        var lossValue: Float = 0
        var img = Tensor(shape: [0]), txt = Tensor(shape: [0]), scale: Float = 1
        if batches.count == 1 {
            reseedRandomness(randomized, step: step, pass: 0)
            model.zeroGrad()
            let (localImages, localTexts, s) = forward(batches[0])
            let i = parallel.gathered(localImages), t = parallel.gathered(localTexts)
            let loss = CLIP.contrastiveLoss(imageFeatures: i, textFeatures: t, logitScale: s)
            lossValue = try checked(loss)
            loss.backward()
            (img, txt, scale) = (i.value, t.value, s.value.data[0])
        } else {
            // The reference caches every batch's features without gradient, then re-runs each batch with gradient,
            // contrasting it against the cached features of the others, and steps once.
            var cachedImages: [Tensor] = [], cachedTexts: [Tensor] = []
            for (j, b) in batches.enumerated() {
                reseedRandomness(randomized, step: step, pass: 2 * j + 1)
                let (i, t, _) = GradientRecording.withoutRecording { forward(b) }
                cachedImages.append(i.value)
                cachedTexts.append(t.value)
            }
            model.zeroGrad()
            for (j, b) in batches.enumerated() {
                reseedRandomness(randomized, step: step, pass: 2 * j + 2)
                let (i, t, s) = forward(b)
                var imageParts = cachedImages.map { Variable($0) }, textParts = cachedTexts.map { Variable($0) }
                imageParts[j] = i
                textParts[j] = t
                let allImages = parallel.gathered(concatenate(imageParts, axis: 0))
                let allTexts = parallel.gathered(concatenate(textParts, axis: 0))
                let loss = CLIP.contrastiveLoss(imageFeatures: allImages, textFeatures: allTexts, logitScale: s)
                lossValue = try checked(loss)
                loss.backward()
                (img, txt, scale) = (allImages.value, allTexts.value, s.value.data[0])
            }
        }
        try parallel.averageGradients(model.trainableParameters().map(\.1).filter(\.requiresGrad))
        optimizer.step()
        // Note: the reference clamps to 4.6052 = ln(100), as in the original paper.
        let ls = model.logitScale.value.data[0]
        model.logitScale.value = Tensor(shape: model.logitScale.value.shape, repeating: min(max(ls, 0), Float(4.6052)))
        return (lossValue, inBatchAccuracy(images: img, texts: txt, scale: scale))
    }

    /// Fractions of rows of `scale · img @ txt.T` (`[n, n]`) whose argmax (first on ties) is the diagonal, per image and per text.
    func inBatchAccuracy(images: Tensor, texts: Tensor, scale: Float) -> (i2t: Double, t2i: Double) {
        let n = images.shape.first ?? 0
        guard n > 0 else { return (0, 0) }
        let logits = scaled(matmulTransposed(images, texts), by: scale)
        let l = logits.data
        var i2t = 0, t2i = 0
        for r in 0..<n {
            var best = 0
            for c in 1..<max(n, 1) where l[r * n + c] > l[r * n + best] { best = c }
            if best == r { i2t += 1 }
            var bestRow = 0
            for q in 1..<max(n, 1) where l[q * n + r] > l[bestRow * n + r] { bestRow = q }
            if bestRow == r { t2i += 1 }
        }
        return (Double(i2t) / Double(n), Double(t2i) / Double(n))
    }

    /// The reference's `evaluate()`: eval mode, the validation order of epoch 0, fp32 sums of `loss · batch` and
    /// of correct argmaxes, divided by the padded length.
    func evaluate(_ data: LMDBTrainingDataset, log: TrainingLogger) throws -> ValidationResult {
        let o = options
        let requiring = model.trainableParameters().filter { $0.1.requiresGrad }.map(\.1)
        model.eval()
        for p in requiring { p.requiresGrad = false }
        defer {
            for p in requiring { p.requiresGrad = true }
            setTrainingMode()
        }
        let padded = data.paddedLength(globalBatchSize: o.validBatchSize * parallel.worldSize)
        let batches = padded / (o.validBatchSize * parallel.worldSize)
        let loader = BatchLoader(
            dataset: data, order: parallel.shard(EpochOrder.indices(length: padded, seed: o.seed, epoch: 0)),
            batchSize: o.validBatchSize, first: 0, end: batches, workers: o.validNumWorkers)
        defer { loader.stop() }
        var cumulativeLoss: Float = 0, i2t: Float = 0, t2i: Float = 0, elements: Float = 0
        var i = 0
        while let b = try loader.next() {
            let (img, txt, s) = model.forward(images: Variable(b.images), texts: b.tokens, textBatch: b.count)
            // `scalars` copies: `data` of a temporary would point into storage freed at the end of the statement.
            let loss = CLIP.contrastiveLoss(imageFeatures: img, textFeatures: txt, logitScale: s).value.scalars[0]
            let acc = inBatchAccuracy(images: img.value, texts: txt.value, scale: s.value.data[0])
            cumulativeLoss += loss * Float(b.count)
            elements += Float(b.count)
            i2t += Float((acc.i2t * Double(b.count)).rounded())
            t2i += Float((acc.t2i * Double(b.count)).rounded())
            i += 1
            if i % 100 == 0 { log.info("Evaluated \(i)/\(batches) batches...") }
        }
        // The reference's all_reduce of the four sums (exact for one process: Float → Double → Float).
        let totals = try parallel.sum([cumulativeLoss, i2t, t2i, elements].map(Double.init)).map(Float.init)
        return ValidationResult(
            loss: totals[0] / totals[3], imageToTextAccuracy: totals[1] / totals[3],
            textToImageAccuracy: totals[2] / totals[3])
    }

    /// `vars(args)` as the reference's params file lists them, with this run's values (CPU, one process).
    func paramsValues(
        lr: Double, beta1: Double, beta2: Double, eps: Double, maxSteps: Int, maxEpochs: Int,
        logPath: String, checkpointDir: String
    ) -> [(String, String)] {
        typealias F = TrainingLogFormat
        let o = options
        return [
            ("accum_freq", String(o.accumFreq)), ("aggregate", "True"), ("batch_size", String(o.batchSize)),
            ("bert_weight_path", "None"), ("beta1", F.py(beta1)), ("beta2", F.py(beta2)), ("checkpoint_path", checkpointDir),
            ("clip_weight_path", "None"), ("config", F.py(o.config)), ("context_length", String(o.contextLength)), ("debug", "False"),
            ("device", "cpu"), ("distillation", "False"), ("eps", F.py(eps)), ("freeze_vision", F.py(o.freezeVision)),
            ("gather_with_grad", F.py(o.gatherWithGrad)), ("grad_checkpointing", F.py(o.gradCheckpointing)), ("kd_loss_weight", "0.5"),
            ("local_device_rank", "0"),
            ("log_interval", String(o.logInterval)), ("log_level", "20"), ("log_path", logPath), ("logs", F.py(o.logs)),
            ("lr", F.py(lr)), ("mask_ratio", o.maskRatio.map(F.py) ?? "0"), ("max_epochs", String(maxEpochs)), ("max_steps", String(maxSteps)),
            ("name", o.name), ("num_workers", String(o.numWorkers)), ("precision", o.precision), ("rank", String(parallel.rank)),
            ("report_training_batch_acc", F.py(o.reportTrainingBatchAcc)), ("reset_data_offset", F.py(o.resetDataOffset)),
            ("reset_optimizer", F.py(o.resetOptimizer)), ("resume", F.py(o.resume)),
            ("save_epoch_frequency", String(o.saveEpochFrequency)), ("save_step_frequency", String(o.saveStepFrequency)),
            ("seed", String(o.seed)), ("skip_aggregate", "False"), ("skip_scheduler", "False"), ("teacher_model_name", "None"),
            ("text_model", o.textModel), ("threads", String(ComputeThreads.count)), ("train_data", o.trainData),
            ("use_augment", F.py(o.useAugment)), ("use_bn_sync", "False"), ("use_flash_attention", "False"),
            ("val_data", F.py(o.valData)), ("valid_batch_size", String(o.validBatchSize)),
            ("valid_epoch_interval", F.py(o.validEpochInterval)), ("valid_num_workers", String(o.validNumWorkers)),
            ("valid_step_interval", F.py(o.validStepInterval)), ("vision_model", o.visionModel), ("warmup", String(o.warmup)),
            ("wd", F.py(o.wd)), ("world_size", String(parallel.worldSize)),
        ]
    }
}

/// Writes `text` to `path` through the one safe writer: the previous file stays until the new one is whole.
func atomicWrite(_ text: String, to path: String) throws {
    do { try AtomicOutput.write(text, to: path) } catch let e as FileError {
        throw FileError(path: path, reason: e.reason)
    }
}
