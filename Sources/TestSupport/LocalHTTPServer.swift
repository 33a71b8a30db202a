// A tiny HTTP/1.1 file server on 127.0.0.1 for download tests: serves fixed files, honours `Range: bytes=N-`,
// and can cut the first response short to simulate a broken download. Loopback only.

import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A loopback HTTP file server for tests (never part of the shipped library).
package final class LocalHTTPServer: Sendable {
    /// The port it listens on.
    package let port: UInt16
    private let listener: Int32
    private let files: [String: Data]
    /// The cut still to make, the `Range:` headers received and whether `stop` was called.
    private let state: Mutex<(cutFirstAfter: Int?, rangeRequests: [String], stopped: Bool)>

    /// The `Range:` headers received, in order.
    package var rangeRequests: [String] { state.withLock { $0.rangeRequests } }

    /// Serves `files` (path → bytes); the first response is cut after `cutFirstAfter` body bytes if given.
    package init(files: [String: Data], cutFirstAfter: Int? = nil) throws {
        self.files = files
        self.state = Mutex((cutFirstAfter, [], false))
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        guard bound == 0, listen(listener, 8) == 0 else { throw NSError(domain: "LocalHTTPServer", code: Int(errno)) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }

        port = UInt16(bigEndian: addr.sin_port)
        Thread.detachNewThread { [self] in serve() }
    }

    /// `http://127.0.0.1:PORT`.
    package var baseURL: String { "http://127.0.0.1:\(port)" }

    /// Stops accepting connections.
    package func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { return }
            handle(fd)
            close(fd)
            if state.withLock({ $0.stopped }) { return }
        }
    }

    private func handle(_ fd: Int32) {
        var request = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        while !request.contains(Data("\r\n\r\n".utf8)) {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return }
            request.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: request, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        let path = parts.count > 1 ? String(parts[1]) : "/"
        var start = 0
        if let range = lines.first(where: { $0.lowercased().hasPrefix("range:") }) {
            state.withLock { $0.rangeRequests.append(range) }
            if let eq = range.firstIndex(of: "="), let dash = range.firstIndex(of: "-") {
                start = Int(range[range.index(after: eq)..<dash].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        guard let body = files[path] else {
            send(fd, Data("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            return
        }
        let slice = body.subdata(in: min(start, body.count)..<body.count)
        var head =
            start > 0
            ? "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes \(start)-\(body.count - 1)/\(body.count)\r\n"
            : "HTTP/1.1 200 OK\r\n"
        head += "Content-Length: \(slice.count)\r\nConnection: close\r\n\r\n"
        send(fd, Data(head.utf8))
        let cut = state.withLock { state in
            defer { state.cutFirstAfter = nil }; return state.cutFirstAfter
        }
        send(fd, cut.map { slice.prefix($0) } ?? slice)
    }

    private func send(_ fd: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
                if n <= 0 { return }
                off += n
            }
        }
    }
}
