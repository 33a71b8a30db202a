// `cnclip plot-curves`' reader and drawing: the lines our trainer writes and the lines cn-clip's train.py writes
// (verbatim, with and without its rank prefix), a resumed run's merge, non-finite losses, and the SVG itself.

import Foundation
import XCTest

@testable import Training

#if canImport(FoundationXML)
    import FoundationXML
#endif

final class TrainingCurvesTests: XCTestCase {
    /// A line as `TrainingLogger.info` writes it.
    func logged(_ message: String) -> String { "2025-01-01,10:00:00 | INFO | Rank 0 | \(message)\n" }

    func trainingLine(step: Int, loss: Float, accuracy: (i2t: Double, t2i: Double)? = nil) -> String {
        logged(
            TrainingLogFormat.trainingLine(
                step: step, maxSteps: 580, epoch: 1 + step / 157, samples: 128 * step, samplesPerEpoch: 20096, percent: 32,
                loss: loss, accuracy: accuracy, dataTime: 0.012, batchTime: 0.7, lr: 0.000862, logitScale: 2.659,
                globalBatchSize: 128))
    }

    func validationLine(step: Int, loss: Float, i2t: Float = 0.125, t2i: Float = 0.119) -> String {
        logged(TrainingLogFormat.validationLine(epoch: 1, steps: step, loss: loss, i2t: i2t, t2i: t2i, logitScale: 2.7, batchSize: 128))
    }

    func testParsesTheLinesOurTrainerWrites() throws {
        let text =
            logged("train LMDB file contains 20000 images and 20096 pairs.") + trainingLine(step: 50, loss: 4.123456)
            + trainingLine(step: 100, loss: 3.5, accuracy: (0.0312, 0.0234)) + logged("Begin to eval on validation set (epoch 1 @ 157 steps)...")
            + validationLine(step: 157, loss: 3.21)
            + logged("Saved checkpoint logs/x/checkpoints/epoch1.pt (epoch 1 @ 157 steps) (writing took 0.5 seconds)")
        let curves = try TrainingCurves(parsing: text, source: "out.log")
        XCTAssertEqual(
            curves.training,
            [
                .init(step: 50, epoch: 1, loss: 4.123456, lr: 0.000862, logitScale: 2.659),
                .init(step: 100, epoch: 1, loss: 3.5, i2tAccuracy: 3.12, t2iAccuracy: 2.34, lr: 0.000862, logitScale: 2.659),
            ])
        XCTAssertEqual(curves.validation, [.init(step: 157, epoch: 1, loss: 3.21, i2tAccuracy: 12.5, t2iAccuracy: 11.9, logitScale: 2.7)])
        XCTAssertEqual(curves.stepRange, 50...157)
    }

    func testParsesCNCLIPsOwnLinesVerbatim() throws {
        // As cn-clip 1.6.0's train.py and logger.py write them; the second run had no rank filter, the third line
        // carries a terminal's own prefix.
        let text = """
            2023-05-04,11:02:13 | INFO | Rank 0 | Params:
            2023-05-04,11:02:13 | INFO | Rank 0 |   accum_freq: 1
            2023-05-04,11:05:40 | INFO | Rank 0 | Global Steps: 50/580 | Train Epoch: 1 [6400/20096 (32%)] | Loss: 4.123456 | Image2Text Acc: 3.12 | Text2Image Acc: 2.34 | Data Time: 0.012s | Batch Time: 0.700s | LR: 0.000862 | logit_scale: 2.659 | Global Batch Size: 128
            2023-05-04,11:06:40 | INFO | Global Steps: 100/580 | Train Epoch: 1 [12800/20096 (64%)] | Loss: 3.900000 | Data Time: 0.010s | Batch Time: 0.690s | LR: 0.001000 | logit_scale: 2.661 | Global Batch Size: 128
            [worker-3] 2023-05-04,11:08:01 | INFO | Rank 3 | Validation Result (epoch 1 @ 157 steps) | Valid Loss: 3.210000 | Image2Text Acc: 12.50 | Text2Image Acc: 11.90 | logit_scale: 2.700 | Valid Batch Size: 128\r
            2023-05-04,11:08:02 | INFO | Rank 0 | Global Steps: 150/580 | Train Epoch: 1 [19200/20096 (96%)] | Loss: 3.7
            """
        let curves = try TrainingCurves(parsing: text, source: "out_2023-05-04-11-02-13.log")
        XCTAssertEqual(curves.training.map(\.step), [50, 100], "a line cut short by a killed run is left out")
        XCTAssertEqual(curves.training[0].i2tAccuracy, 3.12)
        XCTAssertEqual(curves.training[0].t2iAccuracy, 2.34)
        XCTAssertNil(curves.training[1].i2tAccuracy)
        XCTAssertEqual(curves.training[1].lr, 0.001)
        XCTAssertEqual(curves.training[1].logitScale, 2.661)
        XCTAssertEqual(curves.validation, [.init(step: 157, epoch: 1, loss: 3.21, i2tAccuracy: 12.5, t2iAccuracy: 11.9, logitScale: 2.7)])
    }

