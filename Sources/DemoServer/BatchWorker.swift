// Opportunistic batching: requests that arrive while the model is busy are encoded together in the next pass.
// A lone request is never held back waiting for company (no timer), so batching adds no latency at low load and
// saves per-call overhead (one GEMM of many rows instead of many of one) under load.

import Foundation

/// A dedicated thread that runs `process` on batches of submitted jobs, at most `maxBatch` at a time.
///
/// The model's work is CPU-bound and synchronous: it runs on this thread (and the Tensors thread pool), never on
/// the server's event loops or the Swift concurrency pool, so slow inference cannot stall accepting connections.
package final class BatchWorker<Job: Sendable, Output: Sendable>: @unchecked Sendable {  // sound: `condition` guards the queue; `process` runs on the worker thread only
    /// Most jobs handed to one `process` call.
    package let maxBatch: Int
    private let process: ([Job]) -> [Result<Output, Error>]
    private let condition = NSCondition()
    private var pending: [(job: Job, continuation: CheckedContinuation<Output, Error>)] = []
    private var stopped = false
    /// Sizes of the batches processed so far (for tests and the info endpoint).
    private var batchSizes: [Int: Int] = [:]

    /// Starts the worker thread; `process` must return one result per job, in order.
    package init(name: String, maxBatch: Int, process: @escaping ([Job]) -> [Result<Output, Error>]) {
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
            condition.lock()
            if stopped {
                condition.unlock()
                continuation.resume(throwing: CancellationError())
                return
            }
            pending.append((job, continuation))
            condition.signal()
            condition.unlock()
        }
    }

    /// How many batches of each size were processed.
    package var batchSizeCounts: [Int: Int] {
        condition.lock(); defer { condition.unlock() }
        return batchSizes
    }

    /// Jobs waiting for the thread.
    package var pendingCount: Int {
        condition.lock(); defer { condition.unlock() }
        return pending.count
    }

    /// Stops the thread after the jobs already queued; later submissions fail.
    package func stop() {
        condition.lock(); stopped = true; condition.broadcast(); condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty && stopped { condition.unlock(); return }
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            batchSizes[batch.count, default: 0] += 1
            condition.unlock()
            let results = process(batch.map(\.job))
            precondition(results.count == batch.count, "a batch must give one result per job")
            for (entry, result) in zip(batch, results) { entry.continuation.resume(with: result) }
        }
    }
}
