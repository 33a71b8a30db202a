import ChineseCLIP
import DemoServer
import Evaluation
import Foundation
import Gallery
import Imaging
import Synchronization
import TestSupport
import XCTest

/// The JSON API of the demo server, in process on a loopback port: each endpoint's results against the library
/// and make-topk-predictions, and every kind of bad input answered with a clear 4xx while the server keeps serving.
final class APITests: XCTestCase {
    struct Server { let service: SearchService; let port: Int; let model: ChineseCLIPModel }

    /// Upload limit of the test server (small, so the 413 tests send little).
    static let maxBody = 256 * 1024

    static let shared: Result<Server, Error> = Result {
        try start { $0.maxBodyBytes = maxBody }
    }

    /// A server on a free loopback port over the fixture's gallery, with `configure`'s changes to the defaults.
    static func start(_ configure: (inout DemoServerConfiguration) -> Void) throws -> Server {
        let f = try DemoFixture.get()
        let model = try ChineseCLIPModel(
            checkpoint: DemoFixture.fixtures.appendingPathComponent("models/vit-tiny.pt"),
            config: CLIPConfig.load(contentsOf: DemoFixture.fixtures.appendingPathComponent("models/vit-tiny.json")))
        let service = try SearchService(model: model, gallery: GalleryIndex(directory: f.index))
        var configuration = DemoServerConfiguration()
        configuration.port = 0
        configure(&configuration)
        let ready = DispatchSemaphore(value: 0)
        let port = Atomic(0)
        let app = DemoServer.application(service: service, configuration: configuration) { p in
            port.store(p, ordering: .relaxed)
            ready.signal()
        }
        Task.detached { try await app.runService(gracefulShutdownSignals: []) }
        guard ready.wait(timeout: .now() + 120) == .success else { throw ChromiumError("the server did not start") }
        return Server(service: service, port: port.load(ordering: .relaxed), model: model)
    }

    var server: Server { get throws { try Self.shared.get() } }

    func get(_ path: String) throws -> HTTPReply { try rawHTTP(port: server.port, method: "GET", path: path) }

    func post(_ path: String, json: Any) throws -> HTTPReply {
        try rawHTTP(
            port: server.port, method: "POST", path: path, headers: ["Content-Type": "application/json"],
            body: JSONSerialization.data(withJSONObject: json))
    }

    func post(_ path: String, body: Data, type: String = "image/png") throws -> HTTPReply {
        try rawHTTP(port: server.port, method: "POST", path: path, headers: ["Content-Type": type], body: body)
    }

