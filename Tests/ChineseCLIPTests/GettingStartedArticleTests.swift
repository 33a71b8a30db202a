// swift-format-ignore-file
// (Not formatted: the DocC article quotes this code line for line, and the test below compares them.)
// The DocC article Sources/ChineseCLIP/ChineseCLIP.docc/GettingStarted.md, kept honest: its Swift code lives here
// (the manifest excerpt in Examples/Consumer/Package.swift, which CI builds), compiled against the public API only
// and run on the tiny test model; one test fails when an article block is no longer found verbatim in this file or
// that manifest (lines compared without their indentation).

import ChineseCLIP
import Foundation
import XCTest

final class GettingStartedArticleTests: XCTestCase {
    func testArticleRunsOnTheTinyModel() throws {
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(fixtures.path))  // the article's paths are relative to it
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        let r = try articleWalkthrough()
        XCTAssertEqual(r.imageShape, [2, 32])
        XCTAssertEqual(r.textShape, [3, 32])
        XCTAssertEqual(r.logitShapes, [[2, 3], [3, 2]])
        XCTAssertEqual(r.probabilities.reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertTrue(r.cosine.isFinite && abs(r.cosine) <= 1.0001, "cosine \(r.cosine)")
        XCTAssertEqual(r.logit, r.cosine * r.logitScale, accuracy: r.logitScale * 1e-5)  // logits are scaled cosines
    }

    func testArticleBlocksAreThisCode() throws {
        let repository = fixtures.deletingLastPathComponent().deletingLastPathComponent()
        let article = try String(contentsOf: repository.appendingPathComponent("Sources/ChineseCLIP/ChineseCLIP.docc/GettingStarted.md"), encoding: .utf8)
        let sources = try [URL(fileURLWithPath: #filePath), repository.appendingPathComponent("Examples/Consumer/Package.swift")]
            .map { try normalizedLines(String(contentsOf: $0, encoding: .utf8)) }
        let blocks = swiftBlocks(article)
        XCTAssertEqual(blocks.count, 7, "GettingStarted.md's ```swift blocks")
        for block in blocks where !sources.contains(where: { contains($0, block) }) {
            XCTFail("GettingStarted.md has a ```swift block that is not in GettingStartedArticleTests.swift or Examples/Consumer/Package.swift:\n"
                    + block.joined(separator: "\n"))
        }
    }
}

// MARK: The article's code

/// "Load a model": compiled, not run (a released model needs a download).
private func articleOtherModels() throws {
    let released = try ChineseCLIPModel(released: "ViT-B-16")
    let trained = try ChineseCLIPModel(checkpoint: URL(fileURLWithPath: "epoch_latest.pt"),
                                       visionModel: "ViT-B-16", textModel: "RoBERTa-wwm-ext-base-chinese")
    let huggingFace = try ChineseCLIPModel(huggingFaceDirectory: URL(fileURLWithPath: "chinese-clip-vit-base-patch16"))
    _ = (released, trained, huggingFace)
}

/// The rest of the article, in its order, run with Tests/Fixtures as the current directory.
private func articleWalkthrough() throws -> (imageShape: [Int], textShape: [Int], logitShapes: [[Int]], probabilities: [Float],
                                             cosine: Float, logit: Float, logitScale: Float) {
    let config = try CLIPConfig.load(contentsOf: URL(fileURLWithPath: "models/vit-tiny.json"))
    let model = try ChineseCLIPModel(checkpoint: URL(fileURLWithPath: "models/vit-tiny.pt"), config: config)

    let images = try model.encodeImageFiles(["images/rgb.jpg", "images/gray.png"])
    let texts = model.encodeTexts(["一只猫", "一只狗", "皮卡丘"])
    print(images.shape, texts.shape)  // [2, 32] [3, 32] for the tiny model

    let (logitsPerImage, logitsPerText) = model.similarity(imageFeatures: images, textFeatures: texts)
    print(logitsPerImage.shape, logitsPerText.shape)  // [2, 3] [3, 2]
    let row = Array(logitsPerImage.scalars[0..<3])  // the first image against the three texts
    let exps = row.map { exp($0 - row.max()!) }
    let probabilities = exps.map { $0 / exps.reduce(0, +) }
    let dim = config.embedDim
    let cosine = zip(images.scalars[0..<dim], texts.scalars[0..<dim]).reduce(Float(0)) { $0 + $1.0 * $1.1 }

    DispatchQueue.concurrentPerform(iterations: 4) { i in
        _ = model.encodeTexts(["第\(i)张图片"])
    }

    // The logit scale from a text feature against itself (cosine 1), to check the logits against the cosine.
    let one = model.similarity(imageFeatures: model.encodeTexts(["一只猫"]), textFeatures: model.encodeTexts(["一只猫"]))
    return (images.shape, texts.shape, [logitsPerImage.shape, logitsPerText.shape], probabilities,
            cosine, logitsPerImage.scalars[0], one.logitsPerImage.scalars[0])
}

// MARK: Comparing the article with the code

/// The ```swift blocks of a Markdown text, each as its lines without indentation.
private func swiftBlocks(_ markdown: String) -> [[String]] {
    var blocks: [[String]] = [], current: [String]? = nil
    for line in normalizedLines(markdown) {
        if current == nil {
            if line == "```swift" { current = [] }
        } else if line == "```" {
            blocks.append(current!)
            current = nil
        } else {
            current!.append(line)
        }
    }
    return blocks
}

private func normalizedLines(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
}

/// Whether `lines` holds `block` as consecutive lines.
private func contains(_ lines: [String], _ block: [String]) -> Bool {
    guard !block.isEmpty, block.count <= lines.count else { return block.isEmpty }
    return (0...(lines.count - block.count)).contains { Array(lines[$0..<($0 + block.count)]) == block }
}
