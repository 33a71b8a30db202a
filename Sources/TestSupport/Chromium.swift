// Drives a real headless Chromium (the distribution's package) for browser tests, over the DevTools protocol on
// a pipe (`--remote-debugging-pipe`: the browser reads commands on fd 3 and writes replies on fd 4, each message a
// JSON text ended by a NUL byte). A pipe needs no WebSocket client and no port, and dies with the browser.

import Essentials
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Errors talking to the browser.
package struct ChromiumError: Error, CustomStringConvertible {
    /// What went wrong.
    package var description: String
    /// An error saying `description`.
    package init(_ description: String) { self.description = description }
}

/// A headless Chromium process and its DevTools connection.
package final class Chromium: Sendable {
    /// Where the browser was found: `$CHROMIUM`, else the usual Debian/Ubuntu paths.
    package static func executable() -> String? {
        let env = ProcessInfo.processInfo.environment["CHROMIUM"].map { [$0] } ?? []
        return (env + ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"])
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private let pid: pid_t
    private let toBrowser: Int32
    private let fromBrowser: Int32
    private let profile: URL
    /// What the reader thread and the callers share: the next command id, replies by id and events (each as the
    /// browser's JSON text, parsed by whoever takes it), and whether the browser has gone.
    private struct Exchange: Sendable {
        var nextID = 1
        var replies: [Int: Data] = [:]
        var events: [(method: String, session: String?, message: Data)] = []
        var closed = false
    }
    private let exchange = Monitor(Exchange())
    /// The browser's standard error, for failure messages.
    package let logFile: URL

    /// Starts `executable` headless with a fresh profile, at a window size of `width`×`height`.
    package init(executable: String, width: Int = 1280, height: Int = 1000) throws {
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        logFile = profile.appendingPathComponent("chromium.log")
        var commands: [Int32] = [0, 0], replies: [Int32] = [0, 0]
        guard pipe(&commands) == 0, pipe(&replies) == 0 else { throw ChromiumError("pipe failed: errno \(errno)") }
        // Move every end above 4 and mark it close-on-exec, so the dup2s below cannot clobber each other and no
        // other child process inherits the browser's pipes.
        for i in 0..<2 {
            let c = fcntl(commands[i], F_DUPFD_CLOEXEC, 10), r = fcntl(replies[i], F_DUPFD_CLOEXEC, 10)
            close(commands[i]); close(replies[i])
            commands[i] = c; replies[i] = r
        }
        let args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--hide-scrollbars", "--mute-audio", "--force-device-scale-factor=1", "--window-size=\(width),\(height)",
            "--remote-debugging-pipe", "--user-data-dir=\(profile.path)", "about:blank",
        ]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_adddup2(&actions, commands[0], 3)
        posix_spawn_file_actions_adddup2(&actions, replies[1], 4)
        var cArgs = args.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, &cArgs, environ)
        close(commands[0]); close(replies[1])
        guard rc == 0 else {
            close(commands[1]); close(replies[0])
            throw ChromiumError("cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        pid = child
        toBrowser = commands[1]
        fromBrowser = replies[0]
        let reader = Thread { [self] in readLoop() }
        reader.start()
    }

    deinit { quit() }

    /// Closes the browser and removes its profile.
    package func quit() {
        let wasClosed = exchange.withLock { x in
            defer { x.closed = true }
            return x.closed
        }
        if wasClosed { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        close(toBrowser)
        close(fromBrowser)
        try? FileManager.default.removeItem(at: profile)
    }

    /// Sends a DevTools command and waits for its result; a protocol error is thrown.
    @discardableResult
    package func send(_ method: String, _ params: [String: Any] = [:], session: String? = nil, timeout: TimeInterval = 30) throws -> [String: Any] {
        let id = exchange.withLock { x in
            defer { x.nextID += 1 }
            return x.nextID
        }
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if let session { message["sessionId"] = session }
        var bytes = try JSONSerialization.data(withJSONObject: message)
        bytes.append(0)
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                let n = write(toBrowser, raw.baseAddress! + off, raw.count - off)
                if n <= 0 { return false }
                off += n
            }
            return true
        }
        guard ok else { throw ChromiumError("the browser's pipe is closed (\(method)); log: \(log())") }
        let deadline = Date().addingTimeInterval(timeout)
        guard
            let taken = exchange.wait(
                until: { $0.replies[id] != nil || $0.closed }, deadline: deadline,
                then: { $0.replies.removeValue(forKey: id) })
        else {
            throw ChromiumError("no reply to \(method) within \(Int(timeout)) s")
        }
        guard let text = taken, let reply = try JSONSerialization.jsonObject(with: text) as? [String: Any] else {
            throw ChromiumError("the browser exited during \(method); log: \(log())")
        }
        if let error = reply["error"] as? [String: Any] { throw ChromiumError("\(method): \(error["message"] ?? error)") }
        return reply["result"] as? [String: Any] ?? [:]
    }

    /// Opens a new tab and attaches to it.
    package func newPage() throws -> ChromiumPage {
        let target = try send("Target.createTarget", ["url": "about:blank"])
        guard let targetID = target["targetId"] as? String else { throw ChromiumError("no targetId in \(target)") }
        let attached = try send("Target.attachToTarget", ["targetId": targetID, "flatten": true])
        guard let session = attached["sessionId"] as? String else { throw ChromiumError("no sessionId in \(attached)") }
        let page = ChromiumPage(browser: self, session: session)
        try page.send("Page.enable")
        try page.send("Runtime.enable")
        return page
    }

    /// Waits for an event named `method` (of `session`, when given) that arrived since the last call consumed events.
    package func waitForEvent(_ method: String, session: String?, timeout: TimeInterval) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        let matches = { (e: (method: String, session: String?, message: Data)) in e.method == method && (session == nil || e.session == session) }
        guard
            let taken = exchange.wait(
                until: { $0.events.contains(where: matches) || $0.closed }, deadline: deadline,
                then: { x in x.events.firstIndex(where: matches).map { x.events.remove(at: $0).message } })
        else {
            throw ChromiumError("no \(method) within \(Int(timeout)) s")
        }
        guard let text = taken, let event = try JSONSerialization.jsonObject(with: text) as? [String: Any] else {
            throw ChromiumError("the browser exited while waiting for \(method)")
        }
        return event
    }

    /// Forgets the events received so far.
    package func clearEvents() {
        exchange.withLock { $0.events.removeAll() }
    }

    private func log() -> String {
        String((try? String(contentsOf: logFile, encoding: .utf8))?.suffix(2000) ?? "")
    }

    private func readLoop() {
        var pending = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fromBrowser, &buffer, buffer.count)
            if n <= 0 { break }
            pending.append(contentsOf: buffer[0..<n])
            while let nul = pending.firstIndex(of: 0) {
                let message = pending[pending.startIndex..<nul]
                pending = Data(pending[(nul + 1)...])
                guard let object = (try? JSONSerialization.jsonObject(with: message)) as? [String: Any] else { continue }
                let id = object["id"] as? Int, method = object["method"] as? String ?? "", session = object["sessionId"] as? String
                let text = Data(message)
                exchange.withLock { x in
                    if let id { x.replies[id] = text } else { x.events.append((method, session, text)) }
                    // Keep the event list bounded: tests wait for recent events only.
                    if x.events.count > 2000 { x.events.removeFirst(1000) }
                }
            }
        }
        exchange.withLock { $0.closed = true }
    }
}

