// Opportunistic batching: requests that arrive while the model is busy are encoded together in the next pass.
// A lone request is never held back waiting for company (no timer), so batching adds no latency at low load and
// saves per-call overhead (one GEMM of many rows instead of many of one) under load.

import Essentials
import Foundation

/// A dedicated thread that runs `process` on batches of submitted jobs, at most `maxBatch` at a time.
///
/// The model's work is CPU-bound and synchronous: it runs on this thread (and the Tensors thread pool), never on
/// the server's event loops or the Swift concurrency pool, so slow inference cannot stall accepting connections.
package final class BatchWorker<Job: Sendable, Output: Sendable>: Sendable {
    /// Most jobs handed to one `process` call.
    package let maxBatch: Int
    private let process: @Sendable ([Job]) -> [Result<Output, Error>]
    /// The jobs waiting for the thread, whether `stop` was called, and the sizes of the batches processed so far
    /// (for tests and the info endpoint).
    private struct Queue: Sendable {
        var pending: [(job: Job, continuation: CheckedContinuation<Output, Error>)] = []
        var stopped = false
        var batchSizes: [Int: Int] = [:]
    }
    private let queue = Monitor(Queue())

    /// Starts the worker thread; `process` must return one result per job, in order.
    package init(name: String, maxBatch: Int, process: @escaping @Sendable ([Job]) -> [Result<Output, Error>]) {
        self.maxBatch = max(1, maxBatch)
        self.process = process
        let thread = Thread { [weak self] in self?.loop() }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Queues `job` and waits for its result.
    package func submit(_ job: Job) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = queue.withLock { q in
                if !q.stopped { q.pending.append((job, continuation)) }
                return !q.stopped
            }
            if !accepted { continuation.resume(throwing: CancellationError()) }
        }
    }

    /// How many batches of each size were processed.
    package var batchSizeCounts: [Int: Int] { queue.withLock { $0.batchSizes } }

    /// Jobs waiting for the thread.
    package var pendingCount: Int { queue.withLock { $0.pending.count } }

    /// Stops the thread after the jobs already queued; later submissions fail.
    package func stop() { queue.withLock { $0.stopped = true } }

    private func loop() {
        while true {
            let taken = queue.wait(until: { !$0.pending.isEmpty || $0.stopped }) {
                q -> [(job: Job, continuation: CheckedContinuation<Output, Error>)]? in
                if q.pending.isEmpty { return nil }  // stopped, and nothing left
                let batch = Array(q.pending.prefix(maxBatch))
                q.pending.removeFirst(batch.count)
                q.batchSizes[batch.count, default: 0] += 1
                return batch
            }
            guard let batch = taken else { return }
            let results = process(batch.map(\.job))
            precondition(results.count == batch.count, "a batch must give one result per job")
            for (entry, result) in zip(batch, results) { entry.continuation.resume(with: result) }
        }
    }
}
