import ArgumentParser
import Datasets
import Foundation

/// `cnclip synth-dataset`: the synthetic demo dataset (coloured shapes with Chinese captions) in the reference's layout.
struct SynthDataset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth-dataset",
        abstract: "Write a synthetic dataset of coloured shapes with Chinese captions ({split}_imgs.tsv, {split}_texts.jsonl).",
        discussion: """
            Each image (--resolution px square) shows 1 or 2 anti-aliased shapes (圆形/正方形/三角形/星形) in one of 8 colours \
            (红色/绿色/蓝色/黄色/紫色/橙色/黑色/白色), large (大) or small (小), at distinct positions \
            (左上角/右上角/中间/左下角/右下角) on a noisy grey background. Captions name the shapes in that position order, \
            e.g. "左上角有一个红色的大圆形，中间有一个黑色的小三角形", so identical scenes have identical captions; the longest \
            is 29 tokens with [CLS] and [SEP], so train with context length 32.
            Files per split: {split}_imgs.tsv (image_id<TAB>base64), {split}_texts.jsonl (one text per image, \
            image_ids [its image]: strict Recall) and {split}_texts.caption_groups.jsonl (the same text ids, image_ids = \
            every image of the split with that caption: pass it as ground truth for the Recall that counts any image with \
            the query's caption as a hit). Image ids are 1000001, 1000002, …, text ids 1, 2, …, consecutive over \
            train, valid, test.
            The output depends only on --seed, --resolution and the split sizes (not on --threads); a split's images and \
            captions do not depend on the other splits' sizes. JPEG quality 90 is the default: at 64 px the default set's TSVs hold \
            56 MB as JPEG and 241 MB as PNG (the noise does not compress losslessly), and PNG takes about 5× longer.
            Files are written to a temporary directory and renamed into place at the end.
            Example: cnclip synth-dataset --output synth && cnclip build-lmdb --data_dir synth --splits train,valid,test
            """)

    @Option(name: [.customLong("output"), .customLong("data-dir"), .customLong("data_dir")], help: "Output directory.")
    var output: String

    @Option(name: .customLong("train"), help: "Training images.")
    var train = 20_000

    @Option(name: .customLong("valid"), help: "Validation images.")
    var valid = 1_000

    @Option(name: .customLong("test"), help: "Test images.")
    var test = 1_000

    @Option(name: .customLong("resolution"), help: "Image side in pixels (16...1024).")
    var resolution = 64

    @Option(name: .customLong("seed"), help: "Seed: the same seed gives the same files.")
    var seed: UInt64 = SyntheticDataset.defaultSeed

    @Option(name: [.customLong("image-format"), .customLong("image_format")], help: "jpeg or png.")
    var imageFormat = "jpeg"

    @Option(name: [.customLong("jpeg-quality"), .customLong("jpeg_quality")], help: "JPEG quality (1...100).")
    var jpegQuality = 90

    @Option(name: .customLong("threads"), help: "Rendering threads (default: all cores); does not change the output.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    var encoding: SyntheticDataset.Encoding? {
        switch imageFormat.lowercased() {
        case "jpeg", "jpg": return .jpeg(quality: jpegQuality)
        case "png": return .png
        default: return nil
        }
    }

    var splits: [(name: String, count: Int)] { [("train", train), ("valid", valid), ("test", test)] }

    func validate() throws {
        guard let encoding else { throw ValidationError("--image-format '\(imageFormat)': expected jpeg or png") }
        do { try SyntheticDataset.validate(splits: splits, resolution: resolution, encoding: encoding, threads: threads) } catch {
            // The library names the value; the user typed a flag.
            let message = error.description
                .replacingOccurrences(of: "split train:", with: "--train:").replacingOccurrences(of: "split valid:", with: "--valid:")
                .replacingOccurrences(of: "split test:", with: "--test:").replacingOccurrences(of: "resolution ", with: "--resolution ")
                .replacingOccurrences(of: "JPEG quality ", with: "--jpeg-quality ").replacingOccurrences(of: "threads ", with: "--threads ")
                .replacingOccurrences(of: "every split has 0 images", with: "--train, --valid and --test are all 0")
            throw ValidationError(message)
        }
    }

    func run() throws {
        try reported {
            let pending = PendingPath()
            let cleanup = removeOnSignal { pending.get() }
            defer { cleanup.forEach { $0.cancel() } }
            let bar = ProgressLine(label: "images")
            let start = Date()
            let made = try SyntheticDataset.write(
                to: output, splits: splits, seed: seed, resolution: resolution, encoding: encoding!, threads: threads,
                progress: { done, total in bar.update(Int64(done), Int64(total), unit: "images") },
                temporaryDirectoryChanged: { pending.set($0) })
            bar.finish()
            for m in made {
                let tsv = (output as NSString).appendingPathComponent("\(m.split)_imgs.tsv")
                let size = ((try? FileManager.default.attributesOfItem(atPath: tsv))?[.size] as? NSNumber)?.int64Value ?? 0
                print(
                    "\(m.split): \(m.images) images, \(m.texts) texts → \(tsv) (\(String(format: "%.1f", Double(size) / 1_048_576)) MiB), "
                        + "\(output)/\(m.split)_texts.jsonl, \(output)/\(m.split)_texts.caption_groups.jsonl")
            }
            print(String(format: "done in %.1f s", Date().timeIntervalSince(start)))
        }
    }
}
