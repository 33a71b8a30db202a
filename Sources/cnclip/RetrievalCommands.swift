// `cnclip make-topk-predictions`, `make-topk-predictions-tr`, `transform-ir-annotation-to-tr`, `evaluation` and
// `evaluation-tr`: the reference's `cn_clip/eval` scripts of the same names, with the same flags, the same
// printed lines and byte-for-byte the same output files.

import ArgumentParser
import Evaluation
import Foundation

/// The flags of `make_topk_predictions.py` and `make_topk_predictions_tr.py`.
struct TopKFlags: ParsableArguments {
    @Option(name: .customLong("image-feats"), help: "Specify the path of image features.")
    var imageFeats: String

    @Option(name: .customLong("text-feats"), help: "Specify the path of text features.")
    var textFeats: String

    @Option(name: .customLong("top-k"), help: "Specify the k value of top-k predictions.")
    var topK = 10

    @Option(name: .customLong("eval-batch-size"), help: "Gallery rows scored per block (the reference's image-side batch size).")
    var evalBatchSize = 32768

    @Option(name: .customLong("output"), help: "Specify the output jsonl prediction filepath.")
    var output: String

    func validate() throws {
        if evalBatchSize <= 0 { throw ValidationError("--eval-batch-size must be positive") }
    }

    /// Prints what the reference prints, runs the search and writes the file.
    func run(_ direction: RetrievalDirection) throws {
        // The reference logs its parameters sorted by name.
        print("Params:")
        print("  eval_batch_size: \(evalBatchSize)")
        print("  image_feats: \(imageFeats)")
        print("  output: \(output)")
        print("  text_feats: \(textFeats)")
        print("  top_k: \(topK)")
        let (loaded, queries) = direction == .textToImage ? ("image", "texts") : ("text", "images")
        print("Begin to load \(loaded) features...")
        print("Finished loading \(loaded) features.")
        print("Begin to compute top-\(topK) predictions for \(queries)...")
        let progress = ProgressLine(label: "top-\(topK)")
        let timings = try reported {
            try TopKPredictions.run(
                imageFeatures: imageFeats, textFeatures: textFeats, direction: direction,
                options: TopKOptions(k: topK, galleryBlockRows: evalBatchSize), output: output,
                progress: { progress.update($0, $1) })
        }
        progress.finish()
        if ProcessInfo.processInfo.environment["CNCLIP_TIMINGS"] != nil {
            // For scripts/bench-topk.sh: phase times on standard error.
            printError(
                String(
                    format: "timings: parse queries %.3f s, parse gallery %.3f s, score %.3f s, write %.3f s",
                    timings.parseQueries, timings.parseGallery, timings.score, timings.write))
        }
        print("Top-\(topK) predictions are saved in \(output)")
        print("Done!")
    }
}

/// `cnclip make-topk-predictions`: text → image top-k predictions from feature files.
struct MakeTopKPredictions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-topk-predictions",
        abstract: "Text-to-image top-k predictions from image and text feature files (make_topk_predictions.py).",
        discussion: "Scores are text @ image.T in float32; equal scores keep the image file's order.")

    @OptionGroup var flags: TopKFlags

    func run() throws { try flags.run(.textToImage) }
}

/// `cnclip make-topk-predictions-tr`: image → text top-k predictions from feature files.
struct MakeTopKPredictionsTR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-topk-predictions-tr",
        abstract: "Image-to-text top-k predictions from image and text feature files (make_topk_predictions_tr.py).",
        discussion: "Scores are image @ text.T in float32; equal scores keep the text file's order.")

    @OptionGroup var flags: TopKFlags

    func run() throws { try flags.run(.imageToText) }
}

/// `cnclip transform-ir-annotation-to-tr`: text → image ground truth to image → text (`X.jsonl` → `X.tr.jsonl`).
struct TransformIRAnnotationToTR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transform-ir-annotation-to-tr",
        abstract: "Write the image-to-text annotation X.tr.jsonl beside a text-to-image annotation X.jsonl (transform_ir_annotation_to_tr.py).")

    @Option(name: .customLong("input"), help: "Input path of text-to-image Jsonl annotation file.")
    var input: String

    func run() throws {
        try reported { _ = try AnnotationTransform.run(input: input) }
        print("Done!")
    }
}

/// The positional arguments of `evaluation.py` / `evaluation_tr.py`.
struct EvaluationArguments: ParsableArguments {
    @Argument(help: "The ground-truth JSONL (e.g. valid_texts.jsonl, or valid_texts.tr.jsonl for evaluation-tr).")
    var standardPath: String

    @Argument(help: "The prediction JSONL (from make-topk-predictions or make-topk-predictions-tr).")
    var submitPath: String

    @Argument(help: "Where to write the result JSON.")
    var outPath: String

    /// Prints what the reference prints and writes its output JSON; a malformed submission is reported in the JSON
    /// (`"success": false`) with exit status 0, as the reference does.
    func run(_ direction: RetrievalDirection) throws {
        print("Read standard from \(standardPath)")
        print("Read user submit file from \(submitPath)")
        let outcome = try reported {
            try RecallEvaluation.run(groundTruth: standardPath, predictions: submitPath, output: outPath, direction: direction)
        }
        print(RecallEvaluation.summaryLine(outcome))
    }
}

/// `cnclip evaluation GT PRED OUT`: text → image Recall@1/5/10.
struct Evaluation: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluation",
        abstract: "Text-to-image Recall@1/5/10 of a prediction file, written as JSON (evaluation.py).")

    @OptionGroup var arguments: EvaluationArguments

    func run() throws { try arguments.run(.textToImage) }
}

/// `cnclip evaluation-tr GT PRED OUT`: image → text Recall@1/5/10.
struct EvaluationTR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluation-tr",
        abstract: "Image-to-text Recall@1/5/10 of a prediction file, written as JSON (evaluation_tr.py).")

    @OptionGroup var arguments: EvaluationArguments

    func run() throws { try arguments.run(.imageToText) }
}
