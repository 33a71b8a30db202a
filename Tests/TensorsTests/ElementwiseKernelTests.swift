// CKernels' elementwise kernels (elementwise.c): every path this CPU has (AVX-512, AVX2/FMA, portable) gives the
// portable path's bits on every size, tails included; a softmax row ignores keys masked to probability 0 and a layer
// norm row ignores the other rows, bit for bit; erf keeps its stated error on every path; AdamW's update is PyTorch's.

import CKernels
import Essentials
import Foundation
import XCTest

@testable import Tensors

final class ElementwiseKernelTests: XCTestCase {
    override func tearDown() {
        _ = cnclip_elementwise_use_path(0)
        super.tearDown()
    }

    /// Sizes around the 8- and 16-lane blocks, and the models' widths.
    private let sizes = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 197, 768, 1000, 3072]

    /// The paths this CPU can take (portable always).
    private var paths: [Int32] {
        let all = [CNCLIP_ELEMENTWISE_PORTABLE, CNCLIP_ELEMENTWISE_AVX2, CNCLIP_ELEMENTWISE_AVX512].map { Int32($0) }
        defer { _ = cnclip_elementwise_use_path(0) }
        return all.filter { cnclip_elementwise_use_path($0) == $0 }
    }

    /// `body` run on the path `path`, then the choice handed back to the CPU.
    private func on<T>(_ path: Int32, _ body: () -> T) -> T {
        XCTAssertEqual(cnclip_elementwise_use_path(path), path)
        defer { _ = cnclip_elementwise_use_path(0) }
        return body()
    }

    private func random(_ count: Int, _ range: ClosedRange<Float>, _ g: inout SplitMix64) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &g) }
    }

    /// Each kernel's output bits for input of `n` floats per row (three rows for the row kernels).
    private func outputs(_ n: Int, seed: UInt64) -> [String: [UInt32]] {
        var g = SplitMix64(seed: seed)
        let wide = random(n, -120...120, &g), moderate = random(n, -6...6, &g), rows = random(3 * n, -8...8, &g)
        let w = random(n, -2...2, &g), b = random(n, -1...1, &g)
        func elementwise(_ x: [Float], _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> [Float] {
            var y = [Float](repeating: .nan, count: x.count)
            f(x, &y, x.count)
            return y
        }
        var out: [String: [Float]] = [:]
        out["exp"] = elementwise(wide) { cnclip_exp($0, $1, $2) }
        out["erf"] = elementwise(moderate) { cnclip_erf($0, $1, $2) }
        out["gelu"] = elementwise(moderate) { cnclip_gelu($0, $1, $2) }
        out["gelu wide"] = elementwise(wide) { cnclip_gelu($0, $1, $2) }
        out["quickGelu"] = elementwise(wide) { cnclip_quick_gelu($0, $1, $2) }
        var s = rows
        cnclip_softmax_rows(&s, 3, n)
        out["softmax"] = s
        var y = [Float](repeating: .nan, count: 3 * n)
        cnclip_layer_norm_rows(rows, 3, n, w, b, 1e-5, &y)
        out["layerNorm"] = y
        cnclip_l2_normalize_rows(rows, 3, n, &y)
        out["l2Normalize"] = y
        cnclip_add_rows(rows, b, &y, 3, n)
        out["add"] = y
        out["reductions"] = [cnclip_sum(rows, n), cnclip_sum_of_squares(rows, n, 0.37), cnclip_max(rows, n)]
        return out.mapValues { $0.map(\.bitPattern) }
    }

    func testEveryPathGivesThePortableBits() {
        let paths = self.paths
        XCTAssertTrue(paths.contains(Int32(CNCLIP_ELEMENTWISE_PORTABLE)))
        print("elementwise paths on this CPU: \(paths) (1 portable, 2 AVX2, 3 AVX-512); default \(cnclip_elementwise_path())")
        for n in sizes {
            let expected = on(Int32(CNCLIP_ELEMENTWISE_PORTABLE)) { outputs(n, seed: UInt64(n)) }
            for path in paths where path != Int32(CNCLIP_ELEMENTWISE_PORTABLE) {
                let got = on(path) { outputs(n, seed: UInt64(n)) }
                for (kernel, bits) in expected.sorted(by: { $0.key < $1.key }) {
                    XCTAssertEqual(got[kernel], bits, "\(kernel), n = \(n), path \(path)")
                }
            }
        }
    }

    /// AdamW's kernel on every path is PyTorch's single-tensor update operation for operation: the bits of the plain
    /// loop below (the one the optimiser ran before the kernel, checked against PyTorch's steps by the training tests).
    func testAdamWIsTheReferenceUpdate() {
        var g = SplitMix64(seed: 8)
        for n in sizes {
            let grad = random(n, -3...3, &g)
            let w0 = random(n, -2...2, &g), m0 = random(n, -1...1, &g), v0 = random(n, 0...4, &g)
            let (oneMinusBeta1, beta2, oneMinusBeta2): (Float, Float, Float) = (0.1, 0.98, 0.02)
            let (decay, bc2, eps, stepSize): (Float, Float, Float, Float) = (0.99998, 0.14, 1e-6, 0.0017)
            for decayWeights in [false, true] {
                var (w, m, v) = (w0, m0, v0)
                for i in 0..<n {
                    if decayWeights { w[i] *= decay }
                    m[i] += oneMinusBeta1 * (grad[i] - m[i])
                    v[i] = v[i] * beta2 + oneMinusBeta2 * (grad[i] * grad[i])
                    let denom = v[i].squareRoot() / bc2 + eps
                    w[i] += -stepSize * (m[i] / denom)
                }
                for path in paths {
                    var (pw, pm, pv) = (w0, m0, v0)
                    on(path) {
                        cnclip_adamw(
                            &pw, grad, &pm, &pv, n, decay, decayWeights ? 1 : 0, oneMinusBeta1, beta2, oneMinusBeta2, bc2, eps, stepSize)
                    }
                    let what = "n = \(n), decay \(decayWeights), path \(path)"
                    XCTAssertEqual(pw.map(\.bitPattern), w.map(\.bitPattern), "weights, \(what)")
                    XCTAssertEqual(pm.map(\.bitPattern), m.map(\.bitPattern), "first moments, \(what)")
                    XCTAssertEqual(pv.map(\.bitPattern), v.map(\.bitPattern), "second moments, \(what)")
                }
            }
        }
    }

    /// BERT's padded keys: scores of -10000 (plus the real scores' range) whose e^x underflows to exactly 0.
    func testSoftmaxIgnoresMaskedKeys() {
        var g = SplitMix64(seed: 5)
        for path in paths {
            on(path) {
                for n in [1, 7, 16, 17, 52, 197] {
                    let real = random(n, -8...8, &g)
                    var alone = real
                    cnclip_softmax_rows(&alone, 1, n)
                    for pad in [1, 9, 16, 75] {
                        var padded = real + random(pad, -10_008 ... -9_992, &g)
                        cnclip_softmax_rows(&padded, 1, n + pad)
                        XCTAssertEqual(padded[..<n].map(\.bitPattern), alone.map(\.bitPattern), "n = \(n), pad = \(pad), path \(path)")
                        XCTAssertEqual(Array(padded[n...]), [Float](repeating: 0, count: pad))
                    }
                }
            }
        }
    }

    /// A row's layer norm whatever the batch around it, through the engine's `layerNorm` on every thread count.
    func testLayerNormRowIgnoresTheOtherRows() {
        var g = SplitMix64(seed: 6)
        let n = 768
        let w = Tensor(shape: [n], scalars: random(n, -2...2, &g)), b = Tensor(shape: [n], scalars: random(n, -1...1, &g))
        let row = random(n, -4...4, &g)
        for path in paths {
            on(path) {
                let alone = layerNorm(Tensor(shape: [1, n], scalars: row), weight: w, bias: b, eps: 1e-12).scalars
                for (before, after) in [(1, 0), (0, 5), (37, 12)] {
                    let batch = random(before * n, -50...50, &g) + row + random(after * n, -50...50, &g)
                    let out = layerNorm(Tensor(shape: [before + 1 + after, n], scalars: batch), weight: w, bias: b, eps: 1e-12)
                    XCTAssertEqual(
                        Array(out.scalars[(before * n)..<((before + 1) * n)]).map(\.bitPattern), alone.map(\.bitPattern),
                        "\(before) rows before, \(after) after, path \(path)")
                }
            }
        }
    }

    /// The erf behind BERT's GELU against the float64 function, on every path.
    func testErfIsWithinItsStatedError() {
        let xs = Array(stride(from: Float(-6), through: 6, by: 1.0 / 4096))
        for path in paths {
            on(path) {
                var y = [Float](repeating: .nan, count: xs.count)
                cnclip_erf(xs, &y, xs.count)
                var worst = 0.0, at: Float = 0
                for (x, got) in zip(xs, y) {
                    let d = abs(Double(got) - Foundation.erf(Double(x)))
                    if d > worst { worst = d; at = x }
                }
                XCTAssertLessThanOrEqual(worst, 1.1e-7, "largest error at x = \(at), path \(path)")
                let special: [Float] = [0, .infinity, -.infinity]
                var erfs = [Float](repeating: .nan, count: 3)
                cnclip_erf(special, &erfs, 3)
                XCTAssertEqual(erfs, [0, 1, -1], "path \(path)")
            }
        }
    }
}
