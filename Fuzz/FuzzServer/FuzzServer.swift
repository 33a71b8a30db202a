// libFuzzer harness: the demo server's request handling — the real application (`DemoServer.application`, NIO's HTTP
// parser included) over the tiny fixture model and a small gallery built at start-up, listening on a loopback port;
// each input becomes one request on a new connection: query parameters, JSON bodies, image uploads, classify bodies
// (base64 image, labels, templates) and thumbnail names.
//
// Input: the first byte modulo 6 picks the request, the rest fills it:
//   0  GET  /api/search/text?REST          (REST percent-encoded where a request line could not carry it)
//   1  POST /api/search/text               body REST (JSON)
//   2  POST /api/search/image?k=3&captions=2  body REST (the upload)
//   3  POST /api/classify                  body REST (JSON)
//   4  GET  /thumbnails/REST
//   5  POST /api/search/image?QUERY        QUERY = REST up to the first NUL, the body after it
// Every answer must be a 2xx or a 4xx: a 5xx (the error middleware's "internal" for an unexpected error), no answer,
// a trap, a sanitizer report or a hang is a finding.

import CLibFuzzer
import ChineseCLIP
import DemoServer
import Dispatch
import Foundation
import FuzzSupport
import Gallery
import Synchronization
import TestSupport

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Tests/Fixtures")
let scratch = scratchFolder("server")

/// Everything the harness serves, made once.
let app = {
    let model = try! ChineseCLIPModel(
        checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"),
        config: CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json")))
    try! FileManager.default.createDirectory(atPath: "\(scratch)/images", withIntermediateDirectories: true)
    for name in ["tiny.png", "gray.png", "palette.png", "lossy.webp", "gray.jpg", "progressive.jpg"] {
        try! FileManager.default.copyItem(atPath: fixtures.appendingPathComponent("images/\(name)").path, toPath: "\(scratch)/images/\(name)")
    }
    var options = GalleryBuildOptions()
    options.batchSize = 8
    options.thumbnailSize = 16
    _ = try! GalleryBuilder(model: model, options: options).build(
        images: .folder("\(scratch)/images"), captions: fixtures.appendingPathComponent("dataset/valid_texts.jsonl").path,
        output: "\(scratch)/index")
    let service = try! SearchService(model: model, gallery: GalleryIndex(directory: "\(scratch)/index"))
    var configuration = DemoServerConfiguration()
    configuration.maxBodyBytes = 1 << 20
    configuration.port = 0
    return (service, configuration)
}()

/// The port of the server, started once on a detached task.
let port: Int = {
    let ready = DispatchSemaphore(value: 0)
    let bound = Atomic(0)
    let application = DemoServer.application(service: app.0, configuration: app.1) { p in
        bound.store(p, ordering: .relaxed)
        ready.signal()
    }
    Task.detached { try await application.runService(gracefulShutdownSignals: []) }
    ready.wait()
    return bound.load(ordering: .relaxed)
}()

/// `bytes` as a request line can carry them (visible ASCII but `#` as is, everything else %-encoded).
func uriText(_ bytes: ArraySlice<UInt8>) -> String {
    var s = ""
    for b in bytes {
        if b > 0x20 && b < 0x7F && b != UInt8(ascii: "#") { s.unicodeScalars.append(Unicode.Scalar(b)) } else { s += String(format: "%%%02X", b) }
    }
    return s
}

func fuzzServer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))[...]
    let uri: String, method: String, body: ArraySlice<UInt8>?
    switch data[0] % 6 {
    case 0: (uri, method, body) = ("/api/search/text?" + uriText(rest), "GET", nil)
    case 1: (uri, method, body) = ("/api/search/text", "POST", rest)
    case 2: (uri, method, body) = ("/api/search/image?k=3&captions=2", "POST", rest)
    case 3: (uri, method, body) = ("/api/classify", "POST", rest)
    case 4: (uri, method, body) = ("/thumbnails/" + uriText(rest), "GET", nil)
    default:
        let cut = rest.firstIndex(of: 0) ?? rest.endIndex
        (uri, method, body) = ("/api/search/image?" + uriText(rest[..<cut]), "POST", rest[min(cut + 1, rest.endIndex)...])
    }
    let status: Int
    do {
        status = try rawHTTP(port: port, method: method, path: uri, body: body.map { Data($0) }, timeout: 30).status
    } catch {
        fatalError("\(method) \(uri): no HTTP answer: \(error)")
    }
    precondition(status < 500, "\(method) \(uri): HTTP \(status)")
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzServer($0, size) } ?? 0 })
