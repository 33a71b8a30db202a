// Work splitting for the kernels (matrix products split themselves in BLAS.swift, over the same count).

import CKernels
import Dispatch
import Essentials
import Foundation
import Synchronization

/// How many threads every kernel, BLAS products included, splits its work over (defaults to the active processor count).
package enum ComputeThreads {
    // Set between jobs, never while a kernel runs: relaxed ordering is enough.
    private static let value = Atomic(ProcessInfo.processInfo.activeProcessorCount)

    /// The current thread count.
    package static var count: Int { value.load(ordering: .relaxed) }

    /// Sets the thread count.
    package static func set(_ n: Int) {
        value.store(max(1, n), ordering: .relaxed)
    }
}

/// Runs `body(i)` for each `i` in `0..<iterations` on the kernels' compute threads (`cnclip_parallel`: waiting
/// threads spin briefly instead of sleeping, so handing a layer's work over costs no wake-up), or on Dispatch's
/// threads when those are taken by another job. Every call ends before this returns.
package func computePerform(iterations: Int, _ body: (Int) -> Void) {
    if iterations <= 1 {
        if iterations == 1 { body(0) }
        return
    }
    let ran = withoutActuallyEscaping(body) { body -> Bool in
        var call = body
        return withUnsafeMutablePointer(to: &call) { pointer in
            cnclip_parallel(
                iterations,
                { context, index in context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index) },
                pointer) != 0
        }
    }
    if !ran { concurrentPerform(iterations: iterations, body) }
}

/// Runs `body(range)` over `0..<count` split into contiguous chunks, in parallel when the work is large enough.
/// `cost` is the approximate work per item (in multiply-adds); small jobs stay on the calling thread.
@inlinable
package func parallelFor(_ count: Int, cost: Int = 1, _ body: (Range<Int>) -> Void) {
    _ = parallelChunks(count, cost: cost) { _, range in body(range) }
}

/// Splits `0..<count` into a fixed number of contiguous chunks (one per thread when the work is large, else one)
/// and runs `body(chunk, range)`; returns the number of chunks. The split depends only on `count`, `cost` and the
/// thread count, so reductions that combine per-chunk partial sums in chunk order are deterministic.
@usableFromInline
func parallelChunks(_ count: Int, cost: Int, _ body: (Int, Range<Int>) -> Void) -> Int {
    let threads = ComputeThreads.count
    let chunks = (threads <= 1 || count <= 1 || count * max(cost, 1) < 32_768) ? 1 : min(count, threads)
    if chunks == 1 { body(0, 0..<count); return 1 }
    computePerform(iterations: chunks) { c in
        body(c, count * c / chunks..<count * (c + 1) / chunks)
    }
    return chunks
}
