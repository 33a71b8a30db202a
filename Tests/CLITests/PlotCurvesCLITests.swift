import Foundation
import TestSupport
import XCTest

/// `cnclip plot-curves` end to end: a run folder of cn-clip-format logs becomes one SVG, and a file with no training
/// or validation line fails naming it and writes nothing.
final class PlotCurvesCLITests: XCTestCase {
    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plot-curves-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func trainingLine(_ step: Int, _ loss: Double) -> String {
        "2025-01-01,10:00:00 | INFO | Rank 0 | Global Steps: \(step)/300 | Train Epoch: 1 [\(step * 128)/20096 (32%)] | "
            + "Loss: \(String(format: "%.6f", loss)) | Data Time: 0.012s | Batch Time: 0.700s | LR: 0.000862 | logit_scale: 2.659 | "
            + "Global Batch Size: 128\n"
    }

    func validationLine(_ step: Int, _ loss: Double) -> String {
        "2025-01-01,10:00:00 | INFO | Rank 0 | Validation Result (epoch 1 @ \(step) steps) | Valid Loss: \(String(format: "%.6f", loss)) | "
            + "Image2Text Acc: 12.50 | Text2Image Acc: 11.90 | logit_scale: 2.700 | Valid Batch Size: 128\n"
    }

    func testRunFolderBecomesAnSVG() throws {
        let dir = try tempDir()
        let run = dir.appendingPathComponent("logs/synthetic")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        // A first run to step 150 and a resumed one from step 100 to 300.
        let first = [50, 100, 150].map { trainingLine($0, 4.5) }.joined() + validationLine(100, 4)
        let second = [100, 150, 200, 250, 300].map { trainingLine($0, 3) }.joined() + validationLine(200, 3.5) + validationLine(300, 3.2)
        try first.write(to: run.appendingPathComponent("out_2025-01-01-10-00-00.log"), atomically: true, encoding: .utf8)
        try second.write(to: run.appendingPathComponent("out_2025-01-01-11-00-00.log"), atomically: true, encoding: .utf8)
        try "lr: 0.001\n".write(to: run.appendingPathComponent("params_2025-01-01-10-00-00.txt"), atomically: true, encoding: .utf8)

        let svg = dir.appendingPathComponent("curves.svg").path
        let r = try runCNCLIP(["plot-curves", run.path, "--output", svg])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "wrote \(svg): 6 training points, 3 validation results (steps 50–300)\n")
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("<?xml"), text)
        XCTAssertTrue(text.contains("<title>Training curves: synthetic</title>"), "the run's name is the default title")
        XCTAssertTrue(text.contains(#"<polyline id="train-loss""#))
        XCTAssertTrue(text.contains(#"<polyline id="valid-loss""#))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["curves.svg", "logs"], "no temporary left")

        // One file and a title; the same curves give the same bytes.
        let single = dir.appendingPathComponent("single.svg").path
        let log = run.appendingPathComponent("out_2025-01-01-10-00-00.log").path
        var s = try runCNCLIP(["plot-curves", log, "--output", single, "--title", "First run"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertEqual(s.stderr, "wrote \(single): 3 training points, 1 validation results (steps 50–150)\n")
        XCTAssertTrue(try String(contentsOfFile: single, encoding: .utf8).contains("<title>First run</title>"))
        s = try runCNCLIP(["plot-curves", run.path, "--output", single])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: single)), try Data(contentsOf: URL(fileURLWithPath: svg)))
    }

    func testLogWithoutTrainingLinesFailsNamingTheFile() throws {
        let dir = try tempDir()
        let log = dir.appendingPathComponent("out_2025-01-01-10-00-00.log").path
        try "2025-01-01,10:00:00 | INFO | Rank 0 | Params:\n2025-01-01,10:00:00 | INFO | Rank 0 |   batch_size: 128\n"
            .write(toFile: log, atomically: true, encoding: .utf8)
        let svg = dir.appendingPathComponent("curves.svg").path
        let r = try runCNCLIP(["plot-curves", log, "--output", svg])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(log): no training or validation lines of cn-clip's log format"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: svg), "no SVG is written")

        // A folder with no logs and a missing path fail too, naming what was given.
        for (path, mention) in [(dir.appendingPathComponent("empty").path, "out_*.log"), (dir.appendingPathComponent("nope").path, "nope")] {
            try? FileManager.default.createDirectory(atPath: dir.appendingPathComponent("empty").path, withIntermediateDirectories: true)
            let e = try runCNCLIP(["plot-curves", path, "--output", svg])
            XCTAssertNotEqual(e.status, 0)
            XCTAssertTrue(e.stderr.contains(path) && e.stderr.contains(mention), e.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: svg))
        }
        // The output may not overwrite a log being read.
        let same = try runCNCLIP(["plot-curves", log, "--output", log])
        XCTAssertNotEqual(same.status, 0)
        XCTAssertTrue(same.stderr.contains("one of the logs"), same.stderr)
    }
}
