import Foundation
import TestSupport
import XCTest

/// What the tests of the commands that write models (`quantize`, `convert`, `export onnx`) share: the fixture models, the bundled
/// vocabulary, a scratch folder per test and the built binary.
class ModelFileTestCase: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    var models: URL { Self.fixtures.appendingPathComponent("models") }
    /// The vocabulary the tokenizer ships (cn-clip's `vocab.txt`).
    static let bundledVocabulary = fixtures.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/Tokenization/Resources/vocab.txt")

    /// Runs the `cnclip` built beside this test bundle.
    func cnclip(_ args: [String]) throws -> CommandResult { try runCNCLIP(args) }

    /// An empty folder removed when the test ends.
    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(type(of: self))-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// `--resume NAME.pt --config NAME.json` for the fixture model `name` (`vit-tiny`, `rn-tiny`).
    func modelArgs(_ name: String) -> [String] {
        ["--resume", models.appendingPathComponent("\(name).pt").path, "--config", models.appendingPathComponent("\(name).json").path]
    }
}
