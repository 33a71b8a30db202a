// Several caller threads running the same kernels at once must get the serial result bit for bit: the engine
// runs its GEMM and attention kernels on the caller's threads, and the kernels share the buffer pool.

import Foundation
import Synchronization
import Tensors
import TestSupport
import XCTest

final class ConcurrencyTests: XCTestCase {
    /// Six threads × ten rounds of `linear` (a split GEMM) and `multiHeadAttention`, with and without inner splitting.
    func testConcurrentCallersMatchSerial() throws {
        let lc = "linear_rows", ac = "attention_cross"
        let x = try Golden.input(lc, "x"), w = try Golden.input(lc, "weight"), b = try Golden.input(lc, "bias")
        let q = try Golden.input(ac, "q"), kv = try Golden.input(ac, "kv"), bias = try Golden.input(ac, "key_bias")
        let runLinear: @Sendable () -> Tensor = { linear(x, weight: w, bias: b) }
        let runAttention: @Sendable () -> Tensor = {
            multiHeadAttention(
                q: q, qOffset: 5, k: kv, kOffset: 0, v: kv, vOffset: 64,
                batch: 2, lq: 12, lk: 20, heads: 4, headDim: 16, keyBias: bias)
        }
        for inner in [1, 2] {
            try withComputeThreads(inner) {
                let serialLinear = runLinear().scalars, serialAttention = runAttention().scalars
                assertClose(Tensor(shape: [100, 90], scalars: serialLinear), try Golden.output(lc), "serial \(lc)")
                let mismatches = Mutex<[String]>([])
                let threads = 6, rounds = 10
                let start = DispatchSemaphore(value: 0), done = DispatchGroup()
                for t in 0..<threads {
                    done.enter()
                    let thread = Thread {
                        start.wait()
                        for r in 0..<rounds {
                            // Alternate the order so linear and attention overlap on different threads.
                            let (l, a) =
                                (t + r) % 2 == 0
                                ? (runLinear(), runAttention())
                                : {
                                    let a = runAttention(); return (runLinear(), a)
                                }()
                            if l.scalars != serialLinear { mismatches.withLock { $0.append("linear, thread \(t), round \(r)") } }
                            if a.scalars != serialAttention { mismatches.withLock { $0.append("attention, thread \(t), round \(r)") } }
                        }
                        done.leave()
                    }
                    thread.start()
                }
                for _ in 0..<threads { start.signal() }
                done.wait()
                XCTAssertEqual(mismatches.withLock { $0 }, [], "with \(inner) inner threads: results differ from the serial call")
            }
        }
    }

    /// The compute threads' pool (`computePerform`): every index runs exactly once, over many consecutive jobs (each
    /// tagged, so that a worker late for one job cannot take an index of the next), with jobs larger than the pool,
    /// calls from inside an iteration (refused by the busy pool, run on Dispatch's threads) and several callers at once.
    func testComputePerformRunsEveryIndexOnce() {
        func check(_ iterations: Int, _ label: String) {
            let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: iterations)
            defer { counts.deallocate() }
            counts.initialize(repeating: 0)
            let base = UnsafeMutablePointer<Int>(counts.baseAddress!)
            computePerform(iterations: iterations) { base[$0] += 1 }
            XCTAssertEqual(Array(counts), [Int](repeating: 1, count: iterations), label)
        }
        for iterations in [0, 1, 2, 3, 7, 64, 1000] { check(iterations, "\(iterations) iterations") }
        for job in 0..<20_000 { check(2 + job % 3, "job \(job)") }
        // A job whose iterations start jobs of their own.
        let outer = 4, inner = 5
        let cells = UnsafeMutableBufferPointer<Int>.allocate(capacity: outer * inner)
        defer { cells.deallocate() }
        cells.initialize(repeating: 0)
        let cellBase = cells.baseAddress!
        computePerform(iterations: outer) { i in computePerform(iterations: inner) { j in cellBase[i * inner + j] += 1 } }
        XCTAssertEqual(Array(cells), [Int](repeating: 1, count: outer * inner), "nested jobs")
        // Four callers at once: one holds the pool, the others run on Dispatch's threads, all complete.
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<2_000 { computePerform(iterations: 3) { _ in total.add(1, ordering: .relaxed) } }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 4 * 2_000 * 3, "concurrent callers")
    }
}
