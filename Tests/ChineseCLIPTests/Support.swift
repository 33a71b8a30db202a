import Checkpoints
import Foundation
import NeuralNet
import Tensors
import XCTest

@testable import ChineseCLIP

/// `Tests/Fixtures`, found from this file's path so tests run from any directory.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// The tensors of a safetensors fixture by name.
func loadFixture(_ relativePath: String) throws -> StateDict {
    try SafeTensors.read(fixtures.appendingPathComponent(relativePath))
}

/// Asserts that `model` holds its linear weights only in their inference form (`form` of each, its plain value let go)
/// and keeps nothing of its checkpoint's memory map.
func assertHeldForInference(
    _ model: ChineseCLIPModel, form: (Parameter) -> Any?, file: StaticString = #filePath, line: UInt = #line
) {
    for (key, p) in model.clip.linearWeights() {
        XCTAssertNotNil(form(p), key, file: file, line: line)
        XCTAssertEqual(p.value.count, 0, "\(key): the plain value is let go", file: file, line: line)
    }
    for (key, p) in model.clip.namedParameters() {
        XCTAssertFalse(p.value.storage.isBorrowed, "\(key): nothing of the checkpoint's map is kept", file: file, line: line)
    }
}
