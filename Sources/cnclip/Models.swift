import ArgumentParser
import ChineseCLIP

/// `cnclip models`: the presets and the released pairs.
struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the model presets (combine as VISION@TEXT) and the released checkpoints.")

    func run() throws {
        print("Released models (cnclip download NAME; then --model NAME):")
        for r in ModelPresets.released {
            print("  \(r.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(r.structure)  (\(r.resolution) px)")
        }
        print("Vision presets (--vision-model):")
        for name in ModelPresets.vision.keys.sorted() {
            let v = ModelPresets.vision[name]!
            let depth: String
            switch v.layers {
            case .transformer(let n): depth = "ViT, \(n) layers, width \(v.width), patch \(v.patch ?? 0)"
            case .resnet(let l): depth = "ResNet \(l), width \(v.width)"
            }
            print("  \(name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(depth), \(v.resolution) px, embed \(v.embedDim)")
        }
        print("Text presets (--text-model):")
        for name in ModelPresets.text.keys.sorted() {
            let t = ModelPresets.text[name]!
            print("  \(name.padding(toLength: 30, withPad: " ", startingAt: 0)) BERT, \(t.layers) layers, width \(t.hidden)")
        }
    }
}
