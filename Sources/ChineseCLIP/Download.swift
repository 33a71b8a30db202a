// Fetches released checkpoints into a cache, as the reference's `_download` does (`~/.cache/clip`, file name
// from the address), with what it lacks: resume of a partial file, progress, and an atomic rename at the end.

import Foundation
import Synchronization

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
    /// download is resumed with an HTTP range request. `progress(received, total)` is called as bytes arrive, on
    /// URLSession's delegate thread.
    @discardableResult
    public func download(_ model: ModelPresets.Released, progress: (@Sendable (Int64, Int64?) -> Void)? = nil) throws -> URL {
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
final class HTTPFileFetcher: NSObject, URLSessionDataDelegate, Sendable {
    let url: URL
    let destination: URL
    let progress: (@Sendable (Int64, Int64?) -> Void)?
    /// What the delegate callbacks have seen so far: the open file, bytes held, the size announced, the first error.
    private struct Transfer {
        var handle: FileHandle?
        var received: Int64 = 0
        var total: Int64?
        var failure: Error?
    }
    private let transfer = Mutex(Transfer())
    private let done = DispatchSemaphore(value: 0)

    init(url: URL, destination: URL, progress: (@Sendable (Int64, Int64?) -> Void)?) {
        self.url = url
        self.destination = destination
        self.progress = progress
    }

    func run() throws {
        let existing = (try? FileManager.default.attributesOfItem(atPath: destination.path)[.size] as? Int64) ?? 0
        var request = URLRequest(url: url)
        if existing > 0 { request.setValue("bytes=\(existing)-", forHTTPHeaderField: "Range") }
        transfer.withLock { $0.received = existing }
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        session.dataTask(with: request).resume()
        done.wait()
        session.finishTasksAndInvalidate()
        let (failure, received, total) = transfer.withLock { t in
            try? t.handle?.close()
            return (t.failure, t.received, t.total)
        }
        if let failure { throw failure }
        if let total, received != total {
            throw CLIPError.io(path: url.absoluteString, reason: "download ended after \(received) of \(total) bytes; run again to resume")
        }
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void
    ) {
        guard let http = response as? HTTPURLResponse else { completionHandler(.cancel); return }
        let shown: (Int64, Int64?)? = transfer.withLock { t in
            do {
                switch http.statusCode {
                case 206:
                    // Resume: keep what we have and append.
                    if let range = http.value(forHTTPHeaderField: "Content-Range"), let slash = range.lastIndex(of: "/") {
                        t.total = Int64(range[range.index(after: slash)...])
                    }
                    t.handle = try FileHandle(forWritingTo: destination)
                    try t.handle?.seekToEnd()
                case 200:
                    // The server sent the whole file: start over.
                    t.received = 0
                    t.total = http.expectedContentLength >= 0 ? http.expectedContentLength : nil
                    _ = FileManager.default.createFile(atPath: destination.path, contents: nil)
                    t.handle = try FileHandle(forWritingTo: destination)
                default:
                    t.failure = CLIPError.io(path: url.absoluteString, reason: "HTTP status \(http.statusCode)")
                    return nil
                }
            } catch {
                t.failure = CLIPError.io(path: destination.path, reason: "cannot write: \(error.localizedDescription)")
                return nil
            }
            return (t.received, t.total)
        }
        guard let shown else { completionHandler(.cancel); return }
        progress?(shown.0, shown.1)
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let shown: (Int64, Int64?)? = transfer.withLock { t in
            guard t.failure == nil else { return nil }
            do {
                try t.handle?.write(contentsOf: data)
                t.received += Int64(data.count)
                return (t.received, t.total)
            } catch {
                t.failure = CLIPError.io(path: destination.path, reason: "cannot write: \(error.localizedDescription)")
                dataTask.cancel()
                return nil
            }
        }
        if let shown { progress?(shown.0, shown.1) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        transfer.withLock { t in
            if let error, t.failure == nil {
                t.failure = CLIPError.io(
                    path: url.absoluteString,
                    reason: "download failed after \(t.received) bytes (\(error.localizedDescription)); run again to resume")
            }
        }
        done.signal()
    }
}
