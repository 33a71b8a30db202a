// Every backward rule checked two ways: against PyTorch's autograd on the same inputs (golden cases of
// `Tests/Fixtures/primitives/gradients.safetensors`, made by `scripts/reference/make_gradient_fixtures.py`:
// the gradient of `sum(out * g)` for a fixed random `g`), and against central finite differences of that
// same scalar.
//
// Tolerances: PyTorch parity 1e-5 × max(1, max |expected|), as the forward primitives. Finite differences run
// in fp32 with step h = 1e-2 and the scalar summed in Double: the truncation error is about h²/6 · f''' and
// the rounding error about ulp(out) / h, both well under 2e-3 × max(1, max |gradient|) for these inputs — that
// bound is tight enough to catch any wrong term (a missing factor or a transposed product is off by O(1)).

import Checkpoints
import Essentials
import Foundation
import Tensors
import TestSupport
import XCTest

/// The golden gradient cases, read once.
enum GradGolden {
    static let file: StateDict = {
        do { return try SafeTensors.read(Golden.fixtures.appendingPathComponent("primitives/gradients.safetensors")) } catch {
            fatalError("cannot read the gradients fixture: \(error)")
        }
    }()

    static func tensor(_ key: String) -> Tensor {
        do { return try file.tensor(key) } catch { fatalError("gradients fixture: \(error)") }
    }

    static func integers(_ key: String) -> [Int] {
        guard let v = file[key]?.integers else { fatalError("gradients fixture: no integer tensor \(key)") }
        return v.map { Int($0) }
    }
}

final class GradientParityTests: XCTestCase {
    /// Runs case `c`: its float inputs `names` become leaves, `f` builds the output; checks the output, the
    /// gradients against PyTorch (on 1, 2 and 3 threads when `threads`), then against finite differences when `fd`.
    func check(
        _ c: String, _ names: [String], fd: Bool = true, threads: Bool = false, kink: Bool = false,
        file: StaticString = #filePath, line: UInt = #line, _ f: ([Variable]) -> Variable
    ) {
        let inputs = names.map { GradGolden.tensor("\(c).in.\($0)") }
        let g = GradGolden.tensor("\(c).g")
        for t in threads ? [1, 2, 3] : [ComputeThreads.count] {
            withComputeThreads(t) {
                let leaves = inputs.map { Variable.leaf($0) }
                let out = f(leaves)
                assertClose(out.value, GradGolden.tensor("\(c).out"), "\(c) forward", file: file, line: line)
                out.backward(seed: g.reshaped(out.shape))
                for (n, v) in zip(names, leaves) {
                    guard let grad = v.grad else { XCTFail("\(c): no gradient for \(n)", file: file, line: line); continue }
                    assertClose(grad, GradGolden.tensor("\(c).grad.\(n)"), "\(c) d/d\(n) on \(t) threads", file: file, line: line)
                }
            }
        }
        if fd { finiteDifferences(c, inputs: inputs, names: names, g: g, kink: kink, file: file, line: line, f) }
    }

