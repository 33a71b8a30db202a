// A program that depends on the ChineseCLIP library product and nothing else: it loads a checkpoint with its
// config, encodes one image and one text, and prints the features' shapes and their cosine similarity.
// CI builds and runs it (scripts/check-consumer.sh) and checks what the binary links.
//
//   Consumer [CHECKPOINT CONFIG IMAGE TEXT]
//
// Without arguments it uses the repository's tiny test model, found from this file's path.

import ChineseCLIP
import Foundation

let fixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()  // Examples/Consumer
    .deletingLastPathComponent().deletingLastPathComponent()  // the repository
    .appendingPathComponent("Tests/Fixtures").path
let defaults = ["\(fixtures)/models/vit-tiny.pt", "\(fixtures)/models/vit-tiny.json", "\(fixtures)/images/rgb.jpg", "一只猫"]
let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.isEmpty || arguments.count == 4 else {
    FileHandle.standardError.write(Data("usage: Consumer [CHECKPOINT CONFIG IMAGE TEXT]\n".utf8))
    exit(2)
}
let (checkpoint, configFile, image, text) =
    arguments.isEmpty
    ? (defaults[0], defaults[1], defaults[2], defaults[3]) : (arguments[0], arguments[1], arguments[2], arguments[3])

do {
    let config = try CLIPConfig.load(contentsOf: URL(fileURLWithPath: configFile))
    let model = try ChineseCLIPModel(checkpoint: URL(fileURLWithPath: checkpoint), config: config)
    let imageFeatures = try model.encodeImageFiles([image])
    let textFeatures = model.encodeTexts([text])
    let a = imageFeatures.scalars, b = textFeatures.scalars
    guard imageFeatures.shape == [1, config.embedDim], textFeatures.shape == [1, config.embedDim] else {
        throw CLIPError.invalidInput("unexpected feature shapes \(imageFeatures.shape) and \(textFeatures.shape)")
    }
    let dot = zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 }
    let norms = (a.reduce(Float(0)) { $0 + $1 * $1 } * b.reduce(Float(0)) { $0 + $1 * $1 }).squareRoot()
    let cosine = dot / norms
    guard cosine.isFinite, abs(cosine) <= 1.0001 else { throw CLIPError.invalidInput("cosine similarity \(cosine) is not a cosine") }
    print("image \(image): features \(imageFeatures.shape)")
    print("text \(text): features \(textFeatures.shape)")
    print("cosine similarity: \(cosine)")
} catch {
    FileHandle.standardError.write(Data("Consumer: \(error)\n".utf8))
    exit(1)
}
