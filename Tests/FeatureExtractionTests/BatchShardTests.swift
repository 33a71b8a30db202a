import FeatureExtraction
import XCTest

/// Which batches each process of a job computes (`BatchShard`).
final class BatchShardTests: XCTestCase {
    func testBatchesGoRoundRobinAndEachToExactlyOneProcess() throws {
        let shards = try (0..<3).map { try BatchShard(index: $0, count: 3) }
        XCTAssertEqual((0..<8).filter { shards[1].owns(batch: $0) }, [1, 4, 7])
        for batch in 0..<50 {
            XCTAssertEqual(shards.filter { $0.owns(batch: batch) }.map(\.index), [batch % 3], "batch \(batch)")
        }
        XCTAssertTrue((0..<10).allSatisfy { BatchShard.whole.owns(batch: $0) })
    }

    func testRejectsAnIndexOutsideTheJob() {
        for (index, count) in [(2, 2), (-1, 2), (0, 0)] {
            XCTAssertThrowsError(try BatchShard(index: index, count: count)) { error in
                XCTAssertTrue("\(error)".contains("batch shard \(index) of \(count)"), "\(error)")
            }
        }
    }
}