    /// Central differences of `sum(f(inputs) * g)` for every element of every input, compared with the
    /// analytic gradient. With `kink`, elements within 2h of 0 (where ReLU is not differentiable) are skipped.
    func finiteDifferences(
        _ c: String, inputs: [Tensor], names: [String], g: Tensor, kink: Bool,
        file: StaticString, line: UInt, _ f: ([Variable]) -> Variable
    ) {
        let h: Float = 1e-2
        let copies = inputs.map { $0.copy() }
        let leaves = copies.map { Variable.leaf($0) }
        let out = f(leaves)
        out.backward(seed: g.reshaped(out.shape))
        func objective() -> Double {
            let o = f(copies.map { Variable($0) }).value
            var s: Double = 0
            for i in 0..<o.count { s += Double(o.data[i]) * Double(g.data[i]) }
            return s
        }
        for (i, x) in copies.enumerated() {
            guard let analytic = leaves[i].grad else { XCTFail("\(c): no gradient for \(names[i])", file: file, line: line); continue }
            let scale = max(1, analytic.scalars.map(abs).max() ?? 0)
            var worst: Float = 0, at = -1, numericAt: Float = 0
            for j in 0..<x.count {
                let saved = x.mutableData[j]
                if kink && abs(saved) < 2 * h { continue }
                x.mutableData[j] = saved + h
                let up = objective()
                x.mutableData[j] = saved - h
                let down = objective()
                x.mutableData[j] = saved
                let numeric = Float((up - down) / Double(2 * h))
                let d = abs(numeric - analytic.data[j])
                if !(d <= worst) { worst = d; at = j; numericAt = numeric }
            }
            if at >= 0 && !(worst <= 2e-3 * scale) {
                XCTFail(
                    "\(c) d/d\(names[i]) vs finite differences: |diff| \(worst) at \(at) (numeric \(numericAt), analytic \(analytic.data[at])) exceeds 2e-3 × \(scale)",
                    file: file, line: line)
            }
        }
    }

    // MARK: - Matrix products

    func testLinear() { check("linear", ["x", "weight", "bias"]) { linear($0[0], weight: $0[1], bias: $0[2]) } }
    func testLinearWithoutBias() { check("linear_no_bias", ["x", "weight"]) { linear($0[0], weight: $0[1], bias: nil) } }
    /// Big enough that the backward products are split across threads (rows of dx, columns of dW).
    func testLinearSplit() { check("linear_big", ["x", "weight", "bias"], fd: false, threads: true) { linear($0[0], weight: $0[1], bias: $0[2]) } }
    /// The MLP's second layer after its activation, which recomputes the activation in the backward pass instead of
    /// keeping it: the bits of `linear(gelu(x), …)` (whose primitives are checked above) in the output and in every
    /// gradient, on the small case and on the big one whose products are split across threads.
    func testLinearAfterActivationIsTheComposition() {
        for c in ["linear", "linear_big"] {
            let inputs = ["x", "weight", "bias"].map { GradGolden.tensor("\(c).in.\($0)") }
            let g = GradGolden.tensor("\(c).g")
            for activation in [Activation.gelu, .quickGelu] {
                for t in [1, 2] {
                    withComputeThreads(t) {
                        let fused = inputs.map { Variable.leaf($0) }, plain = inputs.map { Variable.leaf($0) }
                        let y = linear(fused[0], activation: activation, weight: fused[1], bias: fused[2])
                        let a = activation == .gelu ? gelu(plain[0]) : quickGelu(plain[0])
                        let expected = linear(a, weight: plain[1], bias: plain[2])
                        XCTAssertEqual(y.value.scalars, expected.value.scalars, "\(c) \(activation) forward")
                        y.backward(seed: g.reshaped(y.shape))
                        expected.backward(seed: g.reshaped(y.shape))
                        for i in 0..<3 {
                            XCTAssertNotNil(fused[i].grad)
                            XCTAssertEqual(fused[i].grad?.scalars, plain[i].grad?.scalars, "\(c) \(activation) gradient \(i), \(t) threads")
                        }
                    }
                }
            }
        }
    }

    func testMatmul() { check("matmul", ["a", "b"]) { matmul($0[0], $0[1]) } }
    func testMatmulTransposed() { check("matmul_transposed", ["a", "b"]) { matmulTransposed($0[0], $0[1]) } }

    // MARK: - Elementwise

    func testAddBroadcast() { check("add_broadcast", ["a", "b"]) { add($0[0], $0[1]) } }
    func testAddBroadcastRows() { check("add_broadcast_rows", ["a", "b"]) { add($0[0], $0[1]) } }
    func testAddSameShape() { check("add_same_shape", ["a", "b"]) { add($0[0], $0[1]) } }
    func testScaled() { check("scaled", ["x"]) { scaled($0[0], by: -0.37) } }
    func testScaledByVariable() { check("scaled_by_variable", ["x", "s"]) { scaled($0[0], by: $0[1]) } }
    func testExp() { check("exp", ["x"]) { exp($0[0]) } }
    func testRelu() { check("relu", ["x"], kink: true) { relu($0[0]) } }
    func testGelu() { check("gelu", ["x"]) { gelu($0[0]) } }
    func testQuickGelu() { check("quick_gelu", ["x"]) { quickGelu($0[0]) } }
    func testSoftmax() { check("softmax", ["x"]) { softmax($0[0]) } }

