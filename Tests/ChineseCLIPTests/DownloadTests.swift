import Synchronization
import TestSupport
import XCTest

@testable import ChineseCLIP

/// `cnclip download`'s engine against a local server: the whole file, a resumed partial file, errors.
final class DownloadTests: XCTestCase {
    let model = ModelPresets.released(named: "RN50")!

    func payload() -> Data { Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }) }

    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-dl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d
    }

    func testDownloadsIntoCacheAndReusesIt() throws {
        let server = try LocalHTTPServer(files: ["/ckpt/clip_cn_rn50.pt": payload()])
        defer { server.stop() }
        let dir = try tempDir()
        let d = CheckpointDownloader(cacheDirectory: dir, baseURL: server.baseURL + "/ckpt")
        let calls = Atomic(0)
        let path = try d.download(model) { _, _ in calls.add(1, ordering: .relaxed) }
        XCTAssertEqual(path.lastPathComponent, "clip_cn_rn50.pt")
        XCTAssertEqual(try Data(contentsOf: path), payload())
        XCTAssertGreaterThan(calls.load(ordering: .relaxed), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path.path + ".part"))
        // A second call finds the cached file and does not fetch again.
        server.stop()
        XCTAssertEqual(try d.download(model), path)
    }

    func testInterruptedDownloadLeavesPartAndResumes() throws {
        let server = try LocalHTTPServer(files: ["/clip_cn_rn50.pt": payload()], cutFirstAfter: 100_000)
        defer { server.stop() }
        let dir = try tempDir()
        let d = CheckpointDownloader(cacheDirectory: dir, baseURL: server.baseURL)
        XCTAssertThrowsError(try d.download(model)) { error in
            XCTAssertTrue("\(error)".contains("resume"), "\(error)")
        }
        let target = dir.appendingPathComponent("clip_cn_rn50.pt")
        XCTAssertFalse(FileManager.default.fileExists(atPath: target.path), "no final file after a broken download")
        let partSize = try FileManager.default.attributesOfItem(atPath: target.path + ".part")[.size] as! Int
        XCTAssertEqual(partSize, 100_000)
        let path = try d.download(model)
        XCTAssertEqual(try Data(contentsOf: path), payload())
        XCTAssertEqual(server.rangeRequests.count, 1)
        XCTAssertTrue(server.rangeRequests[0].contains("bytes=100000-"), "\(server.rangeRequests)")
    }

    func testMissingFileIsAnHTTPError() throws {
        let server = try LocalHTTPServer(files: [:])
        defer { server.stop() }
        let d = CheckpointDownloader(cacheDirectory: try tempDir(), baseURL: server.baseURL)
        XCTAssertThrowsError(try d.download(model)) { error in
            XCTAssertTrue("\(error)".contains("404"), "\(error)")
            XCTAssertTrue("\(error)".contains("clip_cn_rn50.pt"), "\(error)")
        }
    }
}
