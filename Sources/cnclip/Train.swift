import ArgumentParser
import ChineseCLIP
import Distributed
import Essentials
import Foundation
import Tokenization
import Training

/// `cnclip train`: cn-clip's `training/main.py` on one process — contrastive training/finetuning on an LMDB split.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train or finetune a Chinese-CLIP model on an LMDB dataset, as cn_clip/training/main.py does.",
        discussion: """
            Flags and defaults are the reference's (params.py); lr, betas and eps default per --vision-model. Writes \
            {logs}/{name}/params_{time}.txt, out_{time}.log and checkpoints/epoch{N}.pt, epoch_{E}_{S}.pt \
            (--save-step-frequency) and epoch_latest.pt. Without --resume, an existing {logs}/{name}/checkpoints/\
            epoch_latest.pt is resumed, as the reference does; a checkpoint saved inside an epoch resumes at the next \
            batch, so a killed run ends with the weights of an uninterrupted one. To finetune a released model: \
            --resume ckpt.pt --reset-data-offset --reset-optimizer (any checkpoint encode reads: cn-clip .pt files, \
            safetensors, Hugging Face directories); without the reset flags the checkpoint's epoch, step and AdamW state \
            are restored, as cn-clip's own training checkpoints hold them. --config FILE replaces the presets' architecture. \
            Weights start from a seeded random initialisation. --use-augment applies the reference's timm augmentation \
            to training images (random resized crop of 90-100% area, horizontal flip, AutoAugment 'original'), seeded \
            per (--seed, epoch, sample) so resuming stays exact. --mask-ratio drops that fraction of each training \
            image's patches (FLIP; ViT only); --grad-checkpointing trades time for memory. Under mpirun, each process \
            trains on its share of every batch (data parallel).
            """)

    @Option(name: .customLong("train-data"), help: "The LMDB directory of the training split (holding pairs/ and imgs/).")
    var trainData: String
    @Option(name: .customLong("val-data"), help: "The LMDB directory of the validation split (default: no validation).")
    var valData: String?
    @Option(name: .customLong("num-workers"), help: "Decode threads for training batches.")
    var numWorkers = 4
    @Option(name: .customLong("valid-num-workers"), help: "Decode threads for validation batches.")
    var validNumWorkers = 1
    @Option(name: .customLong("logs"), help: "Where to store logs (\"none\": no logs, no checkpoints).")
    var logs = "./logs/"
    @Option(name: .customLong("name"), help: "The experiment's folder under --logs.")
    var name = "train_clip"
    @Option(name: .customLong("log-interval"), help: "How often (steps) to log loss info.")
    var logInterval = 10
    @Flag(name: .customLong("report-training-batch-acc"), help: "Report training batch accuracy.")
    var reportTrainingBatchAcc = false
    @Option(name: .customLong("batch-size"), help: "Training batch size.")
    var batchSize = 64
    @Option(name: .customLong("valid-batch-size"), help: "Validation batch size.")
    var validBatchSize = 64
    @Option(name: .customLong("max-steps"), help: "Steps to train (priority over --max-epochs).")
    var maxSteps: Int?
    @Option(name: .customLong("max-epochs"), help: "Epochs to train when --max-steps is not given.")
    var maxEpochs = 32
    @Option(name: .customLong("valid-step-interval"), help: "Validate every this many steps (default: never between steps).")
    var validStepInterval: Int?
    @Option(name: .customLong("valid-epoch-interval"), help: "Validate every this many epochs (\"None\": never).")
    var validEpochInterval = "1"
    @Option(name: .customLong("context-length"), help: "Tokens per caption, [CLS] and [SEP] included.")
    var contextLength = 52
    @Option(name: .customLong("lr"), help: "Peak learning rate (default per vision model).")
    var lr: Double?
    @Option(name: .customLong("beta1"), help: "AdamW beta 1 (default per vision model).")
    var beta1: Double?
    @Option(name: .customLong("beta2"), help: "AdamW beta 2 (default per vision model).")
    var beta2: Double?
    @Option(name: .customLong("eps"), help: "AdamW epsilon (default per vision model).")
    var eps: Double?
    @Option(name: .customLong("wd"), help: "Weight decay.")
    var wd = 0.2
    @Option(name: .customLong("warmup"), help: "Linear warmup steps.")
    var warmup = 500
    @Option(name: .customLong("accum-freq"), help: "Batches contrasted together per optimiser step.")
    var accumFreq = 1
    @Flag(name: .customLong("freeze-vision"), help: "Freeze the vision tower.")
    var freezeVision = false
    @Option(name: .customLong("mask-ratio"), help: "FLIP: fraction of image patches dropped in training (ViT only; default 0).")
    var maskRatio: Double?
    @Flag(name: .customLong("grad-checkpointing"), help: "Recompute transformer blocks in the backward pass: less memory, slower steps.")
    var gradCheckpointing = false
    @Flag(name: .customLong("gather-with-grad"), help: "Under mpirun: gathered features carry gradient back to their rank.")
    var gatherWithGrad = false
    @Flag(name: .customLong("use-augment"), help: "Augment training images as the reference does (RandomResizedCrop, flip, AutoAugment).")
    var useAugment = false
    @Option(name: .customLong("seed"), help: "Random seed (data order, dropout and augmentation).")
    var seed = 123
    @Option(name: .customLong("save-step-frequency"), help: "Save epoch_{E}_{S}.pt every this many steps (≤ 0: never).")
    var saveStepFrequency = -1
    @Option(name: .customLong("save-epoch-frequency"), help: "Save epoch{N}.pt every this many epochs.")
    var saveEpochFrequency = 1
    @Option(name: .customLong("resume"), help: "Checkpoint to resume from (default: {logs}/{name}/checkpoints/epoch_latest.pt if present).")
    var resume: String?
    @Flag(name: .customLong("reset-data-offset"), help: "On resume, start from epoch 0, step 0 (needed for files without 'epoch'/'step').")
    var resetDataOffset = false
    @Flag(name: .customLong("reset-optimizer"), help: "On resume, start with a fresh optimiser state (needed when the checkpoint has none).")
    var resetOptimizer = false
    @Option(name: .customLong("vision-model"), help: "Vision preset: ViT-B-32, ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14 or RN50.")
    var visionModel = "ViT-B-16"
    @Option(name: .customLong("text-model"), help: "Text preset: RoBERTa-wwm-ext-base-chinese, RoBERTa-wwm-ext-large-chinese or RBT3-chinese.")
    var textModel = "RoBERTa-wwm-ext-base-chinese"
    @Option(name: .customLong("config"), help: "A CLIP config JSON (the reference's CLIP keyword arguments) replacing the presets' architecture.")
    var config: String?
    @Option(name: .customLong("precision"), help: "amp, fp16 or fp32: accepted; computation is fp32.")
    var precision = "amp"
    @Option(name: .customLong("threads"), help: "Compute threads (default: all cores).")
    var threads: Int?

    @OptionGroup var imageLimit: ImageLimitOptions
    @OptionGroup var communication: CommunicationOptions

    func run() throws {
        imageLimit.apply()
        var o = TrainingOptions(trainData: trainData)
        o.valData = valData
        o.numWorkers = numWorkers
        o.validNumWorkers = validNumWorkers
        o.logs = logs
        o.name = name
        o.logInterval = logInterval
        o.reportTrainingBatchAcc = reportTrainingBatchAcc
        o.batchSize = batchSize
        o.validBatchSize = validBatchSize
        o.maxSteps = maxSteps
        o.maxEpochs = maxEpochs
        o.validStepInterval = validStepInterval
        if validEpochInterval.lowercased() == "none" {
            o.validEpochInterval = nil
        } else {
            guard let v = Int(validEpochInterval) else { throw ValidationError("--valid-epoch-interval must be an integer or None") }
            o.validEpochInterval = v
        }
        o.contextLength = contextLength
        o.lr = lr; o.beta1 = beta1; o.beta2 = beta2; o.eps = eps
        o.wd = wd
        o.warmup = warmup
        o.accumFreq = accumFreq
        o.freezeVision = freezeVision
        o.useAugment = useAugment
        o.maskRatio = maskRatio
        o.gatherWithGrad = gatherWithGrad
        o.gradCheckpointing = gradCheckpointing
        o.seed = seed
        o.saveStepFrequency = saveStepFrequency
        o.saveEpochFrequency = saveEpochFrequency
        o.resume = resume
        o.resetDataOffset = resetDataOffset
        o.resetOptimizer = resetOptimizer
        o.visionModel = visionModel
        o.textModel = textModel
        o.config = config
        o.precision = precision
        o.threads = threads ?? ProcessPlacement().computeThreads
        let clipConfig = try reported {
            if let file = config { return try CLIPConfig.load(contentsOf: URL(fileURLWithPath: file)) }
            return try ModelPresets.config(vision: visionModel, text: textModel)
        }
        let communicator: Communicator
        do { communicator = try communication.communicator() } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        // Under mpirun a failing rank ends the whole job (no rank is left waiting in a collective).
        func fail(_ message: String) -> ExitCode {
            if communicator.worldSize > 1 {
                printError("error: rank \(communicator.rank) of \(communicator.worldSize): \(message)")
                communicator.abort(code: 1)
            }
            printError("error: \(message)")
            return ExitCode.failure
        }
        do {
            let tokenizer = try Tokenizer.bundled()
            let trainer = try Trainer(options: o, config: clipConfig, tokenizer: tokenizer, communicator: communicator)
            _ = try trainer.run()
        } catch let e as UserFacingError {
            throw fail(e.description)
        } catch let e as CommunicationError {
            throw fail(e.description)
        }
        communicator.finish()
    }
}