    /// After each refusal: the server still answers and still searches.
    func assertStillServing(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try get("/healthz").status, 200, file: file, line: line)
        let r = try post("/api/search/text", json: ["query": "圆形", "k": 3])
        XCTAssertEqual(r.status, 200, r.text, file: file, line: line)
        XCTAssertEqual((r.json?["results"] as? [Any])?.count, 3, file: file, line: line)
    }

    func assertError(_ r: HTTPReply, _ status: Int, _ code: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.text, file: file, line: line)
        XCTAssertEqual(r.errorCode, code, r.text, file: file, line: line)
        XCTAssertEqual(r.headers["content-type"], "application/json; charset=utf-8", file: file, line: line)
        XCTAssertFalse(((r.json?["error"] as? [String: Any])?["message"] as? String ?? "").isEmpty, file: file, line: line)
    }

    // MARK: Endpoints

    func testInfoPageAndHealth() throws {
        let info = try get("/api/info")
        XCTAssertEqual(info.status, 200)
        XCTAssertEqual(info.json?["images"] as? Int, 48)
        XCTAssertEqual(info.json?["captions"] as? Int, 48)
        XCTAssertEqual(info.json?["dim"] as? Int, 32)
        XCTAssertEqual(info.json?["index"] as? String, "flat")
        let page = try get("/")
        XCTAssertEqual(page.status, 200)
        XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertTrue(page.text.contains("以文搜图"))
        XCTAssertEqual(try get("/healthz").json?["status"] as? String, "ok")
    }

    /// Query by query, the API ranks as extract-features (one text per batch) + make-topk-predictions do.
    func testTextSearchEqualsMakeTopKPredictions() throws {
        let f = try DemoFixture.get()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let img = tmp.appendingPathComponent("img.jsonl").path, txt = tmp.appendingPathComponent("txt.jsonl").path
        let pred = tmp.appendingPathComponent("pred.jsonl").path
        var r = try runCNCLIP(
            [
                "extract-features", "--extract-image-feats", "--extract-text-feats", "--image-data", f.validImages,
                "--text-data", f.validTexts, "--img-batch-size", "16", "--text-batch-size", "1",
                "--image-feat-output-path", img, "--text-feat-output-path", txt,
            ] + DemoFixture.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCNCLIP(["make-topk-predictions", "--image-feats", img, "--text-feats", txt, "--top-k", "10", "--output", pred])
        XCTAssertEqual(r.status, 0, r.stderr)
        let texts = try DemoFixture.jsonLines(f.validTexts)
        let predictions = try DemoFixture.jsonLines(pred)
        XCTAssertEqual(texts.count, predictions.count)
        for (t, p) in zip(texts, predictions) {
            let reply = try post("/api/search/text", json: ["query": t["text"] as! String, "k": 10])
            XCTAssertEqual(reply.status, 200, reply.text)
            let results = try XCTUnwrap(reply.json?["results"] as? [[String: Any]])
            XCTAssertEqual(results.map { $0["id"] as! Int }, p["image_ids"] as! [Int], "\(t["text"]!)")
            XCTAssertEqual(results.map { $0["rank"] as! Int }, Array(1...10))
            XCTAssertEqual(results.map { $0["thumbnail"] as! String }, results.map { "/thumbnails/\($0["row"] as! Int)" })
        }
    }

    func testGetAndPostTextSearchAgreeAndKIsHonoured() throws {
        let q = "中间有一个蓝色的小星形"
        let encoded = q.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let a = try get("/api/search/text?q=\(encoded)&k=7"), b = try post("/api/search/text", json: ["query": q, "k": 7])
        XCTAssertEqual(a.status, 200, a.text)
        XCTAssertEqual(a.json?["query"] as? String, q)
        XCTAssertEqual(a.body, b.body)
        XCTAssertEqual((a.json?["results"] as? [Any])?.count, 7)
        XCTAssertEqual((try post("/api/search/text", json: ["query": q]).json?["results"] as? [Any])?.count, 12)
    }

    func testImageSearchFindsTheImageItselfAndRanksCaptions() throws {
        let f = try DemoFixture.get()
        let model = try server.model
        let gallery = try GalleryIndex(directory: f.index)
        for (id, data) in try f.validImageFiles().prefix(4) {
            let r = try post("/api/search/image?k=5&captions=3", body: data)
            XCTAssertEqual(r.status, 200, r.text)
            let results = try XCTUnwrap(r.json?["results"] as? [[String: Any]])
            let captions = try XCTUnwrap(r.json?["captions"] as? [[String: Any]])
            XCTAssertEqual(results.count, 5)
            XCTAssertEqual(captions.count, 3)
            XCTAssertEqual(results[0]["id"] as? Int, id)
            XCTAssertGreaterThan(results[0]["score"] as! Double, 0.999)
            // The library's exact search over the same features.
            let q = model.encodeImages([try Image(data: data)])
            let (hits, caps) = try q.withUnsafeBufferPointer { p in
                (try gallery.searchImages(p, queryCount: 1, k: 5)[0], gallery.searchCaptions(p, queryCount: 1, k: 3)[0])
            }
            XCTAssertEqual(results.map { $0["row"] as! Int }, hits.map(\.row))
            XCTAssertEqual(captions.map { $0["text"] as! String }, caps.map { gallery.captions[$0.row].text })
            for (c, h) in zip(captions, caps) { XCTAssertEqual(c["score"] as! Double, Double(h.score), accuracy: 1e-6) }
        }
    }

    func testClassificationMatchesTheZeroShotClassifier() throws {
        let f = try DemoFixture.get()
        let model = try server.model
        let data = try f.validImageFiles()[0].data
        let labels = ["圆形", "正方形", "三角形", "星形"], templates = ["一张{}的图片。", "{}"]
        let r = try post("/api/classify", json: ["image": data.base64EncodedString(), "labels": labels, "templates": templates])
        XCTAssertEqual(r.status, 200, r.text)
        let got = try XCTUnwrap(r.json?["labels"] as? [[String: Any]])
        XCTAssertEqual(Set(got.map { $0["label"] as! String }), Set(labels))
        let probabilities = got.map { $0["probability"] as! Double }
        XCTAssertEqual(probabilities, probabilities.sorted(by: >))
        XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-5)
        let classifier = ZeroShotClassifier(model: model, classNames: labels, templates: templates, contextLength: 52)
        let expected = classifier.probabilities(imageFeatures: model.encodeImages([try Image(data: data)])).scalars
        for entry in got {
            let i = labels.firstIndex(of: entry["label"] as! String)!
            XCTAssertEqual(entry["probability"] as! Double, Double(expected[i]), accuracy: 1e-4)
        }
        // One template string works too, and the default template when none is given.
        XCTAssertEqual(try post("/api/classify", json: ["image": data.base64EncodedString(), "labels": labels, "template": "这是{}"]).status, 200)
        XCTAssertEqual(
            try post("/api/classify", json: ["image": data.base64EncodedString(), "labels": labels]).json?["templates"] as? [String],
            ["一张{}的图片。"])
    }

    func testThumbnails() throws {
        let r = try get("/thumbnails/5")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-type"], "image/jpeg")
        let image = try Image(data: r.body)
        XCTAssertEqual([image.width, image.height], [48, 48])
        XCTAssertEqual(try get("/thumbnails/5.jpg").body, r.body)
        assertError(try get("/thumbnails/48"), 404, "no_such_thumbnail")
        assertError(try get("/nowhere"), 404, "not_found")
    }

    /// With a FAISS index the service searches through it (and, probing every list, finds what exact search finds).
    func testServiceUsesTheApproximateIndex() async throws {
        let f = try DemoFixture.get()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-ivf-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try runCNCLIP(
            ["index", "build"] + DemoFixture.model + [
                "--image-data", f.validImages, "--text-data", f.validTexts,
                "--output", dir, "--approximate", "IVF4,Flat", "--nprobe", "4",
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = try server.model
        let approximate = try SearchService(model: model, gallery: GalleryIndex(directory: dir))
        let exact = try SearchService(model: model, gallery: GalleryIndex(directory: dir), approximate: false)
        XCTAssertTrue(approximate.approximate)
        XCTAssertFalse(exact.approximate)
        for text in try DemoFixture.jsonLines(f.validTexts).prefix(8).map({ $0["text"] as! String }) {
            let a = try await approximate.searchText(text, k: 10), e = try await exact.searchText(text, k: 10)
            XCTAssertEqual(a, e)
        }
        let image = try f.validImageFiles()[2].data
        let a = try await approximate.searchImage(image, k: 6, captions: 2), e = try await exact.searchImage(image, k: 6, captions: 2)
        XCTAssertEqual(a.images, e.images)
        XCTAssertEqual(a.captions, e.captions)
    }

    // MARK: Bad input

    func testEmptyAndOverlongQueries() throws {
        assertError(try post("/api/search/text", json: ["query": ""]), 400, "empty_query")
        assertError(try post("/api/search/text", json: ["query": " \n\t "]), 400, "empty_query")
        assertError(try get("/api/search/text"), 400, "empty_query")
        assertError(try get("/api/search/text?q="), 400, "empty_query")
        assertError(try post("/api/search/text", json: ["k": 3]), 400, "empty_query")
        assertError(try post("/api/search/text", json: ["query": 42]), 400, "empty_query")
        assertError(try post("/api/search/text", json: ["query": String(repeating: "圆", count: 201)]), 400, "query_too_long")
        XCTAssertEqual(try post("/api/search/text", json: ["query": String(repeating: "圆", count: 200)]).status, 200)
        assertError(try post("/api/search/text", json: ["query": "圆形", "k": 0]), 400, "bad_k")
        assertError(try post("/api/search/text", json: ["query": "圆形", "k": 101]), 400, "bad_k")
        assertError(try post("/api/search/text", json: ["query": "圆形", "k": "3"]), 400, "bad_k")
        assertError(try get("/api/search/text?q=x&k=abc"), 400, "bad_k")
        try assertStillServing()
    }

    func testMalformedJSON() throws {
        for body in ["{\"query\": ", "not json", "[1, 2]", "\"圆形\"", "{\"query\": \"a\"} trailing", ""] {
            let r = try post("/api/search/text", body: Data(body.utf8), type: "application/json")
            assertError(r, 400, "bad_json")
        }
        assertError(try post("/api/classify", body: Data("{\"labels\": [".utf8), type: "application/json"), 400, "bad_json")
        try assertStillServing()
    }

    func testNonImageUploads() throws {
        assertError(try post("/api/search/image", body: Data("hello, this is text".utf8), type: "text/plain"), 415, "not_an_image")
        assertError(try post("/api/search/image", body: Data()), 400, "empty_upload")
        // A PNG signature followed by garbage: looks like an image, does not decode.
        let fake = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) + Data(repeating: 0x41, count: 200)
        assertError(try post("/api/search/image", body: fake), 400, "bad_image")
        assertError(try post("/api/search/image?k=-1", body: try DemoFixture.get().validImageFiles()[0].data), 400, "bad_k")
        let data = try DemoFixture.get().validImageFiles()[0].data.base64EncodedString()
        assertError(try post("/api/classify", json: ["image": "@@@not base64@@@", "labels": ["a"]]), 400, "bad_base64")
        assertError(try post("/api/classify", json: ["image": Data("text".utf8).base64EncodedString(), "labels": ["a"]]), 415, "not_an_image")
        assertError(try post("/api/classify", json: ["image": data, "labels": []]), 400, "no_labels")
        assertError(try post("/api/classify", json: ["image": data, "labels": ["a", " "]]), 400, "empty_label")
        assertError(try post("/api/classify", json: ["image": data, "labels": ["a"], "template": "no placeholder"]), 400, "bad_template")
        assertError(try post("/api/classify", json: ["image": data, "labels": ["a"], "template": "{}", "templates": ["{}"]]), 400, "bad_template")
        assertError(try post("/api/classify", json: ["labels": ["a"]]), 400, "empty_upload")
        try assertStillServing()
    }

    func testOversizedUploadsGet413() throws {
        let big = Data(repeating: 0xFF, count: Self.maxBody + 1)
        // Refused by its declared length before the body is read…
        assertError(
            try rawHTTP(
                port: server.port, method: "POST", path: "/api/search/image", headers: ["Content-Type": "image/jpeg"],
                body: nil, declaredLength: 50 << 20), 413, "too_large")
        assertError(try post("/api/search/image", body: big), 413, "too_large")
        // …or while it streams in, when no length is declared.
        assertError(
            try rawHTTP(
                port: server.port, method: "POST", path: "/api/search/image", headers: ["Content-Type": "image/jpeg"],
                body: big, chunked: true), 413, "too_large")
        assertError(
            try rawHTTP(
                port: server.port, method: "POST", path: "/api/search/text", headers: ["Content-Type": "application/json"],
                body: Data("{\"query\": \"".utf8) + Data(repeating: 0x41, count: Self.maxBody) + Data("\"}".utf8)), 413, "too_large")
        // Just under the limit is read (and is not an image).
        assertError(try post("/api/search/image", body: Data(repeating: 0x41, count: Self.maxBody - 1)), 415, "not_an_image")
        try assertStillServing()
    }

    /// A JPEG whose frame header declares 50,000 × 50,000 pixels (7.5 GB decoded) is refused from its header: 413.
    func testDecompressionBombsGet413() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/images/rgb.jpg")
        var bomb = [UInt8](try Data(contentsOf: fixture))
        let sof = try XCTUnwrap((0..<(bomb.count - 1)).first { bomb[$0] == 0xFF && bomb[$0 + 1] == 0xC0 })
        bomb.replaceSubrange((sof + 5)..<(sof + 9), with: [0xC3, 0x50, 0xC3, 0x50])  // height, width: 50,000 each
        assertError(try post("/api/search/image", body: Data(bomb)), 413, "image_too_large")
        assertError(try post("/api/classify", json: ["image": Data(bomb).base64EncodedString(), "labels": ["a"]]), 413, "image_too_large")
        try assertStillServing()
    }

    func testPathTraversalOnThumbnailsIsRefused() throws {
        for path in [
            "/thumbnails/../../etc/passwd", "/thumbnails/..%2F..%2Fetc%2Fpasswd", "/thumbnails/%2e%2e/index.json",
            "/thumbnails/1/../../index.json", "/thumbnails/..", "/thumbnails/-1", "/thumbnails/0x10", "/thumbnails/5.png",
            "/thumbnails/%35", "/thumbnails/99999999999999999999", "/thumbnails/index.json",
        ] {
            let r = try get(path)
            assertError(r, 400, "bad_thumbnail_name")
            XCTAssertFalse(r.text.contains("root:"), path)
        }
        try assertStillServing()
    }

    /// Concurrent clients get the same answers as one client alone (batched encoding may move a score's last bits,
    /// so rows must match except inside a near-tie, and scores within 1e-5).
    func testConcurrentRequestsGetTheSequentialAnswers() throws {
        let port = try server.port
        let f = try DemoFixture.get()
        let texts = try DemoFixture.jsonLines(f.validTexts).prefix(12).map { $0["text"] as! String }
        let images = try f.validImageFiles().prefix(4).map(\.data)
        @Sendable func ask(_ i: Int) throws -> [(row: Int, score: Double)] {
            let r =
                i % 3 == 2
                ? try rawHTTP(
                    port: port, method: "POST", path: "/api/search/image?k=5", headers: ["Content-Type": "image/png"], body: images[i % images.count])
                : try rawHTTP(
                    port: port, method: "POST", path: "/api/search/text",
                    body: JSONSerialization.data(withJSONObject: ["query": texts[i % texts.count], "k": 5]))
            guard r.status == 200 else { throw ChromiumError("status \(r.status): \(r.text)") }
            return (r.json?["results"] as? [[String: Any]] ?? []).map { ($0["row"] as! Int, $0["score"] as! Double) }
        }
        let expected = try (0..<24).map(ask)
        let results = Mutex<(got: [[(row: Int, score: Double)]?], failures: [String])>((Array(repeating: nil, count: 96), []))
        DispatchQueue.concurrentPerform(iterations: 16) { client in
            for j in 0..<6 {
                let i = client * 6 + j
                do { let hits = try ask(i % 24); results.withLock { $0.got[i] = hits } } catch {
                    results.withLock { $0.failures.append("\(error)") }
                }
            }
        }
        let (got, failures) = results.withLock { $0 }
        XCTAssertEqual(failures, [])
        for i in 0..<96 {
            let want = expected[i % 24], have = try XCTUnwrap(got[i])
            XCTAssertEqual(have.count, want.count, "request \(i)")
            for (p, (h, w)) in zip(have, want).enumerated() {
                XCTAssertEqual(h.score, w.score, accuracy: 1e-5, "request \(i) rank \(p + 1)")
                let tie = want.indices.contains { $0 != p && abs(want[$0].score - w.score) < 1e-5 }
                if !tie { XCTAssertEqual(h.row, w.row, "request \(i) rank \(p + 1)") }
            }
        }
    }
}

