// The reference's training flags (`cn_clip/training/params.py`) that apply on a CPU, with its defaults, plus
// our `config` (a custom CLIP config JSON) and `threads`. Per-model optimiser defaults come from the vision
// model as `get_default_params` gives them.

import Foundation

/// Every setting of a training run; property names are the reference's flag names in camel case.
package struct TrainingOptions: Sendable {
    /// `--train-data`: the training split's LMDB directory (holding `pairs` and `imgs`).
    package var trainData: String
    /// `--val-data`: the validation split's LMDB directory; nil disables validation.
    package var valData: String?
    /// `--num-workers`: decode threads for training batches (0: decode on the training thread).
    package var numWorkers = 4
    /// `--valid-num-workers`: decode threads for validation batches.
    package var validNumWorkers = 1
    /// `--logs`: where `{name}/` goes; nil (or "none") writes no logs and no checkpoints.
    package var logs: String? = "./logs/"
    /// `--name`: the experiment's folder under `logs`.
    package var name = "train_clip"
    /// `--log-interval`: log a training line every this many steps.
    package var logInterval = 10
    /// `--report-training-batch-acc`: add in-batch accuracies to the training lines.
    package var reportTrainingBatchAcc = false
    /// `--batch-size`: samples per training batch.
    package var batchSize = 64
    /// `--valid-batch-size`: samples per validation batch.
    package var validBatchSize = 64
    /// `--max-steps`: steps to train (has priority over `maxEpochs`).
    package var maxSteps: Int?
    /// `--max-epochs`: epochs to train when `maxSteps` is nil.
    package var maxEpochs = 32
    /// `--valid-step-interval`: validate every this many steps (nil: never between steps).
    package var validStepInterval: Int?
    /// `--valid-epoch-interval`: validate every this many epochs (nil: never after epochs).
    package var validEpochInterval: Int? = 1
    /// `--context-length`: tokens per caption, `[CLS]` and `[SEP]` included.
    package var contextLength = 52
    /// `--lr`: peak learning rate (nil: the vision model's default).
    package var lr: Double?
    /// `--beta1`: AdamW β1 (nil: the vision model's default).
    package var beta1: Double?
    /// `--beta2`: AdamW β2 (nil: the vision model's default).
    package var beta2: Double?
    /// `--eps`: AdamW ε (nil: the vision model's default).
    package var eps: Double?
    /// `--wd`: weight decay of the decayed group.
    package var wd = 0.2
    /// `--warmup`: linear warmup steps.
    package var warmup = 500
    /// `--accum-freq`: batches whose features are contrasted together per optimiser step.
    package var accumFreq = 1
    /// `--freeze-vision`: no gradient for `visual.*` (and BatchNorm statistics frozen for ResNets).
    package var freezeVision = false
    /// `--mask-ratio`: FLIP — the fraction of patch tokens each training image drops (ViT only; nil: the
    /// reference's default 0, printed as `0`).
    package var maskRatio: Double?
    /// `--grad-checkpointing`: recompute each transformer block in the backward pass instead of keeping its
    /// activations (less memory, about one more forward pass of time).
    package var gradCheckpointing = false
    /// `--gather-with-grad`: under several processes, gathered features carry gradient to the rank that made
    /// them (`torch.distributed.nn.all_gather`), which makes the update that of one process with the global batch.
    package var gatherWithGrad = false
    /// `--use-augment`: the reference's timm augmentation of training images (random resized crop, flip, AutoAugment).
    package var useAugment = false
    /// `--seed`: seeds the data order (as the reference), our dropout masks and our augmentations.
    package var seed = 123
    /// `--save-step-frequency`: save `epoch_{E}_{S}.pt` every this many steps (≤ 0: never).
    package var saveStepFrequency = -1
    /// `--save-epoch-frequency`: save `epoch{N}.pt` every this many epochs.
    package var saveEpochFrequency = 1
    /// `--resume`: checkpoint to resume from (nil: `{logs}/{name}/checkpoints/epoch_latest.pt` if it exists).
    package var resume: String?
    /// `--reset-data-offset`: on resume, start again from epoch 0, step 0.
    package var resetDataOffset = false
    /// `--reset-optimizer`: on resume, start with a fresh optimiser state.
    package var resetOptimizer = false
    /// `--vision-model`: the vision preset (and the source of the optimiser defaults).
    package var visionModel = "ViT-B-16"
    /// `--text-model`: the text preset.
    package var textModel = "RoBERTa-wwm-ext-base-chinese"
    /// `--config`: a CLIP config JSON replacing the presets' architecture (ours).
    package var config: String?
    /// `--threads`: compute threads (ours); nil keeps the library's default.
    package var threads: Int?
    /// `--precision`: accepted for compatibility ("amp", "fp16", "fp32"); computation is fp32.
    package var precision = "amp"

    /// Options for training on `trainData` with the reference's defaults.
    package init(trainData: String) { self.trainData = trainData }

    /// The reference's `get_default_params(model_name)`: lr, β1, β2, ε of the vision model (nil for others).
    package static func defaultOptimizerParameters(visionModel: String) -> (lr: Double, beta1: Double, beta2: Double, eps: Double)? {
        switch visionModel {
        case "RN50", "RN101", "RN50x4": return (5.0e-4, 0.9, 0.999, 1.0e-8)
        case "ViT-B-32", "ViT-B-16", "ViT-H-14": return (5.0e-4, 0.9, 0.98, 1.0e-6)
        case "ViT-L-14", "ViT-L-14-336": return (4.0e-4, 0.9, 0.98, 1.0e-6)
        default: return nil
        }
    }

    /// lr, β1, β2, ε: the flags where given, else the vision model's defaults.
    package func resolvedOptimizerParameters() throws -> (lr: Double, beta1: Double, beta2: Double, eps: Double) {
        let d = Self.defaultOptimizerParameters(visionModel: visionModel)
        guard let lr = lr ?? d?.lr, let b1 = beta1 ?? d?.beta1, let b2 = beta2 ?? d?.beta2, let e = eps ?? d?.eps else {
            throw TrainingError.invalidOption(
                "--vision-model \(visionModel) has no default optimiser settings: give --lr, --beta1, --beta2 and --eps")
        }
        return (lr, b1, b2, e)
    }

    /// Whether outputs are written (the reference's `should_save`: `--logs` not empty and not "none").
    package var writesOutputs: Bool {
        guard let logs else { return false }
        return !logs.isEmpty && logs.lowercased() != "none"
    }

    /// Checks the flags that the trainer cannot work with.
    package func validate() throws {
        if !["amp", "fp16", "fp32"].contains(precision) { throw TrainingError.invalidOption("--precision must be amp, fp16 or fp32") }
        if batchSize < 1 { throw TrainingError.invalidOption("--batch-size must be at least 1, got \(batchSize)") }
        if validBatchSize < 1 { throw TrainingError.invalidOption("--valid-batch-size must be at least 1, got \(validBatchSize)") }
        if accumFreq < 1 { throw TrainingError.invalidOption("--accum-freq must be at least 1, got \(accumFreq)") }
        if logInterval < 1 { throw TrainingError.invalidOption("--log-interval must be at least 1, got \(logInterval)") }
        if contextLength < 2 { throw TrainingError.invalidOption("--context-length must be at least 2, got \(contextLength)") }
        if numWorkers < 0 || validNumWorkers < 0 { throw TrainingError.invalidOption("--num-workers and --valid-num-workers must be ≥ 0") }
        if let m = maxSteps, m < 1 { throw TrainingError.invalidOption("--max-steps must be at least 1, got \(m)") }
        if maxSteps == nil && maxEpochs < 1 { throw TrainingError.invalidOption("--max-epochs must be at least 1, got \(maxEpochs)") }
        if warmup < 0 { throw TrainingError.invalidOption("--warmup must be ≥ 0, got \(warmup)") }
        if let v = validStepInterval, v < 1 { throw TrainingError.invalidOption("--valid-step-interval must be at least 1, got \(v)") }
        if let v = validEpochInterval, v < 1 { throw TrainingError.invalidOption("--valid-epoch-interval must be at least 1, got \(v)") }
        if let m = maskRatio, !(m >= 0 && m < 1) { throw TrainingError.invalidOption("--mask-ratio must be in [0, 1), got \(m)") }
        if let t = threads, t < 1 { throw TrainingError.invalidOption("--threads must be at least 1, got \(t)") }
        _ = try resolvedOptimizerParameters()
    }
}
