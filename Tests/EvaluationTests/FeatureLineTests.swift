import Essentials
import Foundation
import XCTest

@testable import Evaluation

/// Feature files are written with the numbers the reference's `json.dumps(tensor.tolist())` writes.
final class FeatureLineTests: XCTestCase {
    func testFloatsAsPythonReprOfTheirFloat64Value() {
        // repr(float(np.float32(x))) in CPython 3.11 for each input.
        let cases: [(Float, String)] = [
            (1e-5, "9.999999747378752e-06"), (0.0001, "9.999999747378752e-05"), (0.00012345, "0.0001234499941347167"),
            (1e16, "1.0000000272564224e+16"), (1.5e-7, "1.500000053056283e-07"), (0.1, "0.10000000149011612"),
            (-0.03, "-0.029999999329447746"), (1, "1.0"), (0, "0.0"), (-0.0, "-0.0"), (123456792, "123456792.0"),
            (.nan, "NaN"), (-.infinity, "-Infinity"),
        ]
        for (f, python) in cases { XCTAssertEqual(FeatureLine.pythonFloatRepr(f), python, "\(f)") }
        let line = [Float(0.5), -0.25].withUnsafeBufferPointer { FeatureLine.format(idKey: "image_id", id: "7", feature: $0) }
        XCTAssertEqual(line, "{\"image_id\": 7, \"feature\": [0.5, -0.25]}\n")
    }

    func testAtomicOutputFileAppearsOnlyOnCommit() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.jsonl").path
        let f = try AtomicOutputFile(path: path)
        try f.write("a\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        try f.commit()
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "a\n")
        let g = try AtomicOutputFile(path: path)
        try g.write("b\n")
        g.discard()
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "a\n", "a discarded write leaves the old file")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.jsonl"])
    }
}
