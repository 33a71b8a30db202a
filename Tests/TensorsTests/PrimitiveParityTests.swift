// Every forward primitive of `Tensors` against PyTorch's result on the same inputs (golden cases from
// `scripts/reference/make_primitive_fixtures.py`). Tolerance is 1e-5 × max(1, max |expected|) unless a test says why not.

import CKernels
import Foundation
import Tensors
import TestSupport
import XCTest

final class PrimitiveParityTests: XCTestCase {
    /// Thread counts the split kernels are checked under: one (no split), two (this machine), three (uneven splits).
    let threadCounts = [1, 2, 3]

    // MARK: - Matrix products

    func testLinear() throws {
        let c = "linear"
        assertClose(
            linear(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), bias: try Golden.input(c, "bias")),
            try Golden.output(c), c)
    }

    func testLinearWithoutBias() throws {
        let c = "linear_no_bias"
        assertClose(linear(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), bias: nil), try Golden.output(c), c)
    }

    func testMatmul() throws {
        let c = "matmul"
        assertClose(matmul(try Golden.input(c, "a"), try Golden.input(c, "b")), try Golden.output(c), c)
    }

    func testMatmulTransposed() throws {
        let c = "matmul_transposed"
        assertClose(matmulTransposed(try Golden.input(c, "a"), try Golden.input(c, "b")), try Golden.output(c), c)
    }

    /// m = 60 < 32·threads: the product is split by columns of C (n = 150, not a multiple of 16).
    func testMatmulColumnSplit() throws {
        let c = "gemm_columns"
        let a = try Golden.input(c, "a"), b = try Golden.input(c, "b"), expected = try Golden.output(c)
        for t in threadCounts { assertClose(withComputeThreads(t) { matmul(a, b) }, expected, "\(c) on \(t) threads") }
    }

    /// The column split of a transposed B (`linear`'s weight) with the bias folded in through beta = 1.
    func testLinearColumnSplit() throws {
        let c = "linear_columns"
        let x = try Golden.input(c, "x"), w = try Golden.input(c, "weight"), b = try Golden.input(c, "bias")
        let expected = try Golden.output(c)
        for t in threadCounts { assertClose(withComputeThreads(t) { linear(x, weight: w, bias: b) }, expected, "\(c) on \(t) threads") }
    }

    /// m = 100 ≥ 32·threads: the product is split by rows of C.
    func testMatmulRowSplit() throws {
        let c = "gemm_rows"
        let a = try Golden.input(c, "a"), b = try Golden.input(c, "b"), expected = try Golden.output(c)
        for t in threadCounts { assertClose(withComputeThreads(t) { matmul(a, b) }, expected, "\(c) on \(t) threads") }
    }

    func testLinearRowSplit() throws {
        let c = "linear_rows"
        let x = try Golden.input(c, "x"), w = try Golden.input(c, "weight"), b = try Golden.input(c, "bias")
        let expected = try Golden.output(c)
        for t in threadCounts { assertClose(withComputeThreads(t) { linear(x, weight: w, bias: b) }, expected, "\(c) on \(t) threads") }
    }

    /// The row split when A is stored transposed (`aᵀ @ bᵀ`, `a [240, 100]`, `b [90, 240]`), as backward passes call it.
    func testGemmRowSplitTransposed() throws {
        let c = "gemm_rows_transposed"
        let a = try Golden.input(c, "a"), b = try Golden.input(c, "b"), expected = try Golden.output(c)
        for t in threadCounts {
            let out = Tensor(shape: [100, 90], repeating: .nan)
            withComputeThreads(t) {
                BLAS.gemm(
                    transA: true, transB: true, m: 100, n: 90, k: 240, a: a.data, lda: 100, b: b.data, ldb: 240,
                    c: out.mutableData, ldc: 90)
            }
            assertClose(out, expected, "\(c) on \(t) threads")
        }
    }

    func testTransposed() throws {
        let c = "transposed"
        assertClose(transposed(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    // MARK: - Elementwise

    func testAddBroadcast() throws {
        let c = "add_broadcast"
        assertClose(add(try Golden.input(c, "a"), try Golden.input(c, "b")), try Golden.output(c), c)
    }

    func testAddSameShape() throws {
        let c = "add_same_shape"
        assertClose(add(try Golden.input(c, "a"), try Golden.input(c, "b")), try Golden.output(c), c)
    }

    func testScaled() throws {
        let c = "scaled"
        assertClose(scaled(try Golden.input(c, "x"), by: -0.37), try Golden.output(c), c)
    }

    func testRelu() throws {
        let c = "relu"
        assertClose(relu(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    func testGelu() throws {
        let c = "gelu"
        assertClose(gelu(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    func testQuickGelu() throws {
        let c = "quick_gelu"
        assertClose(quickGelu(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    /// -120…120: `exp(-1.702 x)` overflows to inf for the most negative inputs, where the result must be -0, not NaN.
    func testQuickGeluWideRange() throws {
        let c = "quick_gelu_wide"
        let out = quickGelu(try Golden.input(c, "x"))
        XCTAssertFalse(out.scalars.contains { $0.isNaN }, "\(c): NaN in the output")
        assertClose(out, try Golden.output(c), c)
    }

    /// The vector `exp` over -100…100 and beyond (subnormal results, 0 and inf), 1003 values so the vector loop
    /// has a tail. Compared element by element relative to each value (floored at the smallest normal float):
    /// the results span 1e-44…inf, where a tolerance scaled by the largest value would check nothing.
    func testExp() throws {
        let c = "exp"
        let x = try Golden.input(c, "x"), expected = try Golden.output(c).scalars
        var out = [Float](repeating: .nan, count: x.count)
        out.withUnsafeMutableBufferPointer { cnclip_exp(x.data, $0.baseAddress!, x.count) }
        assertRelativelyClose(out, expected, relative: 1e-6, c)
        // Every tail length from 1 to 17, starting off a multiple of 8 and of 16.
        for n in 1...17 {
            var part = [Float](repeating: .nan, count: n)
            part.withUnsafeMutableBufferPointer { cnclip_exp(x.data + 3, $0.baseAddress!, n) }
            assertRelativelyClose(part, Array(expected[3..<(3 + n)]), relative: 1e-6, "\(c) tail of \(n)")
        }
        let scalars = x.scalars.map { v in
            var y: Float = .nan
            withUnsafePointer(to: v) { cnclip_exp($0, &y, 1) }
            return y
        }
        assertRelativelyClose(scalars, expected, relative: 1e-6, "\(c) (scalar)")
    }

    // MARK: - Normalisation

    func testLayerNorm() throws {
        let c = "layer_norm"
        assertClose(
            layerNorm(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), bias: try Golden.input(c, "bias"), eps: 1e-5),
            try Golden.output(c), c)
    }

    func testLayerNormBertEpsilon() throws {
        let c = "layer_norm_bert"
        assertClose(
            layerNorm(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), bias: try Golden.input(c, "bias"), eps: 1e-12),
            try Golden.output(c), c)
    }

    func testL2Normalized() throws {
        let c = "l2_normalize"
        assertClose(l2Normalized(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    func testSoftmax() throws {
        let c = "softmax"
        assertClose(softmax(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    /// Rows of 13 with BERT's -10000 on masked entries (which must come out as exactly 0), one row fully masked.
    func testSoftmaxMasked() throws {
        let c = "softmax_masked"
        let out = softmax(try Golden.input(c, "x")), expected = try Golden.output(c)
        assertClose(out, expected, c)
        for (i, (a, e)) in zip(out.scalars, expected.scalars).enumerated() where e == 0 {
            XCTAssertEqual(a, 0, "\(c): masked entry \(i)")
        }
    }

    func testSoftmaxWide() throws {
        let c = "softmax_wide"
        assertClose(softmax(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    // MARK: - Attention

    func testAttentionWithKeyMask() throws {
        let c = "attention"
        let out = multiHeadAttention(
            q: try Golden.input(c, "q"), k: try Golden.input(c, "k"), v: try Golden.input(c, "v"),
            batch: 2, lq: 6, lk: 6, heads: 3, headDim: 4, keyBias: try Golden.input(c, "key_bias"))
        assertClose(out, try Golden.output(c), c)
    }

    /// q, k and v read from one packed `[2, 5, 3·16]` projection at column offsets 0, 16, 32.
    func testAttentionPackedQKV() throws {
        let c = "attention_packed"
        let qkv = try Golden.input(c, "qkv")
        let out = multiHeadAttention(
            q: qkv, qOffset: 0, k: qkv, kOffset: 16, v: qkv, vOffset: 32,
            batch: 2, lq: 5, lk: 5, heads: 2, headDim: 8)
        assertClose(out, try Golden.output(c), c)
    }

    /// Cross-attention, lq = 12 ≠ lk = 20: q at column 5 of a `[2, 12, 73]` buffer, k and v packed in `[2, 20, 128]`
    /// (v at column 64), with a key mask; heads split across threads when there are several.
    func testAttentionCrossWithOffsets() throws {
        let c = "attention_cross"
        let q = try Golden.input(c, "q"), kv = try Golden.input(c, "kv"), bias = try Golden.input(c, "key_bias")
        let expected = try Golden.output(c)
        for t in threadCounts {
            let out = withComputeThreads(t) {
                multiHeadAttention(
                    q: q, qOffset: 5, k: kv, kOffset: 0, v: kv, vOffset: 64,
                    batch: 2, lq: 12, lk: 20, heads: 4, headDim: 16, keyBias: bias)
            }
            assertClose(out, expected, "\(c) on \(t) threads")
        }
    }

    // MARK: - Convolution and pooling

    func testConv3x3Stride2Pad1() throws {
        let c = "conv3x3_s2_p1"
        assertClose(conv2d(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), stride: 2, padding: 1), try Golden.output(c), c)
    }

    func testConv3x3Stride1Pad1() throws {
        let c = "conv3x3_s1_p1"
        assertClose(conv2d(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), stride: 1, padding: 1), try Golden.output(c), c)
    }

    /// A non-square 3×2 kernel on a 7×10 image.
    func testConv3x2Stride2Pad1() throws {
        let c = "conv3x2_s2_p1"
        assertClose(conv2d(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), stride: 2, padding: 1), try Golden.output(c), c)
    }

    /// 1×1, stride 1: the direct path that uses the image as the column matrix.
    func testConv1x1() throws {
        let c = "conv1x1"
        assertClose(conv2d(try Golden.input(c, "x"), weight: try Golden.input(c, "weight")), try Golden.output(c), c)
    }

    /// 1×1, stride 2: the im2col path.
    func testConv1x1Stride2() throws {
        let c = "conv1x1_s2"
        assertClose(conv2d(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), stride: 2), try Golden.output(c), c)
    }

    /// 16→32 channels on 24×20: im2col rows and the GEMM are split across threads.
    func testConv3x3Big() throws {
        let c = "conv3x3_big"
        let x = try Golden.input(c, "x"), w = try Golden.input(c, "weight"), expected = try Golden.output(c)
        for t in threadCounts { assertClose(withComputeThreads(t) { conv2d(x, weight: w, padding: 1) }, expected, "\(c) on \(t) threads") }
    }

    func testConvPatch4() throws {
        let c = "conv_patch4"
        assertClose(conv2d(try Golden.input(c, "x"), weight: try Golden.input(c, "weight"), stride: 4), try Golden.output(c), c)
    }

    /// The ViT patch embedding as the model computes it, `patches(x) @ weight.reshaped([oc, c·p·p]).T`, equals the
    /// stride-4 convolution once its `[n, oc, gh, gw]` output is read as `[n, gh·gw, oc]`.
    func testPatchEmbeddingMatchesConvolution() throws {
        let c = "conv_patch4"
        let x = try Golden.input(c, "x"), w = try Golden.input(c, "weight"), conv = try Golden.output(c)
        let rows = linear(patches(x, size: 4), weight: w.reshaped([6, 48]), bias: nil)  // [2, 9, 6]
        let expected = Tensor.uninitialized([2, 9, 6])
        for n in 0..<2 { for p in 0..<9 { for o in 0..<6 { expected.mutableData[(n * 9 + p) * 6 + o] = conv[n, o, p / 3, p % 3] } } }
        assertClose(rows, expected, "patch embedding")
    }

    /// Patch rows of a 10×13 image (the ragged edge dropped), against `F.unfold(x, 4, stride=4).transpose(1, 2)`.
    func testPatches() throws {
        let c = "patches4"
        assertClose(patches(try Golden.input(c, "x"), size: 4), try Golden.output(c), c)
    }

    func testAvgPool2() throws {
        let c = "avg_pool2"
        assertClose(avgPool2d(try Golden.input(c, "x"), kernel: 2), try Golden.output(c), c)
    }

    func testBatchNorm() throws {
        let c = "batch_norm"
        let x = try Golden.input(c, "x"), w = try Golden.input(c, "weight"), b = try Golden.input(c, "bias")
        let mean = try Golden.input(c, "running_mean"), variance = try Golden.input(c, "running_var")
        let expected = try Golden.output(c)
        assertClose(batchNorm2d(x, weight: w, bias: b, runningMean: mean, runningVar: variance, eps: 1e-5), expected, c)
        assertClose(
            batchNorm2d(x, weight: w, bias: b, runningMean: mean, runningVar: variance, eps: 1e-5, relu: true),
            relu(expected), "\(c) + relu")
    }

    // MARK: - Lookup, slicing and concatenation

    func testEmbedding() throws {
        let c = "embedding"
        assertClose(embedding(try Golden.input(c, "table"), ids: try Golden.ids(c, "ids")), try Golden.output(c), c)
    }

    func testFirstRows() throws {
        let c = "first_rows"
        assertClose(firstRows(try Golden.input(c, "x")), try Golden.output(c), c)
    }

    func testConcatenateRows() throws {
        let c = "concatenate_rows"
        let parts = try ["a", "b", "c"].map { try Golden.input(c, $0) }
        assertClose(concatenateRows(parts), try Golden.output(c), c)
    }

    /// `rows`, `reshaped`, the subscript and `copy` are views and copies of the same elements as `x[1:4]`.
    func testTensorViews() throws {
        let c = "rows"
        let x = try Golden.input(c, "x"), expected = try Golden.output(c)
        let view = x.rows(1..<4)
        assertClose(view, expected, c)
        XCTAssertTrue(view.storage === x.storage, "rows: a view, not a copy")
        let flat = view.reshaped([-1, 4])
        XCTAssertEqual(flat.shape, [9, 4])
        assertClose(flat.reshaped([3, 3, 4]), expected, "\(c) reshaped")
        XCTAssertEqual(view[2, 1, 3], expected[2, 1, 3])
        XCTAssertEqual(x[1, 0, 0], expected[0, 0, 0])
        let copy = view.copy()
        XCTAssertFalse(copy.storage === x.storage, "copy: own storage")
        assertClose(copy, expected, "\(c) copy")
        XCTAssertEqual(Tensor(shape: [2, 3], repeating: 1.5).scalars, [Float](repeating: 1.5, count: 6))
        XCTAssertEqual(Tensor(shape: [], scalars: [7]).count, 1)
    }
}
