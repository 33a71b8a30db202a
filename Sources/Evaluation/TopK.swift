// Top-k retrieval as `make_topk_predictions.py` / `make_topk_predictions_tr.py` do it, without their cost.
//
// The reference scores one query at a time (`query @ gallery_block.T`, float32, MKL on the CPU), turns the
// scores to Python floats and takes `sorted(..., key=score, reverse=True)[:k]`: descending score, and as
// Python's sort is stable even when reversed, equal scores keep gallery file order. We compute the same
// float32 scores with blocked GEMM (a block of queries × a block of gallery rows at a time, never the whole
// score matrix) and keep each query's best k in a bounded heap ordered by (score desc, gallery index asc),
// which selects exactly what the stable sort's first k are.
//
// What we guarantee, and what we cannot:
// - The GEMM's float32 scores only filter: their last bits depend on the kernel's summation order (ours is the
//   same for every shape and thread split, but a vendor BLAS — OpenBLAS, which the engine used before, gives two
//   identical gallery rows different last bits by the call's shape — or another machine's kernel need not be),
//   so a pair that may enter the top k (its GEMM score within a proven error bound of the k-th) is scored again canonically:
//   the exact dot product rounded once to float (`canonicalDot`). Equal features therefore get equal scores and
//   exact ties keep file order, and rankings do not depend on `--eval-batch-size`, blocking or thread count.
// - The reference's float32 MKL scores differ from the exact ones by up to ~2 ulp (on the fixture 34% of its
//   scores equal the canonical ones, the rest differ by 1 ulp). Two *different* gallery items whose scores are
//   that close (|Δ| ≲ 1e-7 for unit features) may be ranked the other way round than the reference ranks them.
//   Everything farther apart ranks identically. scripts/bench-topk.sh counts such differences at scale.
// - NaN scores (NaN in a feature): Python's sort gives an order that depends on where the NaN sits; we rank a
//   NaN below every number. Not parity.

import Essentials
import Foundation
import Tensors

/// How to run a top-k search.
package struct TopKOptions: Sendable {
    /// How many predictions per query (`--top-k`); negative values behave as Python's `[:k]` slice does.
    package var k: Int
    /// Gallery rows scored per block (`--eval-batch-size`, the reference's "image-side batch size").
    package var galleryBlockRows: Int
    /// Queries scored per block (bounded so a score block stays within `scoreBlockBytes`).
    package var queryBlockRows: Int?
    /// The largest score block held at once, in bytes.
    package var scoreBlockBytes: Int

    /// Options with the reference's defaults (`--top-k 10`, `--eval-batch-size 32768`).
    package init(k: Int = 10, galleryBlockRows: Int = 32768, queryBlockRows: Int? = nil, scoreBlockBytes: Int = 64 << 20) {
        self.k = k; self.galleryBlockRows = galleryBlockRows; self.queryBlockRows = queryBlockRows; self.scoreBlockBytes = scoreBlockBytes
    }

    /// How many items Python's `sorted(...)[:k]` keeps out of `n`.
    package func keep(of n: Int) -> Int { k >= 0 ? min(k, n) : max(0, n + k) }
}

