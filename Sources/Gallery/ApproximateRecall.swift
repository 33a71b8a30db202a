// How much an approximate index loses against exact search: recall@k = the share of the exact top k that the
// approximate top k also holds, averaged over queries. Measured on synthetic galleries shaped like embeddings
// (unit vectors around random cluster centres), since a uniform random gallery has no neighbours worth finding.

import Essentials
import Foundation
import Tensors

/// Recall of approximate search against exact search, and the synthetic galleries it is measured on.
package enum ApproximateRecall {
    /// `count` unit vectors `[count, dim]`: each is a random centre (one of `clusters`) plus Gaussian noise of
    /// `spread` per coordinate relative to the centre's, normalised. Deterministic for a seed; rows are filled in
    /// parallel, each from its own generator, so the result does not depend on the thread count.
    package static func syntheticGallery(count: Int, dim: Int, clusters: Int, spread: Float, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        let centres = (0..<(clusters * dim)).map { _ in rng.nextNormal() }
        var out = [Float](repeating: 0, count: count * dim)
        out.withUnsafeMutableBufferPointer { o in
            let o = o
            parallelFor(count, cost: dim * 8) { rows in
                for r in rows {
                    var g = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(r + 1))
                    let c = Int(g.next() % UInt64(clusters))
                    perturb(
                        centres[(c * dim)..<((c + 1) * dim)], spread: spread, rng: &g,
                        into: UnsafeMutableBufferPointer(rebasing: o[(r * dim)..<((r + 1) * dim)]))
                }
            }
        }
        return out
    }

    /// Queries near gallery items: rows `every`-th of `gallery` with noise of `spread` added, normalised.
    package static func queries(from gallery: [Float], dim: Int, count: Int, spread: Float, seed: UInt64) -> [Float] {
        let n = gallery.count / dim
        var rng = SplitMix64(seed: seed)
        var out = [Float](repeating: 0, count: count * dim)
        out.withUnsafeMutableBufferPointer { o in
            for q in 0..<count {
                let r = Int(rng.next() % UInt64(n))
                perturb(
                    gallery[(r * dim)..<((r + 1) * dim)], spread: spread, rng: &rng,
                    into: UnsafeMutableBufferPointer(rebasing: o[(q * dim)..<((q + 1) * dim)]))
            }
        }
        return out
    }

    /// Writes `base` plus Gaussian noise of `spread` per coordinate, normalised to unit length, into `out`.
    private static func perturb(
        _ base: ArraySlice<Float>, spread: Float, rng: inout SplitMix64,
        into out: UnsafeMutableBufferPointer<Float>
    ) {
        var norm: Float = 0
        for (j, b) in zip(out.indices, base) {
            let v = b + spread * rng.nextNormal()
            out[j] = v
            norm += v * v
        }
        let inv = 1 / norm.squareRoot()
        for j in out.indices { out[j] *= inv }
    }

    /// Mean over queries of |approximate top k ∩ exact top k| / |exact top k|.
    package static func recall(exact: [[GalleryHit]], approximate: [[GalleryHit]], k: Int) -> Double {
        precondition(exact.count == approximate.count, "one result list per query on both sides")
        guard !exact.isEmpty else { return 1 }
        var total = 0.0
        for (e, a) in zip(exact, approximate) {
            let truth = Set(e.prefix(k).map(\.row))
            guard !truth.isEmpty else { total += 1; continue }
            total += Double(Set(a.prefix(k).map(\.row)).intersection(truth).count) / Double(truth.count)
        }
        return total / Double(exact.count)
    }

    /// Exact top k of `queries` `[queryCount, dim]` in `gallery` `[n, dim]` (canonical scores, as make-topk-predictions ranks).
    package static func exact(queries: UnsafeBufferPointer<Float>, gallery: UnsafeBufferPointer<Float>, dim: Int, k: Int) -> [[GalleryHit]] {
        GalleryIndex.exact(queries, gallery: gallery, dim: dim, k: k)
    }

    /// FAISS top k of `queries`, rescored canonically as a gallery's approximate search does.
    package static func approximate(
        _ index: FaissIndex, queries: UnsafeBufferPointer<Float>, gallery: UnsafeBufferPointer<Float>,
        dim: Int, k: Int
    ) throws -> [[GalleryHit]] {
        GalleryIndex.rescored(try index.search(queries.baseAddress!, count: queries.count / dim, k: k), queries: queries, gallery: gallery, dim: dim)
    }
}
