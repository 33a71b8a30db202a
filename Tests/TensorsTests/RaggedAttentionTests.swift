import Essentials
import Foundation
import Synchronization
import XCTest

@testable import Tensors

/// Ragged attention (each sequence of a packed batch over its own keys) against the padded kernel with masked
/// padding keys: the same bits forward, the same gradients up to summation order, and a balanced work split.
final class RaggedAttentionTests: XCTestCase {
    private let heads = 3, d = 16
    private let lengths = [7, 1, 20, 13, 2, 20, 9]

    /// Random `[rows, width]` values.
    private func random(_ rows: Int, _ width: Int, seed: UInt64) -> Tensor {
        var rng = SplitMix64(seed: seed)
        return Tensor(shape: [rows, width], scalars: (0..<(rows * width)).map { _ in rng.nextUniform(bound: 2) })
    }

    /// The rows of `packed [total, w]` laid out padded `[batch, longest, w]`, padding rows zero.
    private func padded(_ packed: Tensor, _ batch: RaggedBatch, to longest: Int) -> Tensor {
        let w = packed.lastDim
        let out = Tensor(shape: [batch.count, longest, w])
        for s in 0..<batch.count {
            (out.mutableData + s * longest * w).update(from: packed.data + batch.offsets[s] * w, count: batch.lengths[s] * w)
        }
        return out
    }

    func testRaggedBatch() {
        let batch = RaggedBatch(lengths: [3, 1, 2])
        XCTAssertEqual(batch.offsets, [0, 3, 4, 6])
        XCTAssertEqual(batch.totalRows, 6)
        XCTAssertEqual(batch.count, 3)
        XCTAssertEqual(batch.rows(of: 2), 4..<6)
        XCTAssertEqual(batch.firstRows, [0, 3, 4])
        XCTAssertEqual(batch.positions, [0, 1, 2, 0, 0, 1])
        XCTAssertEqual(RaggedBatch(singleRows: 2).offsets, [0, 1, 2])
    }

    func testRaggedAttentionIsThePaddedKernelsBits() {
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        let keys = RaggedBatch(lengths: lengths), longest = lengths.max()!, width = heads * d
        // One packed q|k|v projection, as BERT's and ViT's attention read it, and a padding id inside sequence 3.
        let qkv = random(keys.totalRows, 3 * width, seed: 1)
        let bias = Tensor(shape: [keys.totalRows], scalars: (0..<keys.totalRows).map { $0 == keys.offsets[3] + 4 ? -10000 : 0 })
        let paddedQKV = padded(qkv, keys, to: longest)
        let paddedBias = Tensor(
            shape: [keys.count, longest],
            scalars: (0..<(keys.count * longest)).map { i in
                let s = i / longest, j = i % longest
                return j < lengths[s] ? bias.data[keys.offsets[s] + j] : -10000
            })
        for threads in [1, 2, 3] {
            ComputeThreads.set(threads)
            let reference = multiHeadAttention(
                q: paddedQKV, k: paddedQKV, kOffset: width, v: paddedQKV, vOffset: 2 * width,
                batch: keys.count, lq: longest, lk: longest, heads: heads, headDim: d, keyBias: paddedBias)
            let all = multiHeadAttention(
                q: qkv, queries: keys, k: qkv, kOffset: width, v: qkv, vOffset: 2 * width, keys: keys,
                heads: heads, headDim: d, keyBias: bias)
            XCTAssertEqual(all.shape, [keys.totalRows, width])
            XCTAssertEqual(padded(all, keys, to: longest).scalars.map(\.bitPattern), maskedRows(reference, keys, longest), "\(threads) threads")
            // Each sequence's first row alone as its query (BERT's last layer).
            let firsts = Tensor(shape: [keys.count, 3 * width], scalars: keys.firstRows.flatMap { row(qkv, $0) })
            let first = multiHeadAttention(
                q: firsts, queries: RaggedBatch(singleRows: keys.count), k: qkv, kOffset: width, v: qkv, vOffset: 2 * width,
                keys: keys, heads: heads, headDim: d, keyBias: bias)
            XCTAssertEqual(first.shape, [keys.count, width])
            XCTAssertEqual(
                first.scalars.map(\.bitPattern),
                (0..<keys.count).flatMap { s in row(reference.reshaped([-1, width]), s * longest).map(\.bitPattern) },
                "\(threads) threads")
        }
    }

