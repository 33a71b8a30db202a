// Zero-shot classification as `zeroshot_evaluation.py` computes it: a class's weight is the renormalised mean of
// its L2-normalised prompt embeddings; an image's class probabilities are softmax(100 · normalised feature · W);
// top-1 accuracy counts images whose most probable class is their folder's class.

import ChineseCLIP
import Foundation
import Imaging
import Synchronization
import Tensors
import Tokenization

/// Class weights built from prompt templates: one unit vector per class.
package struct ZeroShotClassifier: Sendable {
    /// The fixed logit scale of the reference's evaluation (it does not use the model's `logit_scale`).
    package static let logitScale: Float = 100

    /// The class names, in class-index order.
    package let classNames: [String]
    /// `[classes, embed]`: row `c` is class `c`'s weight (the reference stacks them as columns).
    package let weights: Tensor

    /// Wraps existing class weights `[classes, embed]`.
    package init(classNames: [String], weights: Tensor) {
        precondition(weights.rank == 2 && weights.shape[0] == classNames.count, "weights must be [classes, embed]")
        self.classNames = classNames
        self.weights = weights
    }

    /// Builds the weights: for each class, every template filled with its name and passed through the reference's
    /// text preparation (lower-case, curly quotes → `"`), encoded, normalised, averaged and normalised again.
    /// `progress` is called with (classes done, classes).
    package init(
        model: ChineseCLIPModel, classNames: [String], templates: [String], contextLength: Int = 52,
        progress: ((Int, Int) -> Void)? = nil
    ) {
        precondition(!templates.isEmpty, "at least one template is needed")
        var perClass: [Tensor] = []
        for (c, name) in classNames.enumerated() {
            let prompts = Self.prompts(label: name, templates: templates)
            perClass.append(model.encodeTexts(prompts, contextLength: contextLength, normalized: false, batchSize: 64))
            progress?(c + 1, classNames.count)
        }
        self.init(
            classNames: classNames, promptFeatures: perClass.isEmpty ? Tensor(shape: [0, model.config.embedDim]) : concatenateRows(perClass),
            promptsPerClass: templates.count)
    }

    /// Builds the weights from already encoded prompts: `promptFeatures` is `[classes * promptsPerClass, embed]`
    /// (normalised here, so normalised or not), class by class in the order ``prompts(label:templates:)`` gives (one batched encode for a server).
    package init(classNames: [String], promptFeatures: Tensor, promptsPerClass: Int) {
        precondition(
            promptsPerClass > 0 && promptFeatures.rank == 2 && promptFeatures.shape[0] == classNames.count * promptsPerClass,
            "promptFeatures must be [classes * promptsPerClass, embed]")
        let dim = promptFeatures.shape[1]
        let out = Tensor(shape: [classNames.count, dim])
        let w = out.mutableData
        let f = promptFeatures.data
        // Each prompt's normalisation, their mean and its normalisation in float64, rounded once: the reference's fp32 steps
        // move zero-shot probabilities by up to 2e-6 (scripts/reference/probe_zeroshot_reproducibility.py), and put
        // them 1.7e-6 from the exact value where ours are within 3e-7 (scripts/reference/probe_zeroshot_accuracy.py).
        var mean = [Double](repeating: 0, count: dim)
        for c in 0..<classNames.count {
            for j in 0..<dim { mean[j] = 0 }
            for t in 0..<promptsPerClass {
                let row = f + (c * promptsPerClass + t) * dim
                let norm = Self.norm(row, count: dim)
                for j in 0..<dim { mean[j] += Double(row[j]) / norm }
            }
            for j in 0..<dim { mean[j] /= Double(promptsPerClass) }
            let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<dim { w[c * dim + j] = Float(mean[j] / norm) }
        }
        self.init(classNames: classNames, weights: out)
    }

    /// The L2 norm of `count` floats, in float64.
    private static func norm(_ row: UnsafePointer<Float>, count: Int) -> Double {
        var sum = 0.0
        for j in 0..<count { sum += Double(row[j]) * Double(row[j]) }
        return sum.squareRoot()
    }

    /// The prepared prompts of one class: each template filled with `label`, lower-cased and with curly quotes
    /// mapped as the reference's text preparation does.
    package static func prompts(label: String, templates: [String]) -> [String] {
        templates.map { Tokenizer.prepareCaption(ZeroShotTemplates.prompt($0, label: label)) }
    }

    /// Class probabilities `[n, classes]` for image features `[n, embed]` (normalised here):
    /// `softmax(100 · normalise(features) @ weightsᵀ)`, in float64 and rounded once (see the weights' note).
    package func probabilities(imageFeatures: Tensor) -> Tensor {
        let n = imageFeatures.shape[0], dim = imageFeatures.shape[1], k = classNames.count
        let out = Tensor(shape: [n, k])
        let f = imageFeatures.data, w = weights.data, p = out.mutableData
        var logits = [Double](repeating: 0, count: k)
        for i in 0..<n {
            let row = f + i * dim
            let norm = Self.norm(row, count: dim)
            for c in 0..<k {
                var dot = 0.0
                for j in 0..<dim { dot += Double(row[j]) * Double(w[c * dim + j]) }
                logits[c] = Double(Self.logitScale) * dot / norm
            }
            let top = logits.max() ?? 0
            let exps = logits.map { Foundation.exp($0 - top) }
            let total = exps.reduce(0, +)
            for c in 0..<k { p[i * k + c] = Float(exps[c] / total) }
        }
        return out
    }
}