/// Each query's best k so far, as flat arrays (`[queries, k]`), kept as min-heaps whose root is the worst entry.
package struct TopKAccumulator {
    /// Entries kept per query.
    package let k: Int
    /// Queries.
    package let queries: Int
    var scores: [Float]
    var indices: [Int]
    var filled: [Int]

    /// An empty accumulator for `queries` queries keeping `k` entries each.
    package init(queries: Int, k: Int) {
        self.k = k; self.queries = queries
        scores = [Float](repeating: 0, count: queries * max(k, 0))
        indices = [Int](repeating: 0, count: queries * max(k, 0))
        filled = [Int](repeating: 0, count: queries)
    }

    /// Offers a `[rows, cols]` score block (row stride `ldc`) for queries `q0..<q0+rows` and gallery rows
    /// `g0..<g0+cols`. Blocks must arrive in increasing gallery order, so a later equal score never displaces an
    /// earlier one (the stable sort's rule). With `refine`, the block's scores are only a filter and each
    /// candidate's kept score is `refine`'s canonical one; without it the block's scores are kept as they are.
    package mutating func offer(
        scores block: UnsafePointer<Float>, ldc: Int, rows: Int, cols: Int, q0: Int, g0: Int,
        refine: CanonicalScores? = nil
    ) {
        let k = self.k
        guard k > 0 else { return }
        scores.withUnsafeMutableBufferPointer { sp in
            indices.withUnsafeMutableBufferPointer { ip in
                filled.withUnsafeMutableBufferPointer { fp in
                    let sp = sp, ip = ip, fp = fp
                    parallelFor(rows, cost: cols) { range in
                        for r in range {
                            let q = q0 + r
                            let hs = sp.baseAddress! + q * k, hi = ip.baseAddress! + q * k
                            var n = fp[q]
                            let row = block + r * ldc
                            var worst = n == k ? hs[0] : -.infinity
                            if let refine {
                                let qb = refine.queryBound[q]
                                for c in 0..<cols {
                                    if n < k {
                                        let d = refine.score(q, c)
                                        Self.push(hs, hi, &n, d.isNaN ? -.infinity : d, g0 + c)
                                        if n == k { worst = hs[0] }
                                    } else if row[c] + qb * refine.galleryNorm[c] >= worst {
                                        // Within the GEMM's error bound of the k-th: decide on the canonical score.
                                        let d = refine.score(q, c)
                                        if d > worst { Self.replaceRoot(hs, hi, k, d, g0 + c); worst = hs[0] }
                                    }
                                }
                            } else {
                                for c in 0..<cols {
                                    let s = row[c]
                                    if n < k {
                                        Self.push(hs, hi, &n, s.isNaN ? -.infinity : s, g0 + c)
                                        if n == k { worst = hs[0] }
                                    } else if s > worst {
                                        // Strictly greater: an equal score from a later row ranks after the kept one.
                                        Self.replaceRoot(hs, hi, k, s, g0 + c)
                                        worst = hs[0]
                                    }
                                }
                            }
                            fp[q] = n
                        }
                    }
                }
            }
        }
    }

    /// True when entry a ranks below entry b (lower score, or equal score and later row).
    @inline(__always) static func worse(_ sa: Float, _ ia: Int, _ sb: Float, _ ib: Int) -> Bool {
        sa < sb || (sa == sb && ia > ib)
    }

    @inline(__always) static func push(_ hs: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Int>, _ n: inout Int, _ s: Float, _ idx: Int) {
        var c = n
        n += 1
        while c > 0 {
            let parent = (c - 1) / 2
            if worse(s, idx, hs[parent], hi[parent]) { hs[c] = hs[parent]; hi[c] = hi[parent]; c = parent } else { break }
        }
        hs[c] = s; hi[c] = idx
    }

    @inline(__always) static func replaceRoot(_ hs: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Int>, _ n: Int, _ s: Float, _ idx: Int) {
        var c = 0
        while true {
            let l = 2 * c + 1
            if l >= n { break }
            var m = l
            let r = l + 1
            if r < n && worse(hs[r], hi[r], hs[l], hi[l]) { m = r }
            if worse(hs[m], hi[m], s, idx) { hs[c] = hs[m]; hi[c] = hi[m]; c = m } else { break }
        }
        hs[c] = s; hi[c] = idx
    }

    /// Query `q`'s kept gallery indices, best first (score descending, file order among equal scores).
    package func ranked(_ q: Int) -> [Int] {
        let n = filled[q]
        var pairs = (0..<n).map { (scores[q * k + $0], indices[q * k + $0]) }
        pairs.sort { Self.worse($1.0, $1.1, $0.0, $0.1) }
        return pairs.map { $0.1 }
    }

    /// Query `q`'s kept scores, best first.
    package func rankedScores(_ q: Int) -> [Float] {
        let n = filled[q]
        var pairs = (0..<n).map { (scores[q * k + $0], indices[q * k + $0]) }
        pairs.sort { Self.worse($1.0, $1.1, $0.0, $0.1) }
        return pairs.map { $0.0 }
    }
}

