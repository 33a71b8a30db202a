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
}
