// libFuzzer harness: image decoding — format sniffing, JPEG (TurboJPEG), PNG (libpng, after our chunk scan) and
// WebP (libwebp) into Pillow's modes — then what every consumer does next: convert to RGB and preprocess (resize,
// normalise) at a small resolution.
//
// The input is the file. The default pixel limit applies (Image.maxPixels), as for every command. A throw is a
// correct refusal; a trap, sanitizer report, hang or an allocation over -rss_limit_mb/-malloc_limit_mb is a finding.

import CLibFuzzer
import Foundation
import Imaging

func fuzzImage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    _ = Image.format(of: bytes)
    guard let image = try? Image(data: bytes, name: "<fuzz>") else { return 0 }
    precondition(image.width > 0 && image.height > 0, "decoded a \(image.width)×\(image.height) image")
    precondition(image.pixels.count == image.width * image.height * image.mode.channels, "pixel buffer size does not match \(image.mode)")
    if image.width * image.height <= 1 << 20 {
        let rgb = image.converted(to: .rgb)
        precondition(rgb.pixels.count == rgb.width * rgb.height * 3)
        let x = image.preprocess(resolution: 8)
        precondition(x.count == 3 * 8 * 8)
    }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzImage($0, size) } ?? 0 })