/// Connections that hold the server without using it: idle keep-alive sockets, a request head that never ends, a body
/// that trickles in. Each is closed (or answered 408) after its timeout, and other clients are served meanwhile.
final class ServerTimeoutTests: XCTestCase {
    static let shared: Result<APITests.Server, Error> = Result {
        try APITests.start {
            $0.idleTimeout = 1.5
            $0.bodyTimeout = 1.5
        }
    }

    func testIdleAndUnfinishedConnectionsAreClosedWhileOthersAreServed() throws {
        let port = try Self.shared.get().port
        let idle = try (0..<50).map { _ in try RawConnection(port: port) }
        let unfinished = try RawConnection(port: port)
        unfinished.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  // and nothing more
        let kept = try RawConnection(port: port)
        kept.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  // answered, then idle on keep-alive
        // With 52 connections held open, a new client is answered.
        XCTAssertEqual(try rawHTTP(port: port, method: "GET", path: "/healthz").status, 200)
        for connection in idle + [unfinished] {
            let (data, closed) = connection.readUntilClosed(timeout: 30)
            XCTAssertTrue(closed, "a connection that sent nothing (or half a head) is still open after 30 s")
            XCTAssertTrue(data.isEmpty, String(decoding: data, as: UTF8.self))
        }
        let (answer, closed) = kept.readUntilClosed(timeout: 30)
        XCTAssertTrue(closed, "a keep-alive connection left idle is still open after 30 s")
        XCTAssertTrue(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 200"), String(decoding: answer, as: UTF8.self))
    }

    func testATricklingBodyGets408() throws {
        let port = try Self.shared.get().port
        let slow = try RawConnection(port: port)
        slow.send("POST /api/search/text HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        // One byte every 0.2 s keeps resetting the idle timer, but not the body's deadline.
        let sender = Thread {
            for _ in 0..<60 {
                Thread.sleep(forTimeInterval: 0.2)
                if !slow.send(" ") { return }
            }
        }
        sender.start()
        let (data, _) = slow.readUntilClosed(timeout: 30)
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 408"), text)
        XCTAssertTrue(text.contains("request_timeout"), text)
        XCTAssertEqual(try rawHTTP(port: port, method: "GET", path: "/healthz").status, 200)
    }
}
