import ArgumentParser
import Datasets
import Foundation

/// `cnclip make-dataset`: an image folder and a captions file → the reference's TSV/JSONL dataset layout.
struct MakeDataset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-dataset",
        abstract: "Make {split}_imgs.tsv and {split}_texts.jsonl from a folder of images and a captions file.",
        discussion: """
            Captions: a CSV file with a header naming the columns image_path and caption (quote captions holding commas), \
            or a JSONL file (.jsonl) of {"image": PATH, "caption": TEXT}; an image may have several captions. Paths are \
            relative to --images.
            Ids: images are numbered 1, 2, … in order of first appearance in the captions file; texts 1, 2, … in order of \
            first appearance; identical captions of several images in one split become one text with several image_ids.
            Splits: images are shuffled (SplitMix64 seeded with --seed, so the split is the same on every machine) and cut \
            by --split-ratio into train, valid and test; a split with ratio 0 is not written.
            Images: each file is decoded to check it. Without --resize the TSV holds the file's own bytes (base64); with \
            --resize N the image is scaled so its shorter side is N pixels (aspect ratio kept, Pillow's bicubic, never \
            enlarged), converted to RGB and stored as JPEG (--jpeg-quality). Training resizes to the model's square \
            resolution anyway, so N = the model's resolution (224) loses nothing and makes the dataset much smaller.
            Output files are written to a temporary directory and renamed into place at the end.
            Example: cnclip make-dataset --images photos --captions captions.csv --output data --split-ratio 8:1:1
            then: cnclip build-lmdb --data_dir data --splits train,valid,test
            """)

    @Option(
        name: [.customLong("images"), .customLong("image-dir"), .customLong("image_dir")],
        help: "The folder the captions' image paths are relative to.")
    var images: String

    @Option(name: [.customLong("captions")], help: "CSV (image_path,caption with a header) or JSONL ({\"image\", \"caption\"}) captions file.")
    var captions: String

    @Option(name: [.customLong("output"), .customLong("data-dir"), .customLong("data_dir")], help: "Output directory for the TSV/JSONL files.")
    var output: String

    @Option(name: [.customLong("split-ratio"), .customLong("split_ratio")], help: "train,valid,test weights, e.g. 0.8,0.1,0.1 or 8:1:1.")
    var splitRatio = "1"

    @Option(name: [.customLong("seed")], help: "Seed of the deterministic image shuffle that assigns splits.")
    var seed: UInt64 = 0

    @Option(name: [.customLong("resize")], help: "Re-encode as JPEG with the shorter side scaled to N pixels.")
    var resize: Int?

    @Option(name: [.customLong("jpeg-quality"), .customLong("jpeg_quality")], help: "JPEG quality with --resize.")
    var jpegQuality = 95

    func validate() throws {
        if let r = resize, r < 1 { throw ValidationError("--resize must be a positive number of pixels") }
        if !(1...100).contains(jpegQuality) { throw ValidationError("--jpeg-quality must be in 1...100") }
    }

    @OptionGroup var imageLimit: ImageLimitOptions

    func run() throws {
        imageLimit.apply()
        try reported {
            var maker = DatasetMaker(imagesDirectory: images, captionsFile: captions, outputDirectory: output)
            maker.splits = try DatasetMaker.parseRatios(splitRatio)
            maker.seed = seed
            maker.resize = resize
            maker.jpegQuality = jpegQuality
            let pending = PendingPath()
            maker.temporaryDirectoryChanged = { pending.set($0) }
            let cleanup = removeOnSignal { pending.get() }
            defer { cleanup.forEach { $0.cancel() } }
            let bar = ProgressLine(label: "images")
            maker.progress = { done, total in bar.update(Int64(done), Int64(total), unit: "images") }
            let made = try maker.make()
            bar.finish()
            for m in made {
                print("\(m.split): \(m.images) images, \(m.texts) texts → \(output)/\(m.split)_imgs.tsv, \(output)/\(m.split)_texts.jsonl")
            }
        }
    }
}
