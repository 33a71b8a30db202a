// Fetches released checkpoints into a cache, as the reference's `_download` does (`~/.cache/clip`, file name
// from the address), with what it lacks: resume of a partial file, progress, and an atomic rename at the end.

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloads released checkpoints into a cache directory.
public struct CheckpointDownloader: Sendable {
    /// Where checkpoints are kept (the reference's default: `~/.cache/clip`).
    public var cacheDirectory: URL
    /// Replaces the address's scheme and host (`http://127.0.0.1:8000/checkpoints`) — for mirrors and tests.
    public var baseURL: String?

    /// The reference's cache directory, `~/.cache/clip`.
    public static var defaultCacheDirectory: URL {
        FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/clip")
    }

    /// A downloader into `cacheDirectory`, optionally from a mirror.
    public init(cacheDirectory: URL = CheckpointDownloader.defaultCacheDirectory, baseURL: String? = nil) {
        self.cacheDirectory = cacheDirectory
        self.baseURL = baseURL
    }

    /// Where the checkpoint of `model` lives once downloaded.
    public func cachedPath(for model: ModelPresets.Released) -> URL {
        cacheDirectory.appendingPathComponent(model.fileName)
    }

    /// The address `model` is fetched from.
    public func url(for model: ModelPresets.Released) -> URL {
        if let baseURL {
            let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
            return URL(string: base + "/" + model.fileName)!
        }
        return URL(string: model.url)!
    }

    /// Downloads `model` unless it is cached; returns the cached file. A `.part` file left by an interrupted
    /// download is resumed with an HTTP range request. `progress(received, total)` is called as bytes arrive.
    @discardableResult
    public func download(_ model: ModelPresets.Released, progress: ((Int64, Int64?) -> Void)? = nil) throws -> URL {
        let target = cachedPath(for: model)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: target.path, isDirectory: &isDir) {
            if isDir.boolValue { throw CLIPError.io(path: target.path, reason: "exists and is not a regular file") }
            return target
        }
        do {
            try FileManager.default.createDirectory(at: cacheDirectory, withIntermediateDirectories: true)
        } catch {
            throw CLIPError.io(path: cacheDirectory.path, reason: "cannot create the cache directory: \(error.localizedDescription)")
        }
        let part = target.appendingPathExtension("part")
        try HTTPFileFetcher(url: url(for: model), destination: part, progress: progress).run()
        do {
            try FileManager.default.moveItem(at: part, to: target)
        } catch {
            throw CLIPError.io(path: target.path, reason: "cannot move the finished download into place: \(error.localizedDescription)")
        }
        return target
    }
}

/// Streams one URL into a file, appending to what the file already holds when the server honours a range request.
final class HTTPFileFetcher: NSObject, URLSessionDataDelegate, @unchecked Sendable {  // sound: URLSession calls the delegate on its one serial delegate queue
    let url: URL
    let destination: URL
    let progress: ((Int64, Int64?) -> Void)?
    private var handle: FileHandle?
    private var received: Int64 = 0
    private var total: Int64?
    private var failure: Error?
    private let done = DispatchSemaphore(value: 0)

    init(url: URL, destination: URL, progress: ((Int64, Int64?) -> Void)?) {
        self.url = url
        self.destination = destination
        self.progress = progress
    }

    func run() throws {
        let existing = (try? FileManager.default.attributesOfItem(atPath: destination.path)[.size] as? Int64) ?? 0
        var request = URLRequest(url: url)
        if existing > 0 { request.setValue("bytes=\(existing)-", forHTTPHeaderField: "Range") }
        received = existing
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        session.dataTask(with: request).resume()
        done.wait()
        session.finishTasksAndInvalidate()
        try? handle?.close()
        if let failure { throw failure }
        if let total, received != total {
            throw CLIPError.io(path: url.absoluteString, reason: "download ended after \(received) of \(total) bytes; run again to resume")
        }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse else { completionHandler(.cancel); return }
        do {
            switch http.statusCode {
            case 206:
                // Resume: keep what we have and append.
                if let range = http.value(forHTTPHeaderField: "Content-Range"), let slash = range.lastIndex(of: "/") {
                    total = Int64(range[range.index(after: slash)...])
                }
                handle = try FileHandle(forWritingTo: destination)
                try handle?.seekToEnd()
            case 200:
                // The server sent the whole file: start over.
                received = 0
                total = http.expectedContentLength >= 0 ? http.expectedContentLength : nil
                _ = FileManager.default.createFile(atPath: destination.path, contents: nil)
                handle = try FileHandle(forWritingTo: destination)
            default:
                failure = CLIPError.io(path: url.absoluteString, reason: "HTTP status \(http.statusCode)")
                completionHandler(.cancel)
                return
            }
        } catch {
            failure = CLIPError.io(path: destination.path, reason: "cannot write: \(error.localizedDescription)")
            completionHandler(.cancel)
            return
        }
        progress?(received, total)
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard failure == nil else { return }
        do {
            try handle?.write(contentsOf: data)
            received += Int64(data.count)
            progress?(received, total)
        } catch {
            failure = CLIPError.io(path: destination.path, reason: "cannot write: \(error.localizedDescription)")
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error, failure == nil {
            failure = CLIPError.io(path: url.absoluteString, reason: "download failed after \(received) bytes (\(error.localizedDescription)); run again to resume")
        }
        done.signal()
    }
}
