import Foundation
import Synchronization
import TestSupport
import XCTest

/// The demo page in a real headless Chromium against a real `cnclip serve` process: typing a query, uploading and
/// dropping an image, classifying it. Screenshots go to `.test-artifacts/screenshots/` (git-ignored) for a person to look at.
final class BrowserTests: XCTestCase {
    /// A `cnclip serve` child process on a free port.
    final class ServeProcess: Sendable {
        let process = Process()
        let port: Int
        init(index: String) throws {
            process.executableURL = builtCNCLIP
            process.arguments = ["serve", "--index", index, "--port", "0", "--max-upload-bytes", "1048576"] + DemoFixture.model
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            // The first line says where it listens: "Serving N images and M captions at http://127.0.0.1:PORT/".
            var line = Data()
            while !line.contains(0x0A) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let text = String(decoding: line, as: UTF8.self)
            guard let r = text.range(of: "http://127.0.0.1:"), let port = Int(text[r.upperBound...].prefix { $0.isNumber }) else {
                process.terminate()
                throw ChromiumError("cnclip serve did not start: \(text)")
            }
            self.port = port
        }
        func stop() { process.terminate(); process.waitUntilExit() }
    }

    /// The server and the browser, started by the first test that needs them and stopped after the last.
    static let running = Mutex<(serve: ServeProcess?, browser: Chromium?)>((nil, nil))
    static let screenshots = DemoFixture.artifacts.appendingPathComponent("screenshots")

    override class func tearDown() {
        running.withLock {
            $0.browser?.quit(); $0.browser = nil
            $0.serve?.stop(); $0.serve = nil
        }
        super.tearDown()
    }

    /// The browser and server, started once for the class. Without Chromium the test fails in CI (scripts/install-deps.sh
    /// installs it) and is skipped, loudly, elsewhere.
    func setUpPage() throws -> (ChromiumPage, Int) {
        guard let executable = Chromium.executable() else {
            let message = "Chromium is not installed (scripts/install-deps.sh installs the distribution's chromium package)"
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail(message); throw ChromiumError(message) }
            throw XCTSkip(message)
        }
        let (browser, port) = try Self.running.withLock { running in
            if running.serve == nil { running.serve = try ServeProcess(index: try DemoFixture.get().index) }
            if running.browser == nil { running.browser = try Chromium(executable: executable) }
            return (running.browser!, running.serve!.port)
        }
        let page = try browser.newPage()
        try page.navigate("http://127.0.0.1:\(port)/")
        try page.waitUntil("document.getElementById('info').textContent.startsWith('图库：48 张图片')")
        return (page, port)
    }

    func shot(_ page: ChromiumPage, _ name: String) throws {
        try page.waitUntil(
            "[...document.images].every(i => i.style.display === 'none' || !i.getAttribute('src') || (i.complete && i.naturalWidth > 0))")
        try page.screenshot(to: Self.screenshots.appendingPathComponent(name))
        XCTAssertGreaterThan(try Data(contentsOf: Self.screenshots.appendingPathComponent(name)).count, 10_000)
    }

    func rows(_ page: ChromiumPage, _ selector: String) throws -> [Int] {
        (try page.evaluate("[...document.querySelectorAll('\(selector) .result')].map(d => Number(d.dataset.row))") as? [Int]) ?? []
    }

    func testTypeAChineseQueryAndSeeRankedImages() throws {
        let (page, port) = try setUpPage()
        let query = "左上角有一个红色的大圆形"
        try page.click("#query")
        try page.type(query)
        try page.press(key: "Enter", code: 13)
        try page.waitUntil("document.querySelectorAll('#text-results .result').length === 12")
        let api = try rawHTTP(
            port: port, method: "POST", path: "/api/search/text",
            body: JSONSerialization.data(withJSONObject: ["query": query, "k": 12]))
        XCTAssertEqual(try rows(page, "#text-results"), (api.json?["results"] as? [[String: Any]])?.map { $0["row"] as! Int })
        XCTAssertTrue((try page.evaluate("document.getElementById('text-status').textContent") as? String ?? "").contains(query))
        let scores = try page.evaluate("[...document.querySelectorAll('#text-results .score')].map(s => Number(s.textContent))") as? [Double] ?? []
        XCTAssertEqual(scores, scores.sorted(by: >))
        try shot(page, "text-search.png")
    }

    func testEmptyQueryShowsTheServersRefusal() throws {
        let (page, _) = try setUpPage()
        try page.click("#search-button")
        try page.waitUntil("document.getElementById('text-status').classList.contains('error')")
        let status = try page.evaluate("document.getElementById('text-status').textContent") as? String ?? ""
        XCTAssertTrue(status.contains("400") && status.contains("the query is empty"), status)
        XCTAssertEqual(try rows(page, "#text-results"), [])
    }

    func testUploadAnImageSeeSimilarImagesAndCaptionsThenClassify() throws {
        let (page, _) = try setUpPage()
        let f = try DemoFixture.get()
        let (id, data) = try f.validImageFiles()[3]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-upload-\(id).png")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        try page.setFiles("#image-input", [file.path])
        try page.waitUntil(
            "document.querySelectorAll('#image-results .result').length === 12 && document.querySelectorAll('#caption-results li').length === 5")
        XCTAssertEqual(try page.evaluate("JSON.parse(document.querySelector('#image-results .result').dataset.id)") as? Int, id)
        try shot(page, "image-search.png")

        try page.click("#labels")
        // Ctrl+A: the key event alone does not edit in headless Chromium; the editing command it maps to does.
        try page.send(
            "Input.dispatchKeyEvent",
            [
                "type": "keyDown", "key": "a", "code": "KeyA", "modifiers": 2, "windowsVirtualKeyCode": 65,
                "commands": ["selectAll"],
            ])
        try page.send("Input.dispatchKeyEvent", ["type": "keyUp", "key": "a", "code": "KeyA", "modifiers": 2, "windowsVirtualKeyCode": 65])
        try page.type("红色，蓝色，绿色")
        try page.click("#classify-button")
        do { try page.waitUntil("document.querySelectorAll('#classify-results .label-row').length === 3", timeout: 30) } catch {
            try? page.screenshot(to: Self.screenshots.appendingPathComponent("classify-failure.png"))
            let state = try page.evaluate("[document.getElementById('labels').value, document.getElementById('classify-status').textContent]")
            throw ChromiumError("\(error); labels and status: \(state ?? "?")")
        }
        let labels =
            try page.evaluate("[...document.querySelectorAll('#classify-results .label-row > span:first-child')].map(s => s.textContent)")
            as? [String]
        XCTAssertEqual(Set(labels ?? []), ["红色", "蓝色", "绿色"])
        try shot(page, "classify.png")
    }

    func testDropAnImageOnThePage() throws {
        let (page, _) = try setUpPage()
        let f = try DemoFixture.get()
        let (id, data) = try f.validImageFiles()[7]
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-drop-\(id).png")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        guard
            let center = try page.evaluate(
                """
                (() => { const r = document.getElementById('drop-zone').getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()
                """) as? [Double]
        else { return XCTFail("no drop zone") }
        let drag: [String: Any] = ["items": [], "files": [file.path], "dragOperationsMask": 1]
        for type in ["dragEnter", "dragOver", "drop"] {
            try page.send("Input.dispatchDragEvent", ["type": type, "x": center[0], "y": center[1], "data": drag])
        }
        try page.waitUntil("document.querySelectorAll('#image-results .result').length === 12")
        XCTAssertEqual(try page.evaluate("JSON.parse(document.querySelector('#image-results .result').dataset.id)") as? Int, id)
        try shot(page, "drop.png")
    }
}
