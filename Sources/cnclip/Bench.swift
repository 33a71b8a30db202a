import ArgumentParser
import ChineseCLIP
import Foundation
import NeuralNet
import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// `cnclip bench`: encoding throughput with random weights, as `bench_torch.py` measures the reference.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure image and text encoding throughput with random weights (a benchmark, not a test).",
        discussion: "Prints one JSON line: images/s, texts/s, peak memory. Same protocol as the reference's bench_torch.py: one warm-up run, then the median of --iters.")

    @Option(name: .customLong("vision-model")) var visionModel = "ViT-B-16"
    @Option(name: .customLong("text-model")) var textModel = "RoBERTa-wwm-ext-base-chinese"
    @Option(name: .customLong("img-batch")) var imageBatch = 8
    @Option(name: .customLong("txt-batch")) var textBatch = 32
    @Option(name: .customLong("ctx"), help: "Context length; every text is padded to it.") var contextLength = 52
    @Option(name: .customLong("iters")) var iterations = 5
    @Option(name: .customLong("threads")) var threads = 2

    func run() throws {
        try reported {
            ComputeThreads.set(threads)
            let config = try ModelPresets.config(vision: visionModel, text: textModel)
            let clip = CLIP(config)
            clip.initializeRandomly(seed: 0)
            let model = ChineseCLIPModel(clip: clip, tokenizer: try ChineseCLIPModel.bundledTokenizer())
            var rng = SplitMix64(seed: 1)
            let r = config.imageResolution
            let images = Tensor.randomNormal([imageBatch, 3, r, r], using: &rng)
            let tokens = model.tokenize(Array(repeating: "一只可爱的小猫在草地上玩耍", count: textBatch), contextLength: contextLength)
            let ti = median { _ in _ = clip.encodeImage(images) }
            let tt = median { _ in _ = clip.encodeText(tokens, batch: textBatch) }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let result: [String: Any] = [
                "engine": "swift", "threads": threads, "model": "\(visionModel)@\(textModel)",
                "img_per_s": Double(imageBatch) / ti, "txt_per_s": Double(textBatch) / tt,
                "peak_rss_mb": Double(usage.ru_maxrss) / 1024,
            ]
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
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