    func testAResumedRunsLaterPointsReplaceEarlierOnesAtTheSameStep() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("curves-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // The first run died after step 150; the resumed one restarted from the step-100 checkpoint.
        let first = (1...3).map { trainingLine(step: 50 * $0, loss: 5) }.joined() + validationLine(step: 100, loss: 4)
        let second = (2...5).map { trainingLine(step: 50 * $0, loss: 2) }.joined() + validationLine(step: 200, loss: 1.5)
        try first.write(to: folder.appendingPathComponent("out_2025-01-01-10-00-00.log"), atomically: true, encoding: .utf8)
        try second.write(to: folder.appendingPathComponent("out_2025-01-02-09-00-00.log"), atomically: true, encoding: .utf8)
        try "not a log".write(to: folder.appendingPathComponent("params_2025-01-01-10-00-00.txt"), atomically: true, encoding: .utf8)

        let files = try TrainingCurves.logFiles(in: folder.path)
        XCTAssertEqual(files.map { ($0 as NSString).lastPathComponent }, ["out_2025-01-01-10-00-00.log", "out_2025-01-02-09-00-00.log"])
        let curves = try TrainingCurves(logFiles: files)
        XCTAssertEqual(curves.training.map(\.step), [50, 100, 150, 200, 250])
        XCTAssertEqual(curves.training.map(\.loss), [5, 2, 2, 2, 2])
        XCTAssertEqual(curves.validation.map(\.step), [100, 200])
        // The same appended to one file: later lines win too.
        let appended = try TrainingCurves(parsing: first + second, source: "out.log")
        XCTAssertEqual(appended, curves)
        XCTAssertEqual(try TrainingCurves(parsing: first, source: "a").merged(with: TrainingCurves(parsing: second, source: "b")), curves)
    }