/// The canonical score of a (query, gallery row) pair and the bound that lets a GEMM score stand in for it.
///
/// The canonical score is the exact dot product (float products are exact in double; summed in double in a
/// fixed order) rounded once to float: it depends only on the two features, never on blocking, threads or the GEMM
/// kernel's summation order. A float32 GEMM
/// score `s` of the same pair satisfies |s - exact| <= (dim + 1) * 2^-24 * |q| * |g| whatever its summation
/// order, so `s + queryBound[q] * galleryNorm[g] < k-th canonical score` proves the pair cannot enter the top k.
package struct CanonicalScores {
    /// Queries, `[queries, dim]`.
    package let queries: UnsafePointer<Float>
    /// The gallery block, `[cols, dim]`.
    package let gallery: UnsafePointer<Float>
    /// Feature length.
    package let dim: Int
    /// Per query: `(dim + 8) * 2^-24 * |q|` (with slack for the norm's own rounding).
    package let queryBound: UnsafePointer<Float>
    /// Per gallery row of the block: `|g|`.
    package let galleryNorm: UnsafePointer<Float>

    /// The canonical score of query `q` and block row `c`.
    @inline(__always) package func score(_ q: Int, _ c: Int) -> Float {
        canonicalDot(queries + q * dim, gallery + c * dim, dim)
    }
}

/// `Float(exact dot product)`: float products are exact in double; four fixed partial sums keep it deterministic.
@inline(__always) package func canonicalDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i + 4 <= n {
        s0 += Double(a[i]) * Double(b[i]); s1 += Double(a[i + 1]) * Double(b[i + 1])
        s2 += Double(a[i + 2]) * Double(b[i + 2]); s3 += Double(a[i + 3]) * Double(b[i + 3])
        i += 4
    }
    while i < n { s0 += Double(a[i]) * Double(b[i]); i += 1 }
    return Float((s0 + s1) + (s2 + s3))
}

/// Euclidean norms of `count` rows of length `dim`, rounded up slightly so the bound stays a bound.
func rowNorms(_ p: UnsafePointer<Float>, count: Int, dim: Int) -> [Float] {
    var out = [Float](repeating: 0, count: count)
    out.withUnsafeMutableBufferPointer { o in
        let o = o
        parallelFor(count, cost: dim) { range in
            for r in range {
                var s = 0.0
                for i in 0..<dim { let x = Double(p[r * dim + i]); s += x * x }
                o[r] = Float(s.squareRoot() * (1 + 1e-6)) + Float.leastNormalMagnitude
            }
        }
    }
    return out
}

