import Checkpoints
import Foundation
import Tensors
import XCTest

/// `Tests/Fixtures`, found from this file's path so tests run from any directory.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// The tensors of a safetensors fixture by name.
func loadFixture(_ relativePath: String) throws -> StateDict {
    try SafeTensors.read(fixtures.appendingPathComponent(relativePath))
}
