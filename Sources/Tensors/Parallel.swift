// Work splitting for the kernels (matrix products split themselves in BLAS.swift, over the same count).

import Dispatch
import Foundation

/// How many threads every kernel, BLAS products included, splits its work over (defaults to the active processor count).
public enum ComputeThreads {
    nonisolated(unsafe) private static var value = ProcessInfo.processInfo.activeProcessorCount

    /// The current thread count.
    public static var count: Int { value }

    /// Sets the thread count.
    public static func set(_ n: Int) {
        value = max(1, n)
    }
}

/// Runs `body(range)` over `0..<count` split into contiguous chunks, in parallel when the work is large enough.
/// `cost` is the approximate work per item (in multiply-adds); small jobs stay on the calling thread.
@inlinable
public func parallelFor(_ count: Int, cost: Int = 1, _ body: (Range<Int>) -> Void) {
    let threads = ComputeThreads.count
    if threads <= 1 || count <= 1 || count * max(cost, 1) < 32_768 {
        body(0..<count)
        return
    }
    let chunks = min(count, threads)
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = count * c / chunks, hi = count * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}