/// Probabilities, targets and top-1 accuracy of one zero-shot evaluation.
package struct ZeroShotResult: Sendable {
    /// `[images, classes]` class probabilities, one row per image in dataset order (or `--index` order).
    package let probabilities: Tensor
    /// The class index of each row.
    package let targets: [Int]
    /// Images whose most probable class is their own, counted over the whole dataset.
    package let correct: Int
    /// Images evaluated (before any reordering).
    package let total: Int

    /// Wraps computed values.
    package init(probabilities: Tensor, targets: [Int], correct: Int, total: Int) {
        self.probabilities = probabilities
        self.targets = targets
        self.correct = correct
        self.total = total
    }

    /// `correct / total`, the reference's `zeroshot-top1` (a fraction, not a percentage).
    package var top1: Double { total == 0 ? 0 : Double(correct) / Double(total) }

    /// The rows picked by `index` (the reference's `outputs[index]`: any order, repeats allowed, negative values
    /// count from the end). Accuracy stays that of the whole dataset, as in the reference.
    package func reordered(by index: [Int], indexFile: String) throws -> ZeroShotResult {
        let n = probabilities.shape[0], k = probabilities.shape[1]
        let out = Tensor(shape: [index.count, k])
        var targets: [Int] = []
        for (r, i) in index.enumerated() {
            guard i >= -n && i < n else {
                throw ZeroShotError.index(path: indexFile, reason: "entry \(r) is \(i), outside the \(n) predictions")
            }
            let row = i < 0 ? n + i : i
            (out.mutableData + r * k).update(from: probabilities.data + row * k, count: k)
            targets.append(self.targets[row])
        }
        return ZeroShotResult(probabilities: out, targets: targets, correct: correct, total: total)
    }

    /// The index of each row's largest probability (the first one on a tie).
    package static func argmax(_ probabilities: Tensor) -> [Int] {
        let n = probabilities.shape[0], k = probabilities.shape[1]
        let p = probabilities.data
        return (0..<n).map { r in
            var best = 0
            for c in 1..<max(k, 1) where p[r * k + c] > p[r * k + best] { best = c }
            return best
        }
    }
}

/// Runs a zero-shot evaluation over a dataset.
package enum ZeroShotEvaluation {
    /// Reads a `--index` file: a JSON list of integers.
    package static func readIndex(contentsOfFile path: String) throws -> [Int] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ZeroShotError.index(path: path, reason: "cannot be read")
        }
        // JSONDecoder refuses booleans and fractional numbers, as torch's integer indexing does.
        do { return try JSONDecoder().decode([Int].self, from: data) } catch {
            throw ZeroShotError.index(path: path, reason: "not a JSON list of integers")
        }
    }

    /// Encodes the dataset's images in batches of `batchSize` (each decoded and converted to RGB, then preprocessed
    /// as `image_transform`), classifies them and counts top-1 hits. `progress` gets (images done, images).
    /// A file that cannot be decoded stops the run with an error naming it.
    package static func run(
        model: ChineseCLIPModel, dataset: ZeroShotDataset, classifier: ZeroShotClassifier,
        batchSize: Int = 64, progress: ((Int, Int) -> Void)? = nil
    ) throws -> ZeroShotResult {
        let samples = dataset.samples
        let k = classifier.classNames.count
        let all = Tensor(shape: [samples.count, k])
        var correct = 0
        var start = 0
        let step = max(1, batchSize)
        while start < samples.count {
            let end = min(samples.count, start + step)
            let batch = Array(samples[start..<end])
            let images = try decode(batch.map(\.path))
            let features = model.encodeImages(images, normalized: false, batchSize: batch.count)  // normalised in float64 below
            let probs = classifier.probabilities(imageFeatures: features)
            (all.mutableData + start * k).update(from: probs.data, count: batch.count * k)
            for (pred, sample) in zip(ZeroShotResult.argmax(probs), batch) where pred == sample.classIndex { correct += 1 }
            start = end
            progress?(end, samples.count)
        }
        return ZeroShotResult(probabilities: all, targets: samples.map(\.classIndex), correct: correct, total: samples.count)
    }

    /// Decodes files in parallel; the first failure in file order is the one reported.
    private static func decode(_ paths: [String]) throws -> [Image] {
        let slots = Mutex([Result<Image, Error>?](repeating: nil, count: paths.count))
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            let r = Result { try ZeroShotDataset.loadImage(path: paths[i]) }
            slots.withLock { $0[i] = r }
        }
        return try slots.withLock { $0 }.map { try $0!.get() }
    }
}
