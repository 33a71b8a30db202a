// A deliberately plain HTTP/1.1 client on raw loopback sockets for server tests: it sends exactly the bytes it is
// given (URLSession and curl normalise `..` in paths and refuse malformed requests, which is what we must test), and
// reads a response by its Content-Length (or chunks) without waiting for the server to close.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A parsed HTTP response.
package struct HTTPReply: Sendable {
    /// Status code.
    package var status: Int
    /// Header fields, names lower-cased.
    package var headers: [String: String]
    /// The body.
    package var body: Data

    /// The body as UTF-8 text.
    package var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed as a JSON object (nil when it is not one).
    package var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] }

    /// The `error.code` of a JSON error body.
    package var errorCode: String? { (json?["error"] as? [String: Any])?["code"] as? String }
}

/// Errors of the raw client.
package struct RawHTTPError: Error, CustomStringConvertible {
    /// What went wrong.
    package var description: String
}

/// A loopback connection that sends what it is told when it is told, for tests of idle and slow clients.
package final class RawConnection: @unchecked Sendable {  // sound: one thread may send while another reads
    private let fd: Int32

    /// Connects to `127.0.0.1:port`.
    package init(port: Int) throws { fd = try connectLoopback(port: port) }

    deinit { close(fd) }

    /// Sends `text`; false once the server has closed the connection.
    @discardableResult package func send(_ text: String) -> Bool { sendAll(fd, Data(text.utf8)) }

    /// Reads until the server closes the connection or `timeout` seconds pass: what arrived, and whether it closed.
    package func readUntilClosed(timeout: TimeInterval) -> (data: Data, closed: Bool) {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n == 0 { return (data, true) }
            if n < 0 { return (data, errno == ECONNRESET) }
            data.append(contentsOf: chunk[0..<n])
        }
    }
}

/// Sends one request to `127.0.0.1:port` on a new connection and reads the response.
///
/// `head` lines are sent as given after the request line; `Host` and `Connection: close` are added, and
/// `Content-Length` too unless `chunked` (the body is then sent as 16 KiB chunks) or `declaredLength` overrides it.
package func rawHTTP(
    port: Int, method: String, path: String, headers: [String: String] = [:], body: Data? = nil,
    chunked: Bool = false, declaredLength: Int? = nil, timeout: TimeInterval = 60
) throws -> HTTPReply {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    for (k, v) in headers { head += "\(k): \(v)\r\n" }
    if chunked { head += "Transfer-Encoding: chunked\r\n" } else if let n = declaredLength ?? body?.count { head += "Content-Length: \(n)\r\n" }
    head += "\r\n"
    // A server may answer (413) and stop reading before the body is through: send errors are not failures here.
    _ = sendAll(fd, Data(head.utf8))
    if let body {
        if chunked {
            var offset = 0
            while offset < body.count {
                let n = min(16384, body.count - offset)
                guard sendAll(fd, Data((String(n, radix: 16) + "\r\n").utf8) + body.subdata(in: offset..<(offset + n)) + Data("\r\n".utf8)) else {
                    break
                }
                offset += n
            }
            _ = sendAll(fd, Data("0\r\n\r\n".utf8))
        } else {
            _ = sendAll(fd, body)
        }
    }
    return try readResponse(fd)
}

/// A socket connected to `127.0.0.1:port`.
private func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw RawHTTPError(description: "socket: \(errno)") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var failure = connected == 0 ? 0 : errno
    if failure == EINTR {
        // A signal (libFuzzer's timer) interrupted the call, not the connection: it completes on its own; wait for it.
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while poll(&p, 1, 10_000) < 0 && errno == EINTR {}
        var code: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        failure = p.revents == 0 ? ETIMEDOUT : getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size) == 0 ? code : errno
    }
    guard failure == 0 else {
        close(fd)
        throw RawHTTPError(description: "connect to port \(port): errno \(failure)")
    }
    return fd
}

private func sendAll(_ fd: Int32, _ data: Data) -> Bool {
    data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = send(fd, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}

private func readResponse(_ fd: Int32) throws -> HTTPReply {
    var buffer = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    func more() throws -> Bool {
        var n = recv(fd, &chunk, chunk.count, 0)
        while n < 0 && errno == EINTR { n = recv(fd, &chunk, chunk.count, 0) }  // a signal (libFuzzer's timer) is no failure
        if n < 0 { throw RawHTTPError(description: "recv: errno \(errno)") }
        if n == 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }
    let separator = Data("\r\n\r\n".utf8)
    while buffer.range(of: separator) == nil {
        guard try more() else { throw RawHTTPError(description: "connection closed before a full response head (\(buffer.count) bytes)") }
    }
    let headEnd = buffer.range(of: separator)!
    let headText = String(decoding: buffer[..<headEnd.lowerBound], as: UTF8.self)
    var lines = headText.components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst().split(separator: " ")
    guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw RawHTTPError(description: "bad status line: \(headText.prefix(80))") }
    var headers: [String: String] = [:]
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    var rest = Data(buffer[headEnd.upperBound...])
    if let length = headers["content-length"].flatMap(Int.init) {
        while rest.count < length {
            let before = buffer.count
            guard try more() else { break }
            rest.append(buffer[before...])
        }
        return HTTPReply(status: status, headers: headers, body: rest.prefix(length))
    }
    if headers["transfer-encoding"]?.lowercased() == "chunked" {
        var body = Data()
        while true {
            while rest.range(of: Data("\r\n".utf8)) == nil {
                let before = buffer.count
                guard try more() else { throw RawHTTPError(description: "connection closed inside a chunk header") }
                rest.append(buffer[before...])
            }
            let lineEnd = rest.range(of: Data("\r\n".utf8))!
            let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
            rest = Data(rest[lineEnd.upperBound...])
            if size == 0 { break }
            while rest.count < size + 2 {
                let before = buffer.count
                guard try more() else { throw RawHTTPError(description: "connection closed inside a chunk") }
                rest.append(buffer[before...])
            }
            body.append(rest.prefix(size))
            rest = Data(rest.dropFirst(size + 2))
        }
        return HTTPReply(status: status, headers: headers, body: body)
    }
    while try more() {}
    return HTTPReply(status: status, headers: headers, body: Data(buffer[headEnd.upperBound...]))
}
