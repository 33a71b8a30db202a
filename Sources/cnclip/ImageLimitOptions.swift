import ArgumentParser
import Imaging

/// `--max-image-pixels`: the decompression-bomb guard of every command that decodes images.
struct ImageLimitOptions: ParsableArguments {
    @Option(
        name: .customLong("max-image-pixels"),
        help: """
            Refuse an image whose header declares more pixels than this, before decoding it (default \
            \(Image.defaultMaxPixels): the size above which Pillow, and so cn-clip, refuses an image; 0: no limit).
            """)
    var maxImagePixels = Image.defaultMaxPixels

    func validate() throws {
        if maxImagePixels < 0 { throw ValidationError("--max-image-pixels must be 0 (no limit) or a positive number of pixels") }
    }

    /// Sets the process-wide limit (Pillow's `Image.MAX_IMAGE_PIXELS` is process-wide too).
    func apply() { Image.maxPixels = maxImagePixels }
}
