// libFuzzer harness: model configs — a Hugging Face `config.json` (CLIPConfig.huggingFace) when the first input byte
// is even, a cn-clip `--config` JSON (CLIPConfig.load) when it is odd; the rest is the file.
//
// A config that is accepted and small enough to build quickly (the tiny test model's sizes or less) is built, with
// zero weights, and runs one image and one text through the model: an accepted config must not crash the model.
// A throw is a correct refusal.

import CLibFuzzer
import ChineseCLIP
import Foundation
import FuzzSupport
import Tensors
import Tokenization

let scratch = scratchFolder("config")
let path = "\(scratch)/config.json"
let tokenizer: Tokenizer = try! Tokenizer.bundled()

/// Sizes no larger than the tiny fixture model's (Tests/Fixtures/models/vit-tiny.json, rn-tiny.json), so a build and a
/// forward pass take milliseconds.
func small(_ c: CLIPConfig) -> Bool {
    let layersOK: Bool
    switch c.visionLayers {
    case .transformer(let n): layersOK = n <= 2
    case .resnet(let s): layersOK = s.count == 4 && s.allSatisfy { $0 <= 2 }
    }
    return layersOK && c.embedDim <= 64 && c.imageResolution <= 64 && c.visionWidth <= 64 && c.vocabSize <= 21128
        && c.textHiddenSize <= 64 && c.textIntermediateSize <= 128 && c.textMaxPositionEmbeddings <= 512
        && c.textNumHiddenLayers <= 2 && c.textTypeVocabSize <= 4 && (c.visionPatchSize ?? 1) <= 64
}

func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data + 1, count: size - 1)) else { fatalError("cannot write \(path)") }
    let url = URL(fileURLWithPath: path)
    let parsed = data[0] % 2 == 0 ? try? CLIPConfig.huggingFace(contentsOf: url) : try? CLIPConfig.load(contentsOf: url)
    guard let config = parsed, small(config) else { return 0 }
    guard let model = try? ChineseCLIPModel(clip: CLIP(config), tokenizer: tokenizer) else { return 0 }  // e.g. a vocab_size below the vocabulary's
    let r = config.imageResolution
    let image = model.encodeImages(preprocessed: Tensor(shape: [1, 3, r, r], scalars: [Float](repeating: 0.5, count: 3 * r * r)))
    precondition(image.shape == [1, config.embedDim])
    let context = min(52, config.textMaxPositionEmbeddings)
    if context >= 2 {
        let text = model.encodeTexts(tokens: model.tokenize(["一张猫的图片"], contextLength: context), count: 1)
        precondition(text.shape == [1, config.embedDim])
    }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzConfig($0, size) } ?? 0 })