    func testEmptyLogThrowsNamingTheFile() throws {
        let text = logged("Params:") + logged("  batch_size: 128") + "\n"
        XCTAssertThrowsError(try TrainingCurves(parsing: text, source: "logs/x/out_1.log")) { error in
            XCTAssertEqual(
                (error as? TrainingCurvesError)?.description,
                "logs/x/out_1.log: no training or validation lines of cn-clip's log format")
        }
        XCTAssertThrowsError(try TrainingCurves(parsing: "", source: "e.log"))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("curves-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertThrowsError(try TrainingCurves.logFiles(in: folder.path)) { XCTAssertTrue("\($0)".contains("out_*.log"), "\($0)") }
    }

    func testNonFiniteLossesAreSkippedAndCounted() throws {
        let text =
            trainingLine(step: 50, loss: 4) + trainingLine(step: 100, loss: .nan) + trainingLine(step: 150, loss: .infinity)
            + trainingLine(step: 200, loss: 3) + validationLine(step: 200, loss: .nan)
        let curves = try TrainingCurves(parsing: text, source: "out.log")
        XCTAssertEqual(curves.training.count, 4)
        XCTAssertTrue(curves.training[1].loss.isNaN)
        XCTAssertEqual(curves.training[2].loss, .infinity)
        XCTAssertEqual(curves.nonFiniteTrainingLosses, 2)
        XCTAssertEqual(curves.nonFiniteValidationLosses, 1)
        let svg = curves.svg(title: "t")
        XCTAssertEqual(try polylinePoints(svg, id: "train-loss")?.count, 2)
        XCTAssertEqual(try polylinePoints(svg, id: "valid-i2t")?.count, 1, "a NaN validation loss keeps its accuracies")
        XCTAssertNil(try polylinePoints(svg, id: "valid-loss"))
        XCTAssertTrue(svg.contains("2 non-finite training losses skipped"), svg)
        XCTAssertTrue(svg.contains("1 non-finite validation loss skipped"), svg)
        XCTAssertFalse(svg.lowercased().contains("nan"), "no NaN coordinate reaches the SVG")
    }

    func testSVGIsWellFormedAndDeterministic() throws {
        var text = ""
        for step in stride(from: 50, through: 580, by: 50) {
            text += trainingLine(step: step, loss: Float(5 - Double(step) / 150), accuracy: (Double(step) / 1000, Double(step) / 1100))
            if step % 150 == 0 { text += validationLine(step: step, loss: Float(4 - Double(step) / 200)) }
        }
        let curves = try TrainingCurves(parsing: text, source: "out.log")
        let svg = curves.svg(title: "Run <a & b>")
        XCTAssertEqual(svg, try TrainingCurves(parsing: text, source: "out.log").svg(title: "Run <a & b>"))
        let root = try parseXML(svg)
        XCTAssertEqual(root.name, "svg")
        XCTAssertEqual(root.attributes["width"], "900")
        XCTAssertEqual(root.attributes["height"], "600")
        XCTAssertEqual(try polylinePoints(svg, id: "train-loss")?.count, 11)
        XCTAssertEqual(try polylinePoints(svg, id: "valid-loss")?.count, 3)
        XCTAssertEqual(try polylinePoints(svg, id: "valid-i2t")?.count, 3)
        XCTAssertEqual(try polylinePoints(svg, id: "valid-t2i")?.count, 3)
        XCTAssertEqual(try polylinePoints(svg, id: "train-i2t")?.count, 11)
        XCTAssertEqual(try polylinePoints(svg, id: "train-t2i")?.count, 11)
        let texts = root.allTexts
        XCTAssertTrue(texts.contains("Run <a & b>"), "the title, escaped in the file and whole once parsed")
        for label in ["(a) Loss vs. global step", "(b) Accuracy vs. global step", "global step", "loss", "accuracy (%)"] {
            XCTAssertTrue(texts.contains(label), label)
        }
        for tick in ["0", "100", "200", "300", "400", "500", "600"] { XCTAssertTrue(texts.contains(tick), "x tick \(tick)") }
        for label in ["training loss", "validation loss", "Image2Text (valid)", "Text2Image (valid)", "Image2Text (train batch)"] {
            XCTAssertTrue(texts.contains(label), "legend \(label)")
        }
        XCTAssertFalse(svg.contains("<script"))
        XCTAssertFalse(svg.contains("@import") || svg.contains("href"), "nothing external")
        // Every point lies inside the 900×600 canvas.
        for id in ["train-loss", "valid-loss", "valid-i2t", "train-t2i"] {
            for (x, y) in try XCTUnwrap(polylinePoints(svg, id: id)) {
                XCTAssertTrue((0...900).contains(x) && (0...600).contains(y), "\(id): \(x),\(y)")
            }
        }
    }

    func testOnePointAndNoValidation() throws {
        let curves = try TrainingCurves(parsing: trainingLine(step: 50, loss: 4.1), source: "out.log")
        let svg = curves.svg(title: "one")
        _ = try parseXML(svg)
        XCTAssertEqual(try polylinePoints(svg, id: "train-loss")?.count, 1)
        XCTAssertTrue(svg.contains(#"<g id="train-loss-markers""#), "a lone point is drawn as a marker")
        XCTAssertTrue(svg.contains("no validation results"))
        XCTAssertNil(try polylinePoints(svg, id: "valid-loss"))

        let validationOnly = try TrainingCurves(parsing: validationLine(step: 157, loss: 3), source: "out.log")
        let svg2 = validationOnly.svg(title: "v")
        _ = try parseXML(svg2)
        XCTAssertEqual(try polylinePoints(svg2, id: "valid-loss")?.count, 1)
        XCTAssertNil(try polylinePoints(svg2, id: "train-loss"))
        XCTAssertFalse(svg2.contains("no validation results"))
    }

    func testTicksAreRoundNumbers() throws {
        let curves = TrainingCurves(training: [
            .init(step: 1, epoch: 1, loss: 0.8312, lr: 0, logitScale: 0), .init(step: 73, epoch: 1, loss: 0.4177, lr: 0, logitScale: 0),
        ])
        let texts = try parseXML(curves.svg(title: "t")).allTexts
        for tick in ["0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "0", "20", "40", "60", "80"] {
            XCTAssertTrue(texts.contains(tick), "tick \(tick) in \(texts)")
        }
    }

    // MARK: Helpers

    /// The (x, y) points of the polyline with `id`, or nil when there is none.
    private func polylinePoints(_ svg: String, id: String) throws -> [(Double, Double)]? {
        guard let element = try parseXML(svg).find({ $0.name == "polyline" && $0.attributes["id"] == id }) else { return nil }
        return try XCTUnwrap(element.attributes["points"]).split(separator: " ").map { pair in
            let xy = pair.split(separator: ",").map { Double($0)! }
            return (xy[0], xy[1])
        }
    }

    /// The element tree of `svg`; fails the test when it is not well-formed XML.
    private func parseXML(_ svg: String) throws -> Node {
        let parser = XMLParser(data: Data(svg.utf8))
        let builder = TreeBuilder()
        parser.delegate = builder
        XCTAssertTrue(parser.parse(), "not well-formed: \(String(describing: parser.parserError))")
        return try XCTUnwrap(builder.root)
    }
}

/// An element of a parsed SVG, with the text directly inside it.
private final class Node {
    let name: String
    let attributes: [String: String]
    var children: [Node] = []
    var text = ""
    init(name: String, attributes: [String: String]) {
        self.name = name
        self.attributes = attributes
    }
    func find(_ match: (Node) -> Bool) -> Node? {
        if match(self) { return self }
        for c in children { if let n = c.find(match) { return n } }
        return nil
    }
    var allTexts: [String] { (name == "text" || name == "tspan" ? [text] : []) + children.flatMap(\.allTexts) }
}

/// Builds the `Node` tree from XMLParser's events.
private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [Node] = []
    var root: Node?
    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
        attributes attributeDict: [String: String] = [:]
    ) {
        let node = Node(name: elementName, attributes: attributeDict)
        stack.last?.children.append(node)
        if root == nil { root = node }
        stack.append(node)
    }
    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        stack.removeLast()
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { stack.last?.text += string }
}