    // MARK: - Normalisation

    func testLayerNorm() { check("layer_norm", ["x", "weight", "bias"]) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) } }
    func testLayerNormBertEpsilon() {
        check("layer_norm_bert", ["x", "weight", "bias"]) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-12) }
    }
    /// 700 rows: the weight and bias gradients are per-thread partial sums.
    func testLayerNormSplit() {
        check("layer_norm_big", ["x", "weight", "bias"], fd: false, threads: true) { layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }
    }
    func testL2Normalized() { check("l2_normalize", ["x"]) { l2Normalized($0[0]) } }

    /// Training-mode batch norm: batch statistics in the forward and the backward, and the running statistics
    /// updated as PyTorch does (momentum 0.1, unbiased variance).
    func testBatchNormTraining() {
        let c = "batch_norm_train"
        var stats: (mean: [Float], variance: [Float]) = ([], [])
        check(c, ["x", "weight", "bias"]) {
            let r = batchNorm2dTraining($0[0], weight: $0[1], bias: $0[2], eps: 1e-5)
            stats = (r.mean, r.variance)
            return r.output
        }
        let rm = GradGolden.tensor("\(c).in.running_mean"), rv = GradGolden.tensor("\(c).in.running_var")
        let x = GradGolden.tensor("\(c).in.x")
        let m = x.count / x.shape[1]
        let r = batchNorm2dTraining(
            Variable(x), weight: Variable(GradGolden.tensor("\(c).in.weight")),
            bias: Variable(GradGolden.tensor("\(c).in.bias")), eps: 1e-5)
        let updated = updateRunningStatistics(
            mean: rm, variance: rv, batchMean: r.mean, batchVariance: r.variance,
            count: m, momentum: 0.1)
        assertClose(updated.mean, GradGolden.tensor("\(c).extra.running_mean"), "\(c) running_mean")
        assertClose(updated.variance, GradGolden.tensor("\(c).extra.running_var"), "\(c) running_var")
        XCTAssertEqual(stats.mean.count, 3)
    }

    func testBatchNormEvaluation() {
        let c = "batch_norm_eval"
        let rm = GradGolden.tensor("\(c).in.running_mean"), rv = GradGolden.tensor("\(c).in.running_var")
        check(c, ["x", "weight", "bias"]) { batchNorm2d($0[0], weight: $0[1], bias: $0[2], runningMean: rm, runningVar: rv, eps: 1e-5) }
    }

    // MARK: - Loss

    func testCrossEntropy() {
        let targets = GradGolden.integers("cross_entropy.in.targets")
        check("cross_entropy", ["logits"]) { crossEntropy($0[0], targets: targets) }
    }

    func testCrossEntropyRectangular() {
        let targets = GradGolden.integers("cross_entropy_rect.in.targets")
        check("cross_entropy_rect", ["logits"]) { crossEntropy($0[0], targets: targets) }
    }

    // MARK: - Attention

    func testAttentionSeparateWithKeyBias() {
        let kb = GradGolden.tensor("attention.key_bias")
        check("attention", ["q", "k", "v"]) {
            multiHeadAttention(q: $0[0], k: $0[1], v: $0[2], batch: 2, lq: 6, lk: 6, heads: 3, headDim: 4, keyBias: kb)
        }
    }

    /// One packed `[b, l, 3w]` variable read three times: its gradient buffer is shared, not triple-counted.
    func testAttentionPacked() {
        check("attention_packed", ["qkv"]) {
            multiHeadAttention(q: $0[0], qOffset: 0, k: $0[0], kOffset: 16, v: $0[0], vOffset: 32, batch: 2, lq: 5, lk: 5, heads: 2, headDim: 8)
        }
    }

    /// The class-token-only last layer: the first query (through `firstRows`) against every key of the packed buffer.
    func testAttentionPackedFirstQuery() {
        check("attention_packed_first", ["qkv"]) {
            multiHeadAttention(
                q: firstRows($0[0]), qOffset: 0, k: $0[0], kOffset: 16, v: $0[0], vOffset: 32,
                batch: 2, lq: 1, lk: 5, heads: 2, headDim: 8)
        }
    }

    /// q at column 5 of a wider buffer, k and v packed in another, lq ≠ lk, a key mask, heads split over threads.
    func testAttentionCross() {
        let kb = GradGolden.tensor("attention_cross.key_bias")
        check("attention_cross", ["q", "kv"], fd: false, threads: true) {
            multiHeadAttention(
                q: $0[0], qOffset: 5, k: $0[1], kOffset: 0, v: $0[1], vOffset: 64,
                batch: 2, lq: 12, lk: 20, heads: 4, headDim: 16, keyBias: kb)
        }
    }

    /// Dropout of attention probabilities (BERT training) has no PyTorch counterpart with the same random
    /// stream; its masks are a pure function of the seed, so finite differences check its backward exactly.
    func testAttentionDropoutFiniteDifferences() {
        let c = "attention"
        let kb = GradGolden.tensor("attention.key_bias")
        let inputs = ["q", "k", "v"].map { GradGolden.tensor("\(c).in.\($0)") }
        let drop = AttentionDropout(p: 0.3, seed: 42)
        let f: ([Variable]) -> Variable = {
            multiHeadAttention(q: $0[0], k: $0[1], v: $0[2], batch: 2, lq: 6, lk: 6, heads: 3, headDim: 4, keyBias: kb, dropout: drop)
        }
        finiteDifferences(
            c + " with dropout", inputs: inputs, names: ["q", "k", "v"], g: GradGolden.tensor("\(c).g"), kink: false,
            file: #filePath, line: #line, f)
        // The same seed gives the same masks; another seed other masks; p = 0 is exactly the plain kernel.
        let constants = inputs.map { Variable($0) }
        XCTAssertEqual(f(constants).value.scalars, f(constants).value.scalars)
        let other = multiHeadAttention(
            q: constants[0], k: constants[1], v: constants[2], batch: 2, lq: 6, lk: 6, heads: 3, headDim: 4,
            keyBias: kb, dropout: AttentionDropout(p: 0.3, seed: 43))
        XCTAssertNotEqual(f(constants).value.scalars, other.value.scalars)
        let none = multiHeadAttention(
            q: constants[0], k: constants[1], v: constants[2], batch: 2, lq: 6, lk: 6, heads: 3, headDim: 4,
            keyBias: kb, dropout: AttentionDropout(p: 0, seed: 43))
        assertClose(none.value, GradGolden.tensor("\(c).out"), "attention with p = 0")
    }

    // MARK: - Lookup, views, concatenation

    /// Id 3 appears three times: its row accumulates three gradients.
    func testEmbedding() {
        let ids = GradGolden.integers("embedding.in.ids").map { Int32($0) }
        check("embedding", ["table"]) { embedding($0[0], ids: ids) }
    }
    func testFirstRows() { check("first_rows", ["x"]) { firstRows($0[0]) } }
    func testRows() { check("rows", ["x"]) { $0[0].rows(1..<4) } }
    func testConcatenateAxis0() { check("concatenate_axis0", ["a", "b", "c"]) { concatenate($0, axis: 0) } }
    func testConcatenateAxis1() { check("concatenate_axis1", ["a", "b"]) { concatenate($0, axis: 1) } }
    func testRepeated() { check("repeated", ["x"]) { repeated($0[0], count: 3) } }

    // MARK: - Images

    func testPatches() { check("patches4", ["x"]) { patches($0[0], size: 4) } }
    func testConv3x3Stride2Pad1() { check("conv3x3_s2_p1", ["x", "weight"]) { conv2d($0[0], weight: $0[1], stride: 2, padding: 1) } }
    func testConv3x2Stride2Pad1() { check("conv3x2_s2_p1", ["x", "weight"]) { conv2d($0[0], weight: $0[1], stride: 2, padding: 1) } }
    func testConv1x1() { check("conv1x1", ["x", "weight"]) { conv2d($0[0], weight: $0[1]) } }
    func testConvPatch4() { check("conv_patch4", ["x", "weight"]) { conv2d($0[0], weight: $0[1], stride: 4) } }
    func testConvBig() { check("conv3x3_big", ["x", "weight"], fd: false, threads: true) { conv2d($0[0], weight: $0[1], padding: 1) } }
    func testAvgPool() { check("avg_pool2", ["x"]) { avgPool2d($0[0], kernel: 2) } }
    func testSpatialTokens() { check("spatial_tokens", ["x"]) { spatialTokens($0[0]) } }

    // MARK: - Graph mechanics

    /// A value used twice sums both gradients; constants get none and record nothing.
    func testReuseAndConstants() {
        let x = Variable.leaf(Tensor(shape: [3], scalars: [1, 2, 3]))
        let c = Variable(Tensor(shape: [3], scalars: [10, 20, 30]))
        let y = add(add(x, x), c)  // 2x + c
        XCTAssertTrue(y.requiresGrad)
        XCTAssertNil(add(c, c).node)
        y.backward(seed: Tensor(shape: [3], scalars: [1, 1, 2]))
        XCTAssertEqual(x.grad?.scalars, [2, 2, 4])
        XCTAssertNil(c.grad)
        // A second backward accumulates, as PyTorch does until gradients are zeroed.
        scaled(x, by: 3).backward(seed: Tensor(shape: [3], repeating: 1))
        XCTAssertEqual(x.grad?.scalars, [5, 5, 7])
        x.node?.zeroGrad()
        XCTAssertNil(x.grad)
    }

    /// A graph is back-propagated once, and what its rules saved is freed as the pass goes (PyTorch's default,
    /// `retain_graph=False`): a finished step holds its gradients, not its activations as well.
    func testBackwardFreesWhatTheRulesSaved() {
        let x = Variable.leaf(Tensor(shape: [4], repeating: 2))
        weak var saved: TensorStorage?
        let y: Variable = {
            let h = exp(x)  // its rule keeps its output
            saved = h.value.storage
            return scaled(h, by: 3)
        }()
        XCTAssertNotNil(saved, "the forward pass keeps what the backward pass needs")
        y.backward(seed: Tensor(shape: [4], repeating: 1))
        XCTAssertNil(saved, "exp's output is still held after the backward pass")
        XCTAssertEqual(x.grad?.scalars, [Float](repeating: 3 * Foundation.exp(2), count: 4))
    }

    /// Dropout: identity when p = 0 or not training; otherwise the gradient follows the same mask.
    func testDropout() {
        var rng = SystemRandomNumberGenerator()
        let x = Variable.leaf(Tensor(shape: [1000], repeating: 1))
        XCTAssertEqual(dropout(x, p: 0, training: true, using: &rng).node === x.node, true)
        XCTAssertEqual(dropout(x, p: 0.5, training: false, using: &rng).node === x.node, true)
        var seeded = SplitMix64(seed: 7)
        let y = dropout(x, p: 0.25, training: true, using: &seeded)
        let kept = y.value.scalars.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.75) < 1e-6 })
        XCTAssertTrue((650...850).contains(kept.count), "kept \(kept.count) of 1000 at p = 0.25")
        y.backward(seed: Tensor(shape: [1000], repeating: 1))
        XCTAssertEqual(x.grad?.scalars, y.value.scalars)
        var again = SplitMix64(seed: 7)
        XCTAssertEqual(dropout(Variable(x.value), p: 0.25, training: true, using: &again).value.scalars, y.value.scalars)
    }
}
