import ArgumentParser
import ChineseCLIP
import Datasets
import Distributed
import Essentials
import Evaluation
import FeatureExtraction
import Foundation
import Tensors

/// `cnclip extract-features`: cn-clip's `eval/extract_features.py` — image and text features as JSON lines.
struct ExtractFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract-features",
        abstract: "Extract L2-normalised image features from an LMDB and text features from a JSONL, as extract_features.py does.",
        discussion: """
            Writes {"text_id": ID, "feature": [...]} per line of --text-data (file order) and {"image_id": ID, "feature": \
            [...]} per image of the --image-data LMDB (key byte order, as the reference's cursor walks it), numbers \
            formatted as the reference's json.dumps writes them. Texts are lower-cased and “ ” mapped to " first, as the \
            reference's eval dataset does. Default outputs, derived from --text-data as the reference derives them: \
            texts → TEXT_DATA minus its last 6 characters + ".txt_feat.jsonl"; images → TEXT_DATA with "_texts.jsonl" \
            replaced by "_imgs" + ".img_feat.jsonl".
            --precision amp, fp16 and fp32 compute in fp32 (the reference's "amp" and "fp32" compute in fp32 on its GPU \
            too; "fp16" would differ in the last digits); int8 computes the linear layers in int8. --debug is accepted \
            and ignored.
            Several processes: `mpirun -np N cnclip extract-features …` shares the batches among the ranks (rank r computes \
            batches r, r+N, …, each batch as a one-process run forms it) and rank 0 writes the files a one-process run \
            with the same --threads writes, byte for byte. Each rank uses --threads compute threads (default: the host's \
            cores divided among its ranks); the thread count can change the last digits, as it splits matrix products.
            Model: --resume CHECKPOINT with --vision-model/--text-model (defaults ViT-B-16 and RoBERTa-wwm-ext-base-chinese, \
            as the reference) or --config, or --model NAME.
            Example: cnclip extract-features --extract-image-feats --extract-text-feats --image-data data/lmdb/valid/imgs \\
              --text-data data/valid_texts.jsonl --resume epoch_latest.pt --vision-model ViT-B-16 --text-model RoBERTa-wwm-ext-base-chinese
            """)

    @Flag(name: .customLong("extract-image-feats"), help: "Extract image features.")
    var extractImageFeats = false

    @Flag(name: .customLong("extract-text-feats"), help: "Extract text features.")
    var extractTextFeats = false

    @Option(name: .customLong("image-data"), help: "The LMDB directory of the images (a {split}/imgs directory).")
    var imageData = "../Multimodal_Retrieval/lmdb/test/imgs"

    @Option(name: .customLong("text-data"), help: "The texts JSONL ({\"text_id\", \"text\", …} per line).")
    var textData = "../Multimodal_Retrieval/test_texts.jsonl"

    @Option(name: .customLong("image-feat-output-path"), help: "Image features output (default derived from --text-data).")
    var imageFeatOutputPath: String?

    @Option(name: .customLong("text-feat-output-path"), help: "Text features output (default derived from --text-data).")
    var textFeatOutputPath: String?

    @Option(name: .customLong("img-batch-size"), help: "Image batch size.")
    var imgBatchSize = 64

    @Option(name: .customLong("text-batch-size"), help: "Text batch size.")
    var textBatchSize = 64

    @Option(name: .customLong("context-length"), help: "Tokens per text, [CLS] and [SEP] included.")
    var contextLength = 52

    @Flag(name: .customLong("debug"), help: "Accepted for compatibility; ignored.")
    var debug = false

    @Option(name: .customLong("threads"), help: "Compute threads per process (default: all cores, shared among the ranks mpirun starts on a host).")
    var threads: Int?

    @OptionGroup var model: ModelOptions

    func validate() throws {
        if !extractImageFeats && !extractTextFeats {
            throw ValidationError("--extract-image-feats and --extract-text-feats cannot both be False!")
        }
        if imgBatchSize < 1 || textBatchSize < 1 { throw ValidationError("batch sizes must be positive") }
        if contextLength < 2 { throw ValidationError("--context-length must be at least 2") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The reference's default text output: `text_data[:-6] + ".txt_feat.jsonl"` (Python slices by characters).
    static func defaultTextOutput(_ textData: String) -> String { String(textData.dropLast(6)) + ".txt_feat.jsonl" }

    /// The reference's default image output: `text_data.replace("_texts.jsonl", "_imgs") + ".img_feat.jsonl"`.
    static func defaultImageOutput(_ textData: String) -> String {
        textData.replacingOccurrences(of: "_texts.jsonl", with: "_imgs") + ".img_feat.jsonl"
    }

    @OptionGroup var imageLimit: ImageLimitOptions
    @OptionGroup var communication: CommunicationOptions

    func run() throws {
        imageLimit.apply()
        let communicator: Communicator
        do { communicator = try communication.communicator() } catch {
            printError("error: cannot join the MPI job: \(error)")
            throw ExitCode.failure
        }
        let ranks = communicator.worldSize
        do {
            try extract(communicator)
        } catch {
            if !(error is ExitCode) {
                let whose = ranks > 1 ? " (rank \(communicator.rank) of \(ranks))" : ""
                printError("error\(whose): \(error)")
            }
            // The other ranks may be waiting for this one in a collective: end the whole job, not just this process.
            if ranks > 1 { communicator.abort(code: 1) }
            throw ExitCode.failure
        }
        // mpirun counts a rank that exits without MPI_Finalize as failed.
        communicator.finish()
    }

    /// Extracts the features on this rank's batches; rank 0 gathers every rank's lines and writes the files.
    private func extract(_ communicator: Communicator) throws {
        let main = communicator.isMain
        ComputeThreads.set(threads ?? ProcessPlacement().computeThreads)
        let shard = try BatchShard(index: communicator.rank, count: communicator.worldSize)
        // The reference defaults the presets; ModelOptions has no defaults because other commands need none.
        let clip = try model.load(defaultPresets: ("ViT-B-16", "RoBERTa-wwm-ext-base-chinese"))
        if contextLength > clip.config.textMaxPositionEmbeddings {
            throw CLIPError.invalidInput("--context-length \(contextLength) exceeds the model's \(clip.config.textMaxPositionEmbeddings) positions")
        }
        var extractor = FeatureExtractor(model: clip)
        let pending = PendingPath()
        let cleanup = removeOnSignal { pending.get() }
        defer { cleanup.forEach { $0.cancel() } }
        if extractTextFeats {
            let path = textFeatOutputPath ?? Self.defaultTextOutput(textData)
            if main { print("Make inference for texts...") }
            let out = main ? try AtomicOutputFile(path: path) : nil
            pending.set(out?.temporaryPath)
            let sink = GatheredFeatureWriter(communicator: communicator, output: out, label: "texts")
            extractor.progress = nil
            try extractor.extractTextFeatures(jsonlPath: textData, batchSize: textBatchSize, contextLength: contextLength, shard: shard) { ids, f in
                try sink.add(Self.lines(f, ids.map(Self.jsonID), key: "text_id"), count: ids.count)
            }
            let n = try sink.finish()
            if let out {
                try out.commit()
                print("\(n) text features are stored in \(path)")
            }
        }
        if extractImageFeats {
            let path = imageFeatOutputPath ?? Self.defaultImageOutput(textData)
            if main { print("Make inference for images...") }
            let out = main ? try AtomicOutputFile(path: path) : nil
            pending.set(out?.temporaryPath)
            let sink = GatheredFeatureWriter(communicator: communicator, output: out, label: "images")
            // The extractor knows the LMDB's image count: it gives the progress line its total.
            extractor.progress = { _, total in sink.total = total }
            try extractor.extractImageFeatures(lmdbPath: imageData, batchSize: imgBatchSize, shard: shard) { ids, f in
                try sink.add(Self.lines(f, ids.map(String.init), key: "image_id"), count: ids.count)
            }
            let n = try sink.finish()
            if let out {
                try out.commit()
                print("\(n) image features are stored in \(path)")
            }
        }
        pending.set(nil)
        if main { print("Done!") }
    }

    /// A `text_id` as json.dumps writes it (non-ASCII text kept as UTF-8).
    static func jsonID(_ v: PyJSON) -> String { pythonDumps(v, ensureASCII: false) }

    /// One feature line per row of `features` (`[n, embed]`), UTF-8 encoded.
    private static func lines(_ features: Tensor, _ ids: [String], key: String) -> [UInt8] {
        let width = features.shape[1]
        let scalars = features.scalars
        var text = ""
        scalars.withUnsafeBufferPointer { all in
            for (i, id) in ids.enumerated() {
                text += FeatureLine.format(idKey: key, id: id, feature: UnsafeBufferPointer(rebasing: all[i * width..<(i + 1) * width]))
            }
        }
        return Array(text.utf8)
    }
}

/// A rank whose batches do not fit the round-robin order (a bug, not a user error).
struct GatherOrderError: Error, CustomStringConvertible {
    /// What went wrong.
    let description: String
}

/// Gathers the feature lines the ranks compute batch by batch into rank 0's output file, in input order.
///
/// It works in rounds: in round k every rank brings its k-th batch, which is batch k·N + rank of the input, so
/// rank 0 receives batches k·N … k·N + N − 1 in rank order — input order — and writes them as they come (memory
/// stays at one round's lines, whatever the dataset's size). The first round short of a batch is the last: batch
/// k·N + r missing means no batch k·N + N or later exists, and every rank learns it from the same all-reduce, so
/// all ranks make the same number of collective calls. In a one-process run this is simply "write each batch".
final class GatheredFeatureWriter {
    private let communicator: Communicator
    private let output: AtomicOutputFile?
    private let progress: ProgressLine?
    private let unit: String
    private var ended = false
    /// Lines written so far, over all ranks.
    private(set) var count = 0
    /// The number of items expected, when known (for the progress line).
    var total: Int?

    /// Rank 0 passes the `output` it writes to; other ranks pass nil. `label` names the items in the progress line.
    init(communicator: Communicator, output: AtomicOutputFile?, label: String) {
        self.communicator = communicator
        self.output = output
        progress = output == nil ? nil : ProgressLine(label: label)
        unit = label
    }

    /// Contributes this rank's next batch: `lines` (UTF-8) holding `count` feature lines.
    func add(_ lines: [UInt8], count: Int) throws {
        guard !ended else {
            throw GatherOrderError(description: "rank \(communicator.rank) has a batch after the last round of \(communicator.worldSize) ranks")
        }
        try round(lines, count)
    }

    /// Takes part in the remaining rounds with nothing to add, then returns the number of lines over all ranks.
    func finish() throws -> Int {
        while !ended { try round(nil, 0) }
        progress?.finish()
        return count
    }

    private func round(_ lines: [UInt8]?, _ items: Int) throws {
        let gathered = try communicator.gather(lines ?? [], root: 0)
        let sums = try communicator.allReduceSum([lines == nil ? 0 : 1, Double(items)])
        if let output, let gathered {
            for part in gathered { try part.withUnsafeBufferPointer { try output.write(bytes: $0) } }
        }
        count += Int(sums[1])
        if Int(sums[0]) < communicator.worldSize { ended = true }
        progress?.update(Int64(count), total.map(Int64.init), unit: unit)
    }
}
