// The int8 linear layer: quantization round trips, the exact integer formula, closeness to fp32, and the engine's
// invariance (a row's result does not depend on the batch or the thread count).

import CKernels
import Essentials
import Foundation
import TestSupport
import XCTest

@testable import Tensors

final class Int8LinearTests: XCTestCase {
    private func random(_ shape: [Int], _ g: inout SplitMix64, scale: Float = 1) -> Tensor {
        Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in g.nextNormal() * scale })
    }

    func testWeightQuantizationRoundTrip() {
        var g = SplitMix64(seed: 3)
        let w = random([20, 33], &g, scale: 0.05)
        let zero = Tensor(shape: [2, 33])
        let q = Int8Weight(quantizing: w), values = q.values
        XCTAssertEqual(values.count, 20 * 33)
        for r in 0..<20 {
            let row = values[(r * 33)..<((r + 1) * 33)]
            XCTAssertEqual(row.map { abs(Int($0)) }.max(), 127, "row \(r): its largest value maps to ±127")
            let peak = (0..<33).map { abs(w.scalars[r * 33 + $0]) }.max()!
            XCTAssertEqual(q.scales[r], peak / 127)
        }
        let back = q.dequantized().scalars
        for (i, (v, b)) in zip(w.scalars, back).enumerated() {
            XCTAssertLessThanOrEqual(abs(v - b), q.scales[i / 33] / 2 * 1.0001, "element \(i): within half a step")
        }
        let z = Int8Weight(quantizing: zero)
        XCTAssertEqual(z.scales, [1, 1], "an all-zero row gets scale 1")
        XCTAssertEqual(Set(z.values), [0])
    }

    func testLinearIsTheIntegerFormula() {
        var g = SplitMix64(seed: 7)
        let (m, k, n) = (9, 70, 23)
        let x = random([m, k], &g), w = random([n, k], &g, scale: 0.1), bias = random([n], &g)
        let q = Int8Weight(quantizing: w), values = q.values
        let y = linear(x, weight: q, bias: bias)
        XCTAssertEqual(y.shape, [m, n])
        var qx = [Int8](repeating: 0, count: m * k), sx = [Float](repeating: 0, count: m)
        quantizeRows(x.data, rows: m, columns: k, into: &qx, scales: &sx)
        for i in 0..<m {
            for j in 0..<n {
                var sum: Int32 = 0
                for p in 0..<k { sum += Int32(qx[i * k + p]) * Int32(values[j * k + p]) }
                let want = Float(sum) * (sx[i] * q.scales[j]) + bias.scalars[j]
                XCTAssertEqual(y.scalars[i * n + j], want, "row \(i) column \(j)")
            }
        }
    }

    func testValuesSurviveThePackedFormOfEveryKernel() {
        // Only the packed form is kept, so the values must come back exactly: k over one 1024-long block, n not a
        // multiple of the 16-column panel, k not a multiple of the kernels' 2- and 4-value groups.
        var g = SplitMix64(seed: 41)
        for (rows, columns) in [(1, 1), (17, 5), (37, 1031), (70, 2050)] {
            let values = (0..<(rows * columns)).map { _ in Int8(Int(g.next() % 255) - 127) }
            let scales = (0..<rows).map { Float($0 + 1) / 64 }
            for kernel in [CNCLIP_IGEMM_PORTABLE, CNCLIP_IGEMM_AVX2, CNCLIP_IGEMM_VNNI, CNCLIP_IGEMM_VNNI512].map(Int32.init) {
                cnclip_igemm_use_kernel(kernel)
                defer { cnclip_igemm_use_kernel(0) }
                guard cnclip_igemm_kernel() == kernel else { continue }
                let w = Int8Weight(rows: rows, columns: columns, values: values, scales: scales)
                XCTAssertEqual(w.values, values, "[\(rows), \(columns)] through kernel \(kernel)")
            }
        }
    }

    func testEveryKernelGivesTheSameOutput() {
        var g = SplitMix64(seed: 29)
        let x = random([13, 300], &g), w = random([70, 300], &g, scale: 0.05), bias = random([70], &g)
        var outputs: [[Float]] = []
        for kernel in [CNCLIP_IGEMM_PORTABLE, CNCLIP_IGEMM_AVX2, CNCLIP_IGEMM_VNNI, CNCLIP_IGEMM_VNNI512].map(Int32.init) {
            cnclip_igemm_use_kernel(kernel)
            defer { cnclip_igemm_use_kernel(0) }
            guard cnclip_igemm_kernel() == kernel else { continue }
            outputs.append(linear(x, weight: Int8Weight(quantizing: w), bias: bias).scalars)
        }
        XCTAssertGreaterThanOrEqual(outputs.count, 1)
        for o in outputs.dropFirst() { XCTAssertEqual(o, outputs[0]) }
    }

    func testCloseToFP32() {
        var g = SplitMix64(seed: 11)
        let (m, k, n) = (40, 768, 96)
        let x = random([m, k], &g), w = random([n, k], &g, scale: 0.03), bias = random([n], &g, scale: 0.1)
        let exact = linear(x, weight: w, bias: bias), approx = linear(x, weight: Int8Weight(quantizing: w), bias: bias)
        for i in 0..<m {
            let a = Array(exact.scalars[(i * n)..<((i + 1) * n)]), b = Array(approx.scalars[(i * n)..<((i + 1) * n)])
            let dot = zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            let cosine = dot / (a.reduce(0) { $0 + $1 * $1 }.squareRoot() * b.reduce(0) { $0 + $1 * $1 }.squareRoot())
            XCTAssertGreaterThanOrEqual(cosine, 0.999, "row \(i)")
        }
    }

    func testRowsDoNotDependOnTheBatchOrTheThreads() throws {
        var g = SplitMix64(seed: 19)
        let k = 256, n = 200
        let q = Int8Weight(quantizing: random([n, k], &g, scale: 0.05)), bias = random([n], &g)
        let batch = random([70, k], &g)
        var results: [[Float]] = []
        for threads in [1, 2] {
            try withComputeThreads(threads) {
                results.append(linear(batch, weight: q, bias: bias).scalars)
                // Each row alone (the small-batch path splits output channels instead of rows).
                for i in [0, 33, 69] {
                    let row = Tensor(shape: [1, k], scalars: Array(batch.scalars[(i * k)..<((i + 1) * k)]))
                    XCTAssertEqual(
                        linear(row, weight: q, bias: bias).scalars, Array(results.last![(i * n)..<((i + 1) * n)]),
                        "row \(i) alone, \(threads) threads")
                }
            }
        }
        XCTAssertEqual(results[0], results[1], "1 thread vs 2")
        // A few rows against a wide weight: two threads split the output channels; each row alone runs on one.
        let wide = Int8Weight(quantizing: random([600, 1024], &g, scale: 0.05)), few = random([5, 1024], &g)
        let split = try withComputeThreads(2) { linear(few, weight: wide, bias: nil).scalars }
        for i in 0..<5 {
            let row = Tensor(shape: [1, 1024], scalars: Array(few.scalars[(i * 1024)..<((i + 1) * 1024)]))
            XCTAssertEqual(linear(row, weight: wide, bias: nil).scalars, Array(split[(i * 600)..<((i + 1) * 600)]), "row \(i)")
        }
    }
}
