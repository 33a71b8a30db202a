import ArgumentParser
import DemoServer
import Foundation
import Gallery

/// `cnclip serve`: the retrieval demo — a web page and a JSON API over a gallery built by `cnclip index build`.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a gallery: a page to search it by Chinese text or by image and to try zero-shot classification, and a JSON API.",
        discussion: """
            Example: cnclip serve --index demo/index --resume demo/logs/synthetic/checkpoints/epoch_latest.pt \\
                       --config demo/synthetic-clip.json      then open http://127.0.0.1:8080/
            The model is loaded once; concurrent requests are encoded in batches. Stop with Ctrl-C or SIGTERM: requests
            in flight are answered first.
            API: GET /api/info, GET|POST /api/search/text, POST /api/search/image, POST /api/classify,
            GET /thumbnails/ROW (see the README).
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("index"), help: "The gallery directory (from `cnclip index build`).")
    var index: String

    @Option(name: .customLong("host"), help: "Address to listen on (0.0.0.0 exposes the demo to the network).")
    var host = "127.0.0.1"

    @Option(name: .customLong("port"), help: "Port to listen on (0 picks a free one).")
    var port = 8080

    @Option(name: .customLong("max-upload-bytes"), help: "Largest request body accepted; larger uploads get 413.")
    var maxUploadBytes = 8 << 20

    @Option(name: .customLong("max-batch"), help: "Most concurrent queries encoded together.")
    var maxBatch = 32

    @Option(name: .customLong("context-length"), help: "Tokens per query text (default: the gallery's).")
    var contextLength: Int?

    @Option(
        name: .customLong("idle-timeout"),
        help: "Seconds a connection may wait without a request (keep-alive, or a request head not finished) before it is closed; 0 keeps them open.")
    var idleTimeout = 30.0

    @Option(name: .customLong("body-timeout"), help: "Seconds a request body may take to arrive; slower uploads get 408.")
    var bodyTimeout = 30.0

    @Flag(name: .customLong("exact"), help: "Search exactly even when the gallery has a FAISS index.")
    var exact = false

    func validate() throws {
        if port < 0 || port > 65535 { throw ValidationError("--port must be within 0…65535") }
        if maxUploadBytes < 1024 { throw ValidationError("--max-upload-bytes must be at least 1024") }
        if maxBatch < 1 { throw ValidationError("--max-batch must be positive") }
        if !(idleTimeout >= 0) { throw ValidationError("--idle-timeout must be 0 (none) or a number of seconds") }
        if !(bodyTimeout > 0) { throw ValidationError("--body-timeout must be a positive number of seconds") }
    }

    func run() async throws {
        let clip = try reported { try model.load() }
        var limits = ServiceLimits()
        limits.maxBatch = maxBatch
        let service = try reported {
            let gallery = try GalleryIndex(directory: index, loadApproximate: !exact)
            return try SearchService(model: clip, gallery: gallery, limits: limits, contextLength: contextLength, approximate: !exact)
        }
        var configuration = DemoServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.maxBodyBytes = maxUploadBytes
        configuration.idleTimeout = idleTimeout > 0 ? idleTimeout : nil
        configuration.bodyTimeout = bodyTimeout
        let host = self.host
        let images = service.gallery.count, captions = service.gallery.captions.count
        let app = DemoServer.application(service: service, configuration: configuration) { bound in
            // Scripts and tests read this line to learn the port (with --port 0).
            print("Serving \(images) images and \(captions) captions at http://\(host):\(bound)/")
            fflush(nil)  // every output stream: Glibc's `stdout` is a global var Swift 6 will not read from here
        }
        try await app.runService()
    }
}
