import ArgumentParser
import Foundation
import Gallery

/// `cnclip index recall`: recall@k of a FAISS index against exact search, on a synthetic gallery of any size.
struct IndexRecall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recall",
        abstract: "Measure a FAISS index's recall@k against exact search on a synthetic gallery (no model needed).",
        discussion: """
            The gallery is --count unit vectors of --dim around --clusters random centres; queries are gallery vectors
            with noise. Prints build times and, per --nprobe value, recall@k and search time. Example (BENCHMARKS.md):
            cnclip index recall --count 1000000 --dim 128 --factory auto --nprobe 1,4,16,64
            """)

    @Option(name: .customLong("count"), help: "Gallery vectors.")
    var count = 1_000_000

    @Option(name: .customLong("dim"), help: "Vector length (128: the demo model's embed_dim).")
    var dim = 128

    @Option(name: .customLong("clusters"), help: "Cluster centres of the synthetic gallery.")
    var clusters = 10_000

    @Option(name: .customLong("spread"), help: "Per-coordinate noise around a centre, relative to the centre's.")
    var spread: Float = 0.6

    @Option(name: .customLong("queries"), help: "Queries.")
    var queries = 1000

    @Option(name: .customLong("factory"), help: "FAISS factory string, or auto (IVF with about 4·√count lists, at most one per 39 training vectors).")
    var factory = "auto"

    @Option(name: .customLong("nprobe"), help: "Comma-separated IVF lists probed per query, one measurement each.")
    var nprobe = "1,4,16,64"

    @Option(name: .customLong("training-sample"), help: "Vectors the index is trained on.")
    var trainingSample = 100_000

    @Option(name: .customLong("top-k"), help: "The k of recall@k.")
    var topK = 10

    @Option(name: .customLong("seed"), help: "Seed of the synthetic gallery and queries.")
    var seed: UInt64 = 1

    func validate() throws {
        if count < 1 || dim < 1 || clusters < 1 || queries < 1 || topK < 1 || trainingSample < 1 { throw ValidationError("sizes must be positive") }
        if probes.isEmpty { throw ValidationError("--nprobe needs comma-separated positive integers") }
    }

    var probes: [Int] { nprobe.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 } }

    func run() throws {
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        var start = clock.now
        let gallery = ApproximateRecall.syntheticGallery(count: count, dim: dim, clusters: clusters, spread: spread, seed: seed)
        let q = ApproximateRecall.queries(from: gallery, dim: dim, count: queries, spread: spread / Float(dim).squareRoot(), seed: seed &+ 1)
        print(
            String(
                format: "gallery: %d × %d (%d clusters), %d queries, generated in %.1f s", count, dim, clusters, queries, seconds(clock.now - start)))
        start = clock.now
        let exact = q.withUnsafeBufferPointer { qp in
            gallery.withUnsafeBufferPointer { ApproximateRecall.exact(queries: qp, gallery: $0, dim: dim, k: topK) }
        }
        let exactTime = seconds(clock.now - start)
        print(String(format: "exact (flat) search: %.2f s for %d queries (%.2f ms/query)", exactTime, queries, 1000 * exactTime / Double(queries)))
        try reported {
            let name = factory == "auto" ? GalleryBuilder.autoFactory(count: count, trainingSample: trainingSample) : factory
            let index = try FaissIndex(dim: dim, factory: name)
            start = clock.now
            let sample = min(count, trainingSample)
            var training = [Float](repeating: 0, count: sample * dim)
            for i in 0..<sample {
                let r = Int(Int64(i) * Int64(count) / Int64(sample))
                for j in 0..<dim { training[i * dim + j] = gallery[r * dim + j] }
            }
            if !index.isTrained { try index.train(training, count: sample) }
            let trainTime = seconds(clock.now - start)
            start = clock.now
            try gallery.withUnsafeBufferPointer { try index.add($0.baseAddress!, count: count) }
            print(String(format: "FAISS %@: trained on %d in %.1f s, added %d in %.1f s", name, sample, trainTime, count, seconds(clock.now - start)))
            print("| nprobe | recall@\(topK) | search ms/query |")
            print("| ---: | ---: | ---: |")
            for p in name.uppercased().contains("IVF") ? probes : [0] {
                if p > 0 { try index.setParameter("nprobe", Double(p)) }
                start = clock.now
                let approximate = try q.withUnsafeBufferPointer { qp in
                    try gallery.withUnsafeBufferPointer { try ApproximateRecall.approximate(index, queries: qp, gallery: $0, dim: dim, k: topK) }
                }
                let t = seconds(clock.now - start)
                let recall = ApproximateRecall.recall(exact: exact, approximate: approximate, k: topK)
                print(String(format: "| %@ | %.4f | %.3f |", p > 0 ? String(p) : "-", recall, 1000 * t / Double(queries)))
            }
        }
    }
}
