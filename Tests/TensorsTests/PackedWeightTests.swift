// The fp32 packed weight: packing is exact (unpacking gives the weight back), and a product on the packed weight gives
// the bits of `cnclip_sgemm` on the original — for every kernel, edge tiles, several k-blocks, column ranges and
// thread splits — so that fp32 inference on packed weights keeps every feature's bits.

import CKernels
import Essentials
import TestSupport
import XCTest

@testable import Tensors

final class PackedWeightTests: XCTestCase {
    private func random(_ shape: [Int], _ g: inout SplitMix64) -> Tensor {
        Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in g.nextNormal() })
    }

    /// The kernels this CPU has.
    private var kernels: [Int32] {
        [CNCLIP_SGEMM_PORTABLE, CNCLIP_SGEMM_AVX2, CNCLIP_SGEMM_AVX512].map(Int32.init).filter { kernel in
            cnclip_sgemm_use_kernel(kernel)
            defer { cnclip_sgemm_use_kernel(0) }
            return cnclip_sgemm_kernel() > 0
        }
    }

    /// `x @ w.T + bias` by `cnclip_sgemm` on the calling thread: the bits a packed product must give.
    private func unpackedProduct(_ x: Tensor, _ w: Tensor, _ bias: Tensor?) -> [Float] {
        let m = x.rowCount, k = x.lastDim, n = w.shape[0]
        var out = [Float](repeating: .nan, count: m * n)
        out.withUnsafeMutableBufferPointer { cnclip_sgemm(0, 1, m, n, k, 1, x.data, k, w.data, k, 0, bias?.data, $0.baseAddress!, n) }
        return out
    }

    func testPackingIsExact() {
        var g = SplitMix64(seed: 1)
        for kernel in kernels {
            cnclip_sgemm_use_kernel(kernel)
            defer { cnclip_sgemm_use_kernel(0) }
            for (n, k) in [(1, 1), (33, 70), (100, 1030), (768, 512)] {
                let w = random([n, k], &g)
                let packed = PackedWeight(packing: w)
                XCTAssertEqual(packed.kernel, kernel)
                XCTAssertEqual(packed.unpacked().shape, [n, k])
                XCTAssertEqual(packed.unpacked().scalars, w.scalars, "kernel \(kernel), [\(n), \(k)]")
            }
        }
    }

    func testAPackedProductGivesTheBitsOfTheUnpackedOne() {
        var g = SplitMix64(seed: 2)
        // Edge tiles of every kernel (6 × 16 and 12 × 32), one to three k-blocks, one row (a batch-1 query's [CLS]).
        for (m, n, k) in [(1, 33, 64), (5, 70, 600), (13, 97, 1030), (52, 192, 512), (37, 200, 1100)] {
            let x = random([m, k], &g), w = random([n, k], &g), bias = random([n], &g)
            for withBias in [true, false] {
                let expected = unpackedProduct(x, w, withBias ? bias : nil)
                for kernel in kernels {
                    cnclip_sgemm_use_kernel(kernel)
                    defer { cnclip_sgemm_use_kernel(0) }
                    let packed = PackedWeight(packing: w)
                    var tileRows = 0, tileColumns = 0
                    cnclip_sgemm_kernel_tile(kernel, &tileRows, &tileColumns)
                    // The whole product, and its columns in pieces starting at multiples of the tile's width.
                    for step in [n, tileColumns, 3 * tileColumns] {
                        var out = [Float](repeating: .nan, count: m * n)
                        out.withUnsafeMutableBufferPointer { y in
                            for j0 in stride(from: 0, to: n, by: step) {
                                cnclip_sgemm_packed(
                                    m, j0, min(step, n - j0), n, k, x.data, k, packed.storage.pointer, kernel,
                                    withBias ? bias.data : nil, y.baseAddress! + j0, n)
                            }
                        }
                        assertSameBits(out, expected, "kernel \(kernel), m \(m) n \(n) k \(k), columns by \(step), bias \(withBias)")
                    }
                }
            }
        }
    }

    func testTheLinearLayerKeepsItsBitsForAnyBatchAndThreadCount() throws {
        var g = SplitMix64(seed: 3)
        // Rows split (a batch of 300 rows), columns split (a few rows against a wide weight), and one row alone.
        for (m, n, k) in [(300, 96, 768), (4, 3072, 768), (1, 768, 3072)] {
            let x = random([m, k], &g), w = random([n, k], &g), bias = random([n], &g)
            let expected = linear(x, weight: w, bias: bias).scalars
            let packed = PackedWeight(packing: w)
            for threads in [1, 2, 3] {
                try withComputeThreads(threads) {
                    assertSameBits(linear(x, weight: packed, bias: bias).scalars, expected, "[\(m), \(n), \(k)], \(threads) threads")
                    let row = Tensor(shape: [1, k], scalars: Array(x.scalars[0..<k]))
                    assertSameBits(linear(row, weight: packed, bias: bias).scalars, Array(expected[0..<n]), "row 0 alone, \(threads) threads")
                }
            }
        }
        // No input features: the bias alone, as `cnclip_sgemm` gives.
        let empty = PackedWeight(packing: Tensor(shape: [5, 0])), bias = random([5], &g)
        var out = [Float](repeating: .nan, count: 10)
        out.withUnsafeMutableBufferPointer {
            cnclip_sgemm_packed(2, 0, 5, 5, 0, empty.storage.pointer, 0, empty.storage.pointer, empty.kernel, bias.data, $0.baseAddress!, 5)
        }
        XCTAssertEqual(out, bias.scalars + bias.scalars)
    }

    private func assertSameBits(_ actual: [Float], _ expected: [Float], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
        guard let i = actual.indices.first(where: { actual[$0].bitPattern != expected[$0].bitPattern }) else { return }
        let largest = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        XCTFail(
            "\(message): element \(i) is \(actual[i]), expected \(expected[i]); first values \(Array(actual.prefix(4))) vs "
                + "\(Array(expected.prefix(4))); largest difference \(largest)", file: file, line: line)
    }
}