/// The blocked top-k search: queries held in memory, the gallery arriving in blocks.
package enum TopKSearch {
    /// Scores one gallery block `[count, dim]` against all queries `[queries, dim]` and offers the scores to `acc`.
    /// `g0` is the block's first gallery row; blocks must come in file order.
    /// `queryBounds` are `queryBounds(queries:count:dim:)` of the queries (computed once by the caller).
    package static func accumulate(
        queries: UnsafeBufferPointer<Float>, queryCount: Int, dim: Int,
        gallery: UnsafeBufferPointer<Float>, galleryCount: Int, g0: Int,
        options: TopKOptions, queryBounds: [Float]? = nil, into acc: inout TopKAccumulator,
        queriesDone: ((Int) -> Void)? = nil
    ) {
        guard queryCount > 0, galleryCount > 0, acc.k > 0 else { return }
        let bounds = dim == 0 ? [] : queryBounds ?? Self.queryBounds(queries: queries.baseAddress!, count: queryCount, dim: dim)
        let gNorms = dim == 0 ? [] : rowNorms(gallery.baseAddress!, count: galleryCount, dim: dim)
        let qb = max(1, min(queryCount, options.queryBlockRows ?? max(1, options.scoreBlockBytes / 4 / galleryCount)))
        var scores = [Float](repeating: 0, count: qb * galleryCount)
        scores.withUnsafeMutableBufferPointer { sp in
            var q0 = 0
            while q0 < queryCount {
                let rows = min(qb, queryCount - q0)
                if dim == 0 {
                    for t in 0..<(rows * galleryCount) { sp[t] = 0 }
                } else {
                    // scores[rows, galleryCount] = queries[q0..<q0+rows] @ gallery.T
                    BLAS.gemm(
                        transB: true, m: rows, n: galleryCount, k: dim,
                        a: queries.baseAddress! + q0 * dim, lda: dim,
                        b: gallery.baseAddress!, ldb: dim,
                        c: sp.baseAddress!, ldc: galleryCount)
                }
                if dim == 0 {
                    acc.offer(scores: sp.baseAddress!, ldc: galleryCount, rows: rows, cols: galleryCount, q0: q0, g0: g0)
                    q0 += rows
                    continue
                }
                bounds.withUnsafeBufferPointer { bp in
                    gNorms.withUnsafeBufferPointer { np in
                        let refine = CanonicalScores(
                            queries: queries.baseAddress!, gallery: gallery.baseAddress!, dim: dim,
                            queryBound: bp.baseAddress!, galleryNorm: np.baseAddress!)
                        acc.offer(scores: sp.baseAddress!, ldc: galleryCount, rows: rows, cols: galleryCount, q0: q0, g0: g0, refine: refine)
                    }
                }
                q0 += rows
                queriesDone?(q0)
            }
        }
    }

    /// Per query `(dim + 8) * 2^-24 * |q|`: with a gallery row's norm, the most a float32 GEMM score can differ
    /// from the canonical score.
    package static func queryBounds(queries: UnsafePointer<Float>, count: Int, dim: Int) -> [Float] {
        let c = Float(dim + 8) * Float(1.0 / 16_777_216.0)
        return rowNorms(queries, count: count, dim: dim).map { $0 * c }
    }

    /// Ranks an in-memory gallery for in-memory queries; returns each query's gallery indices, best first.
    package static func search(queries: [Float], gallery: [Float], dim: Int, options: TopKOptions) -> [[Int]] {
        queries.withUnsafeBufferPointer { qp in
            gallery.withUnsafeBufferPointer { gp in searchScored(queries: qp, gallery: gp, dim: dim, options: options).map(\.indices) }
        }
    }

    /// Ranks a gallery `[galleryRows, dim]` for queries `[queryRows, dim]` (both borrowed, e.g. a memory-mapped
    /// file) and returns each query's best `options.k` gallery rows with their canonical scores, best first —
    /// the ranking `make-topk-predictions` writes.
    package static func searchScored(
        queries qp: UnsafeBufferPointer<Float>, gallery gp: UnsafeBufferPointer<Float>, dim: Int,
        options: TopKOptions
    ) -> [(indices: [Int], scores: [Float])] {
        let nq = dim == 0 ? 0 : qp.count / dim, ng = dim == 0 ? 0 : gp.count / dim
        var acc = TopKAccumulator(queries: nq, k: options.keep(of: ng))
        let bounds = nq > 0 && dim > 0 ? queryBounds(queries: qp.baseAddress!, count: nq, dim: dim) : []
        var g0 = 0
        let block = max(1, options.galleryBlockRows)
        while g0 < ng {
            let n = min(block, ng - g0)
            accumulate(
                queries: qp, queryCount: nq, dim: dim,
                gallery: UnsafeBufferPointer(rebasing: gp[(g0 * dim)..<((g0 + n) * dim)]), galleryCount: n, g0: g0,
                options: options, queryBounds: bounds, into: &acc)
            g0 += n
        }
        return (0..<nq).map { (acc.ranked($0), acc.rankedScores($0)) }
    }
}

/// Which way a prediction file goes.
package enum RetrievalDirection: Sendable {
    /// Text → image (`make_topk_predictions.py`): queries are texts, the gallery images.
    case textToImage
    /// Image → text (`make_topk_predictions_tr.py`): queries are images, the gallery texts.
    case imageToText

    /// The query side's id key.
    package var queryKey: String { self == .textToImage ? "text_id" : "image_id" }
    /// The gallery side's id key.
    package var galleryKey: String { self == .textToImage ? "image_id" : "text_id" }
    /// The predictions' list key.
    package var predictionsKey: String { self == .textToImage ? "image_ids" : "text_ids" }
}

