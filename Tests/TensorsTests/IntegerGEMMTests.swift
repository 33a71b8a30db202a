// The int8 path's integer GEMM (CKernels' cnclip_igemm_s8): exact int32 sums, checked against a plain loop for many
// shapes, for every kernel this CPU has (VNNI, AVX2, portable), for any split of the rows over threads, and at the
// extreme values where a saturating instruction would go wrong.

import CKernels
import Dispatch
import Essentials
import XCTest

final class IntegerGEMMTests: XCTestCase {
    override func tearDown() {
        cnclip_igemm_use_kernel(0)
        super.tearDown()
    }

    /// The kernels this CPU can run (portable always).
    private var kernels: [Int32] {
        [Int32(CNCLIP_IGEMM_PORTABLE), Int32(CNCLIP_IGEMM_AVX2), Int32(CNCLIP_IGEMM_VNNI), Int32(CNCLIP_IGEMM_VNNI512)].filter { kernel in
            cnclip_igemm_use_kernel(kernel)
            defer { cnclip_igemm_use_kernel(0) }
            return cnclip_igemm_kernel() == kernel
        }
    }

    /// `a [m, k]` (stride `lda`) · `b [n, k]ᵀ` (stride `ldb`) by the definition.
    private func plain(_ m: Int, _ n: Int, _ k: Int, _ a: [Int8], _ lda: Int, _ b: [Int8], _ ldb: Int) -> [Int32] {
        var c = [Int32](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s: Int32 = 0
                for p in 0..<k { s += Int32(a[i * lda + p]) * Int32(b[j * ldb + p]) }
                c[i * n + j] = s
            }
        }
        return c
    }

    private func random(_ count: Int, _ g: inout SplitMix64) -> [Int8] {
        (0..<count).map { _ in Int8(truncatingIfNeeded: g.next()) }
    }

    /// Runs the GEMM with kernel `kernel`; `c` starts as garbage, which the call must overwrite.
    private func run(
        _ kernel: Int32, _ m: Int, _ n: Int, _ k: Int, _ a: [Int8], _ lda: Int, _ b: [Int8], _ ldb: Int,
        ldc: Int? = nil
    ) -> [Int32] {
        let ldc = ldc ?? n
        cnclip_igemm_use_kernel(kernel)
        defer { cnclip_igemm_use_kernel(0) }
        var c = [Int32](repeating: -123_456, count: max(m * ldc, 1))
        cnclip_igemm_s8(m, n, k, a, lda, b, ldb, &c, ldc)
        return (0..<m).flatMap { i in c[(i * ldc)..<(i * ldc + n)] }
    }

    func testEveryKernelGivesThePlainLoopsIntegers() {
        let kernels = self.kernels
        XCTAssertTrue(kernels.contains(Int32(CNCLIP_IGEMM_PORTABLE)))
        print("integer GEMM kernels on this CPU: \(kernels) (1 portable, 2 AVX2, 3 VNNI 256-bit, 4 VNNI 512-bit); default \(cnclip_igemm_kernel())")
        var g = SplitMix64(seed: 13)
        // Edge tiles in both directions, k not a multiple of 2 or 4, several k-blocks (1024) and column blocks (128).
        let shapes = [
            (1, 1, 1), (1, 16, 4), (6, 16, 8), (7, 17, 3), (5, 33, 2), (13, 40, 1025), (3, 200, 77),
            (64, 96, 768), (1, 130, 3072), (50, 129, 2049), (12, 768, 9),
        ]
        for (m, n, k) in shapes {
            let a = random(m * k, &g), b = random(n * k, &g)
            let want = plain(m, n, k, a, k, b, k)
            for kernel in kernels {
                let got = run(kernel, m, n, k, a, k, b, k)
                if got != want {
                    let i = got.indices.first { got[$0] != want[$0] } ?? 0
                    XCTFail(
                        "kernel \(kernel), m \(m) n \(n) k \(k): element \(i) is \(got[i]), want \(want[i]); first values \(got.prefix(4)) vs \(want.prefix(4))"
                    )
                }
            }
        }
    }

    func testExtremeValuesDoNotSaturate() {
        // 127 · 127 and -128 · -128 next to each other are what a saturating 16-bit pair sum (vpmaddubsw) gets wrong.
        let m = 7, n = 19, k = 4099
        for (av, bv) in [(Int8(127), Int8(127)), (-128, -128), (127, -128), (-128, 127)] {
            let a = [Int8](repeating: av, count: m * k), b = [Int8](repeating: bv, count: n * k)
            let want = [Int32](repeating: Int32(av) * Int32(bv) * Int32(k), count: m * n)
            for kernel in kernels { XCTAssertEqual(run(kernel, m, n, k, a, k, b, k), want, "kernel \(kernel), a \(av), b \(bv)") }
        }
    }

    func testStridesAndEmptyShapes() {
        var g = SplitMix64(seed: 5)
        let (m, n, k, lda, ldb, ldc) = (9, 21, 37, 40, 45, 30)
        let a = random(m * lda, &g), b = random(n * ldb, &g)
        let want = plain(m, n, k, a, lda, b, ldb)
        for kernel in kernels { XCTAssertEqual(run(kernel, m, n, k, a, lda, b, ldb, ldc: ldc), want, "kernel \(kernel)") }
        // k = 0: every sum is 0.
        for kernel in kernels { XCTAssertEqual(run(kernel, 3, 4, 0, [0], 1, [0], 1), [Int32](repeating: 0, count: 12)) }
    }

    func testPackedWeightsByColumnBlocks() {
        // A weight packed once, used whole and by 16-aligned column blocks (how threads split few-row products).
        var g = SplitMix64(seed: 8)
        for (m, n, k) in [(5, 130, 2049), (1, 48, 7), (7, 300, 1024)] {
            let a = random(m * k, &g), b = random(n * k, &g)
            let want = plain(m, n, k, a, k, b, k)
            for kernel in kernels {
                var packed = [UInt8](repeating: 0, count: cnclip_igemm_packed_size(n, k, kernel))
                packed.withUnsafeMutableBytes { cnclip_igemm_pack(n, k, b, k, kernel, $0.baseAddress!) }
                var c = [Int32](repeating: -1, count: m * n)
                for (lo, hi) in [(0, 16), (16, 64), (64, n)] where lo < n {
                    packed.withUnsafeBytes { p in
                        c.withUnsafeMutableBufferPointer { cp in
                            cnclip_igemm_s8_packed(m, lo, min(hi, n) - lo, n, k, a, k, p.baseAddress!, kernel, cp.baseAddress! + lo, n)
                        }
                    }
                }
                XCTAssertEqual(c, want, "kernel \(kernel), m \(m) n \(n) k \(k)")
            }
        }
    }

    func testDequantizedProductEqualsProductThenDequantization() {
        // The tile-by-tile dequantization (one k-block straight from the kernel's tile, several through the scratch)
        // gives the bits of the integer product followed by cnclip_dequantize_rows, for column blocks too.
        var g = SplitMix64(seed: 34)
        for (m, n, k) in [(13, 100, 768), (6, 64, 1024), (7, 70, 1025), (25, 130, 3072), (1, 48, 5)] {
            let a = random(m * k, &g), b = random(n * k, &g)
            let rowScales = (0..<m).map { _ in Float.random(in: 0.001...0.1, using: &g) }
            let colScales = (0..<n).map { _ in Float.random(in: 0.001...0.1, using: &g) }
            let bias = (0..<n).map { _ in Float.random(in: -1...1, using: &g) }
            for kernel in kernels {
                var packed = [UInt8](repeating: 0, count: cnclip_igemm_packed_size(n, k, kernel))
                packed.withUnsafeMutableBytes { cnclip_igemm_pack(n, k, b, k, kernel, $0.baseAddress!) }
                cnclip_igemm_use_kernel(kernel)
                defer { cnclip_igemm_use_kernel(0) }
                var want = [Float](repeating: 0, count: m * n)
                let sums = plain(m, n, k, a, k, b, k)
                cnclip_dequantize_rows(sums, m, n, n, rowScales, colScales, bias, &want, n)
                for withBias in [true, false] {
                    if !withBias { cnclip_dequantize_rows(sums, m, n, n, rowScales, colScales, nil, &want, n) }
                    var y = [Float](repeating: .nan, count: m * n), scratch = [Int32](repeating: -1, count: m * n)
                    for (lo, hi) in [(0, 32), (32, 48), (48, n)] where lo < n {
                        packed.withUnsafeBytes { p in
                            y.withUnsafeMutableBufferPointer { yp in
                                scratch.withUnsafeMutableBufferPointer { sp in
                                    cnclip_igemm_s8_dequantized(
                                        m, lo, min(hi, n) - lo, n, k, a, k, p.baseAddress!, kernel, rowScales, colScales,
                                        withBias ? bias : nil, yp.baseAddress! + lo, n, sp.baseAddress! + lo, n)
                                }
                            }
                        }
                    }
                    XCTAssertEqual(y.map(\.bitPattern), want.map(\.bitPattern), "kernel \(kernel), m \(m) n \(n) k \(k), bias \(withBias)")
                }
            }
        }
    }

    func testRowSplitsOverThreadsGiveTheSameIntegers() {
        var g = SplitMix64(seed: 21)
        let (m, n, k) = (37, 70, 300)
        let a = random(m * k, &g), b = random(n * k, &g)
        let whole = run(0, m, n, k, a, k, b, k)
        for parts in [2, 3, 5, 37] {
            var c = [Int32](repeating: 7, count: m * n)
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        concurrentPerform(iterations: parts) { part in
                            let lo = m * part / parts, hi = m * (part + 1) / parts
                            cnclip_igemm_s8(hi - lo, n, k, ap.baseAddress! + lo * k, k, bp.baseAddress!, k, cp.baseAddress! + lo * n, n)
                        }
                    }
                }
            }
            XCTAssertEqual(c, whole, "rows split in \(parts)")
        }
    }
}
