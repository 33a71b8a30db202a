import DemoServer
import Foundation
import Synchronization
import XCTest

/// The batching worker: jobs that queue while it is busy are processed together, each gets its own result.
final class BatchWorkerTests: XCTestCase {
    func testJobsQueuedWhileBusyFormOneBatchAndKeepTheirOrder() async throws {
        let gate = DispatchSemaphore(value: 0)
        let batches = Mutex<[[Int]]>([])
        let worker = BatchWorker<Int, Int>(name: "test", maxBatch: 8) { jobs in
            let first = batches.withLock {
                $0.append(jobs); return $0.count == 1
            }
            if first { gate.wait() }  // hold the first batch until the others have queued
            return jobs.map { $0 < 0 ? .failure(CancellationError()) : .success($0 * 10) }
        }
        defer { worker.stop() }
        let first = Task { try await worker.submit(1) }
        while worker.batchSizeCounts.isEmpty { try await Task.sleep(nanoseconds: 1_000_000) }
        let rest = (2...11).map { n in Task { try await worker.submit(n == 7 ? -7 : n) } }
        // Wait until all ten are queued behind the held batch (the worker has taken only the first).
        while worker.pendingCount < 10 { try await Task.sleep(nanoseconds: 1_000_000) }
        gate.signal()
        let one = try await first.value
        XCTAssertEqual(one, 10)
        var results: [Int?] = []
        for t in rest { results.append(try? await t.value) }
        XCTAssertEqual(results, [20, 30, 40, 50, 60, nil, 80, 90, 100, 110])
        let all = batches.withLock { $0 }
        XCTAssertEqual(all.count, 3)
        XCTAssertEqual(all[0], [1])
        XCTAssertEqual(all[1].count, 8, "at most maxBatch per batch")
        XCTAssertEqual(Set(all[1] + all[2]), Set([2, 3, 4, 5, 6, -7, 8, 9, 10, 11]))
        XCTAssertEqual(worker.batchSizeCounts, [1: 1, 8: 1, 2: 1])
    }

    func testSubmittingAfterStopFails() async {
        let worker = BatchWorker<Int, Int>(name: "test", maxBatch: 4) { $0.map { .success($0) } }
        worker.stop()
        do { _ = try await worker.submit(1); XCTFail("a stopped worker accepted a job") } catch {}
    }
}
