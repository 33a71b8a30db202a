import CKernels
import Foundation
import XCTest

@testable import Tensors

/// `BLAS.gemm` (our `cnclip_sgemm`): correct against a float64 product, and every element's bits independent of
/// the call's shape, of the element's position and of the thread split — the property that makes a text's
/// features independent of its batch, its padding and the thread count.
final class GEMMTests: XCTestCase {
    private func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 1000
        }
    }

    /// op(a) @ op(b) in float64 for row `i`, column `j`.
    private func exact(_ a: [Float], _ b: [Float], transA: Bool, transB: Bool, m: Int, n: Int, k: Int, i: Int, j: Int) -> Double {
        var s = 0.0
        for p in 0..<k {
            let x = transA ? a[p * m + i] : a[i * k + p], y = transB ? b[j * k + p] : b[p * n + j]
            s += Double(x) * Double(y)
        }
        return s
    }

    private func product(
        _ a: [Float], _ b: [Float], transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, beta: Float = 0, c: [Float]? = nil, bias: [Float]? = nil
    ) -> [Float] {
        var out = c ?? [Float](repeating: 0, count: m * n)
        let biasCopy = bias ?? []
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { cp in
                    biasCopy.withUnsafeBufferPointer { biasp in
                        BLAS.gemm(
                            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                            lda: transA ? m : k, b: bp.baseAddress!, ldb: transB ? k : n, beta: beta,
                            bias: bias == nil ? nil : biasp.baseAddress, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
        }
        return out
    }

    func testABiasJoinsAsAddmmDoes() {
        // Linear's bias: the same bits as beta = 1 over rows holding the bias (PyTorch's addmm), with edge tiles and splits.
        for (m, n, k) in [(5, 21, 40), (150, 200, 700), (3, 700, 900)] {
            let a = random(m * k, seed: 21), b = random(k * n, seed: 22), bias = random(n, seed: 23)
            let rows = (0..<m).flatMap { _ in bias }
            XCTAssertEqual(
                product(a, b, transA: false, transB: true, m: m, n: n, k: k, bias: bias),
                product(a, b, transA: false, transB: true, m: m, n: n, k: k, beta: 1, c: rows), "m \(m) n \(n) k \(k)")
        }
    }

    func testProductsMatchFloat64() {
        // Shapes across the kernel's edges (6-row and 16-column tiles, 96-column blocks, 512-deep k-blocks).
        for (m, n, k) in [(1, 1, 1), (7, 17, 5), (13, 100, 513), (64, 96, 1030), (200, 33, 64)] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a = random(m * k, seed: UInt64(m * 31 + k)), b = random(k * n, seed: UInt64(n * 17 + k))
                let c0 = random(m * n, seed: 5)
                let c = product(a, b, transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, beta: 2, c: c0)
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        let want = 0.5 * exact(a, b, transA: ta, transB: tb, m: m, n: n, k: k, i: i, j: j) + 2 * Double(c0[i * n + j])
                        worst = max(worst, abs(Double(c[i * n + j]) - want) / (Double(k).squareRoot() + 1))
                    }
                }
                XCTAssertLessThan(worst, 1e-5, "m \(m) n \(n) k \(k) transA \(ta) transB \(tb)")
            }
        }
    }

    func testEveryElementIsIndependentOfTheCallShapeAndSplit() {
        let (m, n, k) = (150, 200, 700)  // large enough to be split across threads
        for (ta, tb) in [(false, true), (false, false), (true, false)] {
            let a = random(m * k, seed: 1), b = random(k * n, seed: 2)
            let saved = ComputeThreads.count
            defer { ComputeThreads.set(saved) }
            ComputeThreads.set(2)
            let full = product(a, b, transA: ta, transB: tb, m: m, n: n, k: k)
            for threads in [1, 3] {
                ComputeThreads.set(threads)
                XCTAssertEqual(product(a, b, transA: ta, transB: tb, m: m, n: n, k: k), full, "\(threads) threads")
            }
            ComputeThreads.set(2)
            // A band of rows alone, at an offset that is not a multiple of any tile size.
            for (lo, rows) in [(1, 1), (7, 13), (61, 89)] {
                let band: [Float] = ta ? (0..<k).flatMap { p in a[(p * m + lo)..<(p * m + lo + rows)] } : Array(a[(lo * k)..<((lo + rows) * k)])
                let part = product(band, b, transA: ta, transB: tb, m: rows, n: n, k: k)
                XCTAssertEqual(part, Array(full[(lo * n)..<((lo + rows) * n)]), "rows \(lo)..<\(lo + rows)")
            }
            // A band of columns alone.
            for (lo, cols) in [(3, 1), (5, 37), (100, 100)] {
                let bandB: [Float] = tb ? Array(b[(lo * k)..<((lo + cols) * k)]) : (0..<k).flatMap { p in b[(p * n + lo)..<(p * n + lo + cols)] }
                let part = product(a, bandB, transA: ta, transB: tb, m: m, n: cols, k: k)
                let want = (0..<m).flatMap { i in full[(i * n + lo)..<(i * n + lo + cols)] }
                XCTAssertEqual(part, want, "columns \(lo)..<\(lo + cols)")
            }
        }
    }

    func testTrailingZeroProductsChangeNothing() {
        // Attention's probabilities @ values over padded keys: zero probabilities past the real keys.
        let (m, n, k, used) = (52, 64, 52, 15)
        var a = random(m * k, seed: 3)
        for i in 0..<m { for p in used..<k { a[i * k + p] = 0 } }
        let b = random(k * n, seed: 4)
        let padded = product(a, b, transA: false, transB: false, m: m, n: n, k: k)
        let trimmedA = (0..<m).flatMap { i in a[(i * k)..<(i * k + used)] }
        XCTAssertEqual(product(trimmedA, Array(b[0..<(used * n)]), transA: false, transB: false, m: m, n: n, k: used), padded)
    }

    func testEveryKernelGivesTheSameBits() {
        // Edge tiles of every kernel (6 × 16 and 12 × 32), two k-blocks, alpha, beta and a bias.
        for (m, n, k) in [(37, 70, 600), (13, 33, 1030), (25, 97, 64)] {
            for (ta, tb) in [(false, true), (false, false), (true, false)] {
                let a = random(m * k, seed: 8), b = random(k * n, seed: 9), c0 = random(m * n, seed: 10), bias = random(n, seed: 11)
                let best = product(a, b, transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.25, beta: 1.5, c: c0, bias: bias)
                for kernel in [CNCLIP_SGEMM_PORTABLE, CNCLIP_SGEMM_AVX2, CNCLIP_SGEMM_AVX512] {
                    cnclip_sgemm_use_kernel(Int32(kernel))
                    defer { cnclip_sgemm_use_kernel(0) }
                    guard cnclip_sgemm_kernel() > 0 else { continue }  // not on this CPU
                    XCTAssertEqual(
                        product(a, b, transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.25, beta: 1.5, c: c0, bias: bias), best,
                        "kernel \(kernel), m \(m) n \(n) k \(k) transA \(ta) transB \(tb)")
                }
            }
        }
    }

    func testRowsReadInPlaceGiveTheBitsOfPackedRows() {
        // The AVX-512 kernel reads the rows of op(a) = a where they lie, at any row stride (attention's queries inside
        // qkv), a last short row panel with a kernel of its height (every height 1...12 below); op(a) = aᵀ is always
        // packed into whole panels. Both must agree.
        let (n, k, lda) = (40, 600, 1000)
        let wide = random(25 * lda, seed: 12), b = random(n * k, seed: 13), bias = random(n, seed: 14)
        for m in 1...25 {
            let transposed = (0..<k).flatMap { p in (0..<m).map { i in wide[i * lda + 7 + p] } }  // [k, m]
            for kernel in [CNCLIP_SGEMM_PORTABLE, CNCLIP_SGEMM_AVX2, CNCLIP_SGEMM_AVX512] {
                cnclip_sgemm_use_kernel(Int32(kernel))
                defer { cnclip_sgemm_use_kernel(0) }
                guard cnclip_sgemm_kernel() > 0 else { continue }
                var inPlace = [Float](repeating: .nan, count: m * n), packed = inPlace
                wide.withUnsafeBufferPointer { a in
                    cnclip_sgemm(0, 1, m, n, k, 1, a.baseAddress! + 7, lda, b, k, 0, bias, &inPlace, n)
                }
                cnclip_sgemm(1, 1, m, n, k, 1, transposed, m, b, k, 0, bias, &packed, n)
                XCTAssertEqual(inPlace.map(\.bitPattern), packed.map(\.bitPattern), "kernel \(kernel), \(m) rows")
            }
        }
    }

    /// A thread's packing buffers are freed when it exits: the dispatch pools retire idle worker threads, and their
    /// buffers used to leak (found by FuzzHFConfig's leak check). 64 threads, each packing 1 MB of `a`, one after
    /// another: resident memory must not grow by their sum.
    func testPackingBuffersAreFreedWhenTheirThreadExits() throws {
        func resident() throws -> Int {
            let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
            return Int(statm[1])! * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        func runThread() {
            var thread = pthread_t()
            let rc = pthread_create(
                &thread, nil,
                { _ in
                    // aᵀ [1024, 256] @ [256, 16]: 1 MB of packed `a` on this thread (op(a) = aᵀ is packed by every
                    // kernel; the AVX-512 kernel reads op(a) = a in place, with no buffer to leak).
                    let m = 1024, n = 16, k = 256
                    let a = [Float](repeating: 1, count: k * m), b = [Float](repeating: 1, count: k * n)
                    var c = [Float](repeating: 0, count: m * n)
                    BLAS.sgemm(true, false, m, n, k, 1, a, m, b, n, 0, &c, n)
                    precondition(c[0] == Float(k))
                    return nil
                }, nil)
            precondition(rc == 0)
            pthread_join(thread, nil)
        }
        runThread()
        let before = try resident()
        for _ in 0..<64 { runThread() }
        let grown = try resident() - before
        XCTAssertLessThan(grown, 24 << 20, "64 exited threads left \(grown >> 20) MB resident (1 MB each if leaked)")
    }
}