/// Writes a top-k prediction file from two feature files, as the reference scripts do, streaming the gallery.
package enum TopKPredictions {
    /// Progress: gallery bytes parsed and scored so far, of the total.
    package typealias Progress = (_ done: Int64, _ total: Int64) -> Void

    /// Seconds spent in each phase of a run.
    package struct Timings: Sendable {
        /// Reading and parsing the query file.
        package var parseQueries = 0.0
        /// Reading and parsing the gallery file.
        package var parseGallery = 0.0
        /// GEMM, selection and canonical rescoring.
        package var score = 0.0
        /// Writing the prediction file.
        package var write = 0.0
    }

    /// Reads all queries, streams the gallery file in blocks of `options.galleryBlockRows`, and writes
    /// `{"<query key>": id, "<predictions key>": [ids]}` lines (Python `json.dumps` text) to `output` atomically.
    @discardableResult
    package static func run(
        imageFeatures: String, textFeatures: String, direction: RetrievalDirection,
        options: TopKOptions, output: String, progress: Progress? = nil
    ) throws -> Timings {
        var timings = Timings()
        var clock = DispatchTime.now().uptimeNanoseconds
        func lap() -> Double {
            let now = DispatchTime.now().uptimeNanoseconds
            defer { clock = now }
            return Double(now - clock) / 1e9
        }
        guard options.galleryBlockRows > 0 else { throw RetrievalError.invalidArgument("--eval-batch-size must be positive") }
        let (queryPath, galleryPath) = direction == .textToImage ? (textFeatures, imageFeatures) : (imageFeatures, textFeatures)
        let queries = try FeatureFileReader(path: queryPath, idKey: direction.queryKey).readAll()
        timings.parseQueries = lap()
        let gallery = try FeatureFileReader(path: galleryPath, idKey: direction.galleryKey, dim: queries.count > 0 ? queries.dim : nil)
        // Gallery ids are all kept (the output names them); features only one block at a time.
        var galleryIDs: [String] = []
        // Python's [:k] on a list of n items: know n only at the end, so keep max(k, 0) now and trim later for k < 0.
        let keepNow = options.k >= 0 ? options.k : Int.max
        var acc: TopKAccumulator?
        let bounds =
            queries.count > 0 && queries.dim > 0
            ? queries.values.withUnsafeBufferPointer {
                TopKSearch.queryBounds(queries: $0.baseAddress!, count: queries.count, dim: queries.dim)
            } : []
        var blocks: [FeatureBlock] = []  // only used when k < 0 (we must see n first)
        var bytesBefore: Int64 = 0
        while let block = try gallery.nextBlock(maxRows: options.galleryBlockRows) {
            timings.parseGallery += lap()
            let bytesAfter = gallery.bytesRead, blockBytes = bytesAfter - bytesBefore, before = bytesBefore
            bytesBefore = bytesAfter
            // Progress within a block: the fraction of queries scored against it.
            let report: ((Int) -> Void)? = progress.map { p in
                { done in p(before + blockBytes * Int64(done) / Int64(max(queries.count, 1)), gallery.fileSize) }
            }
            let g0 = galleryIDs.count
            galleryIDs += block.ids
            if keepNow == Int.max { blocks.append(block); continue }
            if acc == nil { acc = TopKAccumulator(queries: queries.count, k: keepNow) }
            queries.values.withUnsafeBufferPointer { qp in
                block.values.withUnsafeBufferPointer { gp in
                    TopKSearch.accumulate(
                        queries: qp, queryCount: queries.count, dim: block.dim, gallery: gp,
                        galleryCount: block.count, g0: g0, options: options, queryBounds: bounds, into: &acc!,
                        queriesDone: report)
                }
            }
            timings.score += lap()
            progress?(gallery.bytesRead, gallery.fileSize)
        }
        _ = lap()
        if keepNow == Int.max {
            // Negative k: `[:k]` drops the last |k| of n; rank with k = n + k.
            let keep = options.keep(of: galleryIDs.count)
            acc = TopKAccumulator(queries: queries.count, k: keep)
            for b in blocks {
                queries.values.withUnsafeBufferPointer { qp in
                    b.values.withUnsafeBufferPointer { gp in
                        TopKSearch.accumulate(
                            queries: qp, queryCount: queries.count, dim: b.dim, gallery: gp, galleryCount: b.count,
                            g0: b.lines[0] - 1, options: options, queryBounds: bounds, into: &acc!)
                    }
                }
            }
        }
        let result = acc ?? TopKAccumulator(queries: queries.count, k: 0)
        let head1 = Array("{\(PythonJSON.string(direction.queryKey)): ".utf8),
            head2 = Array(", \(PythonJSON.string(direction.predictionsKey)): [".utf8)
        let gids = galleryIDs.map { Array($0.utf8) }
        try AtomicOutput.write(path: output) { sink in
            var line = [UInt8]()
            for q in 0..<queries.count {
                line.removeAll(keepingCapacity: true)
                line += head1
                line += Array(queries.ids[q].utf8)
                line += head2
                for (r, g) in result.ranked(q).enumerated() {
                    if r > 0 { line += [0x2C, 0x20] }
                    line += gids[g]
                }
                line += Array("]}\n".utf8)
                try sink.write(line)
            }
        }
        timings.score += keepNow == Int.max ? lap() : 0
        timings.write = lap()
        return timings
    }

}
