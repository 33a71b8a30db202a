import ArgumentParser
import ChineseCLIP
import Essentials
import Foundation
import NeuralNet
import Tensors

#if canImport(Glibc)
    import Glibc
#endif

/// `cnclip bench`: encoding (or training-step) throughput with random weights, as `bench_torch.py`
/// (`scripts/reference/bench_train_step.py`) measures the reference.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure encoding or training throughput with random weights (a benchmark, not a test).",
        discussion: """
            Prints one JSON line: images/s, texts/s, peak memory. Same protocol as the reference's bench_torch.py: one \
            warm-up run, then the median of --iters. Texts are the reference benchmark's caption unless --texts names \
            a file (one text per line, cycled to fill the batch); txt_positions is how many positions a text's \
            encoding computes on average: its real tokens, one past its last non-padding id, since each text is \
            computed at its own length and padding is skipped (the mean over the texts of the timed runs, run i \
            taking the texts from line i × --txt-batch on). --img-batch 0 or --txt-batch 0 \
            skips that tower. --checkpoint loads real weights instead of random ones and reports load_s. With \
            --train: training steps instead (forward in training mode, the contrastive loss, backward, AdamW with \
            the reference's parameter groups) on --batch random images and synthetic-style captions, as \
            scripts/reference/bench_train_step.py times the reference; prints samples/s.
            """)

    @Option(name: .customLong("vision-model")) var visionModel = "ViT-B-16"
    @Option(name: .customLong("text-model")) var textModel = "RoBERTa-wwm-ext-base-chinese"
    @Option(name: .customLong("img-batch"), help: "Images per batch (0: skip images).") var imageBatch = 8
    @Option(name: .customLong("txt-batch"), help: "Texts per batch (0: skip texts).") var textBatch = 32
    @Option(name: .customLong("ctx"), help: "Context length; every text is padded to it.") var contextLength = 52
    @Option(name: .customLong("texts"), help: "A file of texts, one per line, cycled to fill --txt-batch.") var textsPath: String?
    @Option(name: .customLong("checkpoint"), help: "Load this checkpoint (timed) instead of random weights.") var checkpoint: String?
    @Option(name: .customLong("iters")) var iterations = 5
    @Option(name: .customLong("threads")) var threads = 2
    @Option(
        name: .customLong("precision"),
        help:
            "fp32, or int8: the linear layers of both towers on the int8 path (timed after quantizing). Default: fp32, or int8 for a --checkpoint from `cnclip quantize`."
    )
    var precision: String?
    @Flag(name: .customLong("train"), help: "Time training steps instead of encoding.") var train = false
    @Option(name: .customLong("config"), help: "A CLIP config JSON instead of the presets (for --train).") var config: String?
    @Option(name: .customLong("batch"), help: "Training batch size (for --train).") var batch = 32

    func run() throws {
        if train { return try runTraining() }
        try reported {
            ComputeThreads.set(threads)
            let config = try ModelPresets.config(vision: visionModel, text: textModel)
            var result: [String: Any] = ["engine": "swift", "threads": threads, "model": "\(visionModel)@\(textModel)"]
            let requested = try precision.map { value in
                guard let p = Precision(argument: value) else { throw ValidationError("--precision must be fp32 or int8") }
                return p
            }
            let clip: CLIP
            if let checkpoint {
                let start = DispatchTime.now().uptimeNanoseconds
                let url = URL(fileURLWithPath: checkpoint)
                if try QuantizedModelFile.config(ifQuantized: url) != nil {
                    guard requested != .fp32 else {
                        throw ValidationError("\(checkpoint) holds int8 weights: --precision fp32 needs its fp32 checkpoint")
                    }
                    clip = try QuantizedModelFile.load(url)
                } else {
                    clip = try CLIP.load(checkpoint: url, config: config)
                    clip.prepareForInference(requested)
                }
                result["load_s"] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            } else {
                clip = CLIP(config)
                clip.initializeRandomly(seed: 0)
                clip.prepareForInference(requested)
            }
            result["precision"] = clip.isQuantized ? "int8" : "fp32"
            result["model"] = "\(visionModel)@\(textModel)"
            let model = try ChineseCLIPModel(clip: clip, tokenizer: ChineseCLIPModel.bundledTokenizer())
            if imageBatch > 0 {
                var rng = SplitMix64(seed: 1)
                let r = config.imageResolution
                let images = Tensor.randomNormal([imageBatch, 3, r, r], using: &rng)
                result["img_per_s"] = Double(imageBatch) / median { _ in _ = clip.encodeImage(images) }
            }
            if textBatch > 0 {
                let lines =
                    try textsPath.map { path in
                        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
                    } ?? ["一只可爱的小猫在草地上玩耍"]
                guard !lines.isEmpty else { throw ValidationError("--texts \(textsPath ?? ""): no texts") }
                // Run i encodes the texts from line i·batch on (cycled), so that batch 1 sees a mix of lengths too.
                let runs = (0..<max(1, iterations)).map { i in
                    model.tokenize((0..<textBatch).map { lines[(i * textBatch + $0) % lines.count] }, contextLength: contextLength)
                }
                result["txt_per_s"] = Double(textBatch) / median { i in _ = clip.encodeText(runs[i], batch: textBatch) }
                let lengths = runs.flatMap { CLIP.textLengths($0, batch: textBatch) }
                result["txt_positions"] = Double(lengths.reduce(0, +)) / Double(lengths.count)
            }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            result["peak_rss_mb"] = Double(usage.ru_maxrss) / 1024
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// Training steps: samples/s and peak memory.
    func runTraining() throws {
        try reported {
            ComputeThreads.set(threads)
            let config =
                try self.config.map { try CLIPConfig.load(contentsOf: URL(fileURLWithPath: $0)) }
                ?? ModelPresets.config(vision: visionModel, text: textModel)
            let clip = CLIP(config)
            clip.initializeRandomly(seed: 0)
            clip.train()
            clip.requireGradients()
            let optimizer = AdamW(groups: AdamW.referenceGroups(clip, weightDecay: 0.2, learningRate: 1e-4), betas: (0.9, 0.98), eps: 1e-6)
            let model = try ChineseCLIPModel(clip: clip, tokenizer: ChineseCLIPModel.bundledTokenizer())
            var rng = SplitMix64(seed: 1)
            let r = config.imageResolution
            let images = Tensor.randomNormal([batch, 3, r, r], using: &rng)
            let tokens = model.tokenize(Self.trainingCaptions(batch), contextLength: contextLength)
            let t = median { _ in
                clip.zeroGrad()
                let (i, txt, s) = clip.forward(images: Variable(images), texts: tokens, textBatch: batch)
                CLIP.contrastiveLoss(imageFeatures: i, textFeatures: txt, logitScale: s).backward()
                optimizer.step()
            }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let result: [String: Any] = [
                "engine": "swift", "threads": threads, "batch": batch, "samples_per_s": Double(batch) / t,
                "step_s": t, "peak_rss_mb": Double(usage.ru_maxrss) / 1024,
            ]
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// The captions both benchmarks train on: the synthetic dataset's style, cycled (bench_train_step.py has the same list).
    static func trainingCaptions(_ count: Int) -> [String] {
        let captions = [
            "左上角有一个红色的大圆形，中间有一个黑色的小三角形", "右下角有一个蓝色的小正方形",
            "中间有一个黄色的大星形", "左下角有一个紫色的小圆形，右上角有一个白色的大三角形",
        ]
        return (0..<count).map { captions[$0 % captions.count] }
    }

    func median(_ body: (Int) -> Void) -> Double {
        body(0)
        var times: [Double] = []
        for i in 0..<max(1, iterations) {
            let t = DispatchTime.now().uptimeNanoseconds
            body(i)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }
}