/// One tab of a ``Chromium``.
package final class ChromiumPage: Sendable {
    /// The browser.
    package let browser: Chromium
    /// The DevTools session of this tab.
    package let session: String

    init(browser: Chromium, session: String) { self.browser = browser; self.session = session }

    /// Sends a command to this tab.
    @discardableResult
    package func send(_ method: String, _ params: [String: Any] = [:], timeout: TimeInterval = 30) throws -> [String: Any] {
        try browser.send(method, params, session: session, timeout: timeout)
    }

    /// Loads `url` and waits for its load event.
    package func navigate(_ url: String, timeout: TimeInterval = 30) throws {
        browser.clearEvents()
        let result = try send("Page.navigate", ["url": url])
        if let error = result["errorText"] as? String { throw ChromiumError("cannot load \(url): \(error)") }
        _ = try browser.waitForEvent("Page.loadEventFired", session: session, timeout: timeout)
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value.
    package func evaluate(_ expression: String) throws -> Any? {
        let result = try send("Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true])
        if let exception = result["exceptionDetails"] as? [String: Any] {
            let text = (exception["exception"] as? [String: Any])?["description"] ?? exception["text"] ?? exception
            throw ChromiumError("script failed: \(text)")
        }
        return (result["result"] as? [String: Any])?["value"]
    }

    /// Polls `condition` (a JavaScript expression) until it is true; a safety timeout, not a measurement.
    package func waitUntil(_ condition: String, timeout: TimeInterval = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try evaluate("Boolean(\(condition))") as? Bool == true { return }
            usleep(50_000)
        }
        throw ChromiumError("still false after \(Int(timeout)) s: \(condition)")
    }

    /// Scrolls the element matching `selector` into view and clicks it with the mouse at its centre (mouse events
    /// outside the viewport hit nothing).
    package func click(_ selector: String) throws {
        guard
            let box = try evaluate(
                """
                (() => { const e = document.querySelector(\(jsString(selector))); e.scrollIntoView({block: 'center'});
                         const r = e.getBoundingClientRect();
                         return [r.left + r.width / 2, r.top + r.height / 2]; })()
                """) as? [Double], box.count == 2
        else { throw ChromiumError("no element \(selector)") }
        for type in ["mousePressed", "mouseReleased"] {
            try send("Input.dispatchMouseEvent", ["type": type, "x": box[0], "y": box[1], "button": "left", "clickCount": 1])
        }
    }

    /// Types `text` into the focused element as keyboard input (IME-style insertion, as Chinese text is entered).
    package func type(_ text: String) throws {
        try send("Input.insertText", ["text": text])
    }

    /// Presses a key such as Enter on the focused element.
    package func press(key: String, code: Int) throws {
        try send(
            "Input.dispatchKeyEvent", ["type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code, "text": key == "Enter" ? "\r" : ""])
        try send("Input.dispatchKeyEvent", ["type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code])
    }

    /// Chooses `files` in the `<input type=file>` matching `selector`, as a user picking them would (fires `change`).
    package func setFiles(_ selector: String, _ files: [String]) throws {
        let document = try send("DOM.getDocument", ["depth": 0])
        guard let root = (document["root"] as? [String: Any])?["nodeId"] as? Int else { throw ChromiumError("no document") }
        let node = try send("DOM.querySelector", ["nodeId": root, "selector": selector])
        guard let id = node["nodeId"] as? Int, id != 0 else { throw ChromiumError("no element \(selector)") }
        try send("DOM.setFileInputFiles", ["files": files, "nodeId": id])
    }

    /// Saves a PNG screenshot of the whole page to `url`.
    package func screenshot(to url: URL) throws {
        let shot = try send("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true])
        guard let b64 = shot["data"] as? String, let data = Data(base64Encoded: b64) else { throw ChromiumError("no screenshot data") }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }
}

/// `s` as a JavaScript string literal.
package func jsString(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s])
    let array = String(decoding: data, as: UTF8.self)
    return String(array.dropFirst().dropLast())
}