    /// Row `r` of `x [rows, w]`.
    private func row(_ x: Tensor, _ r: Int) -> [Float] { Array(UnsafeBufferPointer(start: x.data + r * x.lastDim, count: x.lastDim)) }

    /// The padded result's real rows (padding rows zeroed, as `padded` lays the ragged result out), as bit patterns.
    private func maskedRows(_ reference: Tensor, _ keys: RaggedBatch, _ longest: Int) -> [UInt32] {
        let w = reference.lastDim
        return reference.scalars.enumerated().map { i, v in (i / w) % longest < keys.lengths[i / w / longest] ? v.bitPattern : 0 }
    }

    func testRaggedAttentionGradientsAreThePaddedOnes() {
        let keys = RaggedBatch(lengths: lengths), longest = lengths.max()!, width = heads * d
        let q = random(keys.totalRows, width, seed: 2), k = random(keys.totalRows, width, seed: 3), v = random(keys.totalRows, width, seed: 4)
        let seed = random(keys.totalRows, width, seed: 5)
        let ragged = [q, k, v].map { Variable.leaf($0) }
        multiHeadAttention(q: ragged[0], queries: keys, k: ragged[1], v: ragged[2], keys: keys, heads: heads, headDim: d)
            .backward(seed: seed)
        let paddedLeaves = [q, k, v].map { Variable.leaf(padded($0, keys, to: longest)) }
        let mask = Tensor(
            shape: [keys.count, longest], scalars: (0..<(keys.count * longest)).map { $0 % longest < lengths[$0 / longest] ? 0 : -10000 })
        multiHeadAttention(
            q: paddedLeaves[0], k: paddedLeaves[1], v: paddedLeaves[2], batch: keys.count, lq: longest, lk: longest,
            heads: heads, headDim: d, keyBias: mask
        ).backward(seed: padded(seed, keys, to: longest))
        for (name, (r, p)) in zip(["q", "k", "v"], zip(ragged, paddedLeaves)) {
            let actual = padded(r.grad!, keys, to: longest).scalars, expected = p.grad!.scalars
            XCTAssertEqual(actual.count, expected.count)
            for (a, e) in zip(actual, expected) { XCTAssertEqual(a, e, accuracy: 1e-5, name) }
        }
        // One input passed as q, k and v: its gradient is the sum of the three, counted once.
        let shared = Variable.leaf(q)
        multiHeadAttention(q: shared, queries: keys, k: shared, v: shared, keys: keys, heads: heads, headDim: d).backward(seed: seed)
        let separate = [q, q, q].map { Variable.leaf($0) }
        multiHeadAttention(q: separate[0], queries: keys, k: separate[1], v: separate[2], keys: keys, heads: heads, headDim: d)
            .backward(seed: seed)
        let sum = add(add(separate[0].grad!, separate[1].grad!), separate[2].grad!)
        for (a, e) in zip(shared.grad!.scalars, sum.scalars) { XCTAssertEqual(a, e, accuracy: 1e-5) }
    }

    func testWeightedSplitCoversEveryItemOnceInOrder() {
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        let cases: [[Int]] = [
            [], [5], Array(repeating: 40_000, count: 7), [1_000_000, 1, 1, 1], [1, 1, 1, 1_000_000], [0, 0, 100_000, 0, 0],
            (0..<96).map { ($0 % 13 + 1) * ($0 % 13 + 1) * 400 },
        ]
        for threads in [1, 2, 3, 8] {
            ComputeThreads.set(threads)
            for weights in cases {
                let seen = Mutex<[Range<Int>]>([])
                parallelFor(weights: weights) { range in seen.withLock { $0.append(range) } }
                let ranges = seen.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
                XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<weights.count), "\(weights.count) items, \(threads) threads")
                XCTAssertLessThanOrEqual(ranges.count, max(1, min(threads, weights.count)))
            }
        }
        // Equal halves of the work for two threads when the items allow it.
        ComputeThreads.set(2)
        let seen = Mutex<[Range<Int>]>([])
        parallelFor(weights: [400_000, 100_000, 100_000, 100_000, 100_000]) { range in seen.withLock { $0.append(range) } }
        XCTAssertEqual(Set(seen.withLock { $0 }), [0..<1, 1..<5])
    }
}
