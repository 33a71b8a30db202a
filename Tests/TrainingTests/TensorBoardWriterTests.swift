// TensorBoard event files byte for byte as TensorBoard's own writer frames them (Tests/Fixtures/tensorboard, made by
// scripts/reference/make_tensorboard_fixtures.py with TensorBoard's RecordWriter and Event protos, and the Summary
// torch.utils.tensorboard's add_scalar builds).

import Foundation
import XCTest

@testable import Training

final class TensorBoardWriterTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tensorboard")

    struct Record: Decodable {
        var wall_time: Double
        var step: Int
        var file_version: String?
        var tag: String?
        var value: Double?
    }

    func testEventFileIsTensorBoardsBytes() throws {
        let records = try JSONDecoder().decode(
            [Record].self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("events.json")))
        let golden = try Data(contentsOf: Self.fixtures.appendingPathComponent("events.golden"))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)/run/tensorboard")
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent().deletingLastPathComponent()) }

        XCTAssertEqual(records.first?.file_version, "brain.Event:2")
        let writer = try TensorBoardWriter(folder: folder.path, wallTime: records[0].wall_time)
        for r in records.dropFirst() {
            try writer.scalar(try XCTUnwrap(r.tag), Float(try XCTUnwrap(r.value)), step: r.step, wallTime: r.wall_time)
        }
        let name = URL(fileURLWithPath: writer.path).lastPathComponent
        XCTAssertTrue(name.hasPrefix("events.out.tfevents.1765000000."), name)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [name])
        let written = try Data(contentsOf: URL(fileURLWithPath: writer.path))
        if written != golden {
            let first = zip(written, golden).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(written.count, golden.count)
            XCTFail("\(written.count) bytes written, \(golden.count) expected; first difference at byte \(first)")
        }
    }
}
