// The retrieval demo over HTTP (Hummingbird): a page at `/`, a JSON API under `/api/`, thumbnails under
// `/thumbnails/`. Every refusal is a JSON body `{"error": {"status": …, "code": …, "message": …}}` with a 4xx
// status; the API is documented in the README ("检索服务" / "Retrieval service").
//
// JSON is read and written with Essentials' PyJSON (the parser reports the column of a syntax error; the writer
// escapes non-ASCII, which every client reads).

import Essentials
import Foundation
import Gallery
import Hummingbird
import Logging
import NIOCore

/// How the server listens and what it accepts.
package struct DemoServerConfiguration: Sendable {
    /// Address to bind (`127.0.0.1` keeps the demo on this machine).
    package var host = "127.0.0.1"
    /// Port (0 picks a free one; the bound port is reported to `onRunning`).
    package var port = 8080
    /// Largest request body (image upload or JSON), in bytes; larger ones get 413.
    package var maxBodyBytes = 8 << 20
    /// Results per search when a request does not say.
    package var defaultResults = 12
    /// Captions per image search when a request does not say.
    package var defaultCaptions = 5
    /// The template the page suggests for zero-shot classification.
    package var defaultTemplate = "一张{}的图片。"
    /// Seconds a connection may sit without a request (keep-alive between requests, or a client that stops sending
    /// its request head) before it is closed; nil keeps idle connections open.
    package var idleTimeout: Double? = 30
    /// Seconds a request body may take to arrive (a client trickling bytes holds a connection no longer); 408 after.
    package var bodyTimeout: Double = 30

    /// The defaults.
    package init() {}
}

/// Builds and runs the demo's HTTP application.
package enum DemoServer {
    /// The Hummingbird application serving `service`; `onRunning` receives the bound port once listening.
    package static func application(
        service: SearchService, configuration: DemoServerConfiguration,
        logger: Logger? = nil,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        let api = DemoAPI(service: service, configuration: configuration)
        router.get("/") { _, _ in try api.page() }
        router.get("/index.html") { _, _ in try api.page() }
        router.get("/healthz") { _, _ in api.json(obj(["status": .string("ok")])) }
        router.get("/api/info") { _, _ in api.info() }
        router.get("/api/search/text") { request, _ in try await api.searchText(request) }
        router.post("/api/search/text") { request, _ in try await api.searchText(request) }
        router.post("/api/search/image") { request, _ in try await api.searchImage(request) }
        router.post("/api/classify") { request, _ in try await api.classify(request) }
        // One catch-all route, so that every malformed name (`..`, `%2e%2e`, `5/../../x`) gets the same clear 400.
        router.get("/thumbnails/**") { _, context in try api.thumbnail(context.parameters.getCatchAll().joined(separator: "/")) }
        var log = logger ?? Logger(label: "cnclip.serve")
        if logger == nil { log.logLevel = .warning }
        let idle = configuration.idleTimeout.map { TimeAmount.nanoseconds(Int64($0 * 1e9)) }
        return Application(
            router: router,
            server: .http1(configuration: .init(idleTimeout: idle)),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "cnclip"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? configuration.port) },
            logger: log)
    }
}

/// The request handlers, separate from routing so each reads as what the endpoint does.
struct DemoAPI: Sendable {
    let service: SearchService
    let configuration: DemoServerConfiguration

    func page() throws -> Response {
        guard let url = Bundle.module.url(forResource: "index", withExtension: "html"), let data = FileManager.default.contents(atPath: url.path)
        else {
            throw ServiceError(500, "missing_page", "the page is missing from the DemoServer bundle")
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func info() -> Response {
        let gallery = service.gallery
        return json(
            obj([
                "images": (.int(Int64(gallery.count))),
                "captions": (.int(Int64(gallery.captions.count))),
                "dim": (.int(Int64(gallery.dim))),
                "index": (.string(indexName)),
                "context_length": (.int(Int64(service.contextLength))),
                "max_body_bytes": (.int(Int64(configuration.maxBodyBytes))),
                "max_query_characters": (.int(Int64(service.limits.maxQueryCharacters))),
                "max_results": (.int(Int64(service.limits.maxResults))),
                "default_results": (.int(Int64(configuration.defaultResults))),
                "default_template": (.string(configuration.defaultTemplate)),
            ]))
    }

    var indexName: String {
        service.approximate ? "faiss:" + (service.gallery.manifest.approximate?.factory ?? "?") : "flat"
    }

    /// `GET /api/search/text?q=…&k=…` or `POST` with `{"query": "…", "k": 12}`.
    func searchText(_ request: Request) async throws -> Response {
        let query: String, k: Int
        if request.method == .get {
            let params = request.uri.queryParameters
            guard let q = params["q"] else { throw ServiceError(400, "empty_query", "give the query as ?q=…") }
            query = String(q)
            k = try intParameter(params["k"], name: "k", default: configuration.defaultResults)
        } else {
            let body = try await jsonBody(request)
            guard case .string(let q)? = body["query"] else { throw ServiceError(400, "empty_query", "the body needs \"query\": a string") }
            query = q
            k = try intField(body["k"], name: "k", default: configuration.defaultResults)
        }
        let results = try await service.searchText(query, k: k)
        return json(
            obj([
                "query": (.string(query)),
                "index": (.string(indexName)),
                "results": (.array(results.enumerated().map { imageJSON($1, rank: $0 + 1) })),
            ]))
    }

    /// `POST /api/search/image?k=…&captions=…` with the image file as the body.
    func searchImage(_ request: Request) async throws -> Response {
        let params = request.uri.queryParameters
        let k = try intParameter(params["k"], name: "k", default: configuration.defaultResults)
        let captions = try intParameter(params["captions"], name: "captions", default: configuration.defaultCaptions)
        let data = try await body(request)
        let (images, caps) = try await service.searchImage(data, k: k, captions: captions)
        return json(
            obj([
                "index": (.string(indexName)),
                "results": (.array(images.enumerated().map { imageJSON($1, rank: $0 + 1) })),
                "captions":
                    (.array(
                        caps.enumerated().map { r, c in
                            obj([
                                "rank": (.int(Int64(r + 1))), "row": (.int(Int64(c.row))), "id": (idJSON(c.id)),
                                "text": (.string(c.text)), "score": (.float(Double(c.score))),
                            ])
                        })),
            ]))
    }

    /// `POST /api/classify` with `{"image": BASE64, "labels": […], "template": "…{}…"}` (or `"templates": […]`).
    func classify(_ request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        guard case .string(let b64)? = body["image"] else {
            throw ServiceError(400, "empty_upload", "the body needs \"image\": the image file in base64")
        }
        let image: Data
        do { image = Data(try Base64.decode(Array(b64.utf8))) } catch { throw ServiceError(400, "bad_base64", "\"image\" is not base64: \(error)") }
        guard case .array(let rawLabels)? = body["labels"] else {
            throw ServiceError(400, "no_labels", "the body needs \"labels\": a list of strings")
        }
        let labels = try rawLabels.map { v -> String in
            guard case .string(let s) = v else { throw ServiceError(400, "bad_label", "every label must be a string") }
            return s
        }
        var templates: [String]
        switch (body["template"], body["templates"]) {
        case (.string(let t)?, nil): templates = [t]
        case (nil, .array(let list)?):
            templates = try list.map { v in
                guard case .string(let s) = v else { throw ServiceError(400, "bad_template", "every template must be a string") }
                return s
            }
        case (nil, nil): templates = [configuration.defaultTemplate]
        default: throw ServiceError(400, "bad_template", "give \"template\" (a string) or \"templates\" (a list of strings), not both")
        }
        let results = try await service.classify(image, labels: labels, templates: templates)
        let ranked = results.enumerated().sorted {
            $0.element.probability > $1.element.probability || ($0.element.probability == $1.element.probability && $0.offset < $1.offset)
        }
        return json(
            obj([
                "templates": (.array(templates.map { .string($0) })),
                "labels":
                    (.array(
                        ranked.map { _, r in
                            obj(["label": (.string(r.label)), "probability": (.float(Double(r.probability)))])
                        })),
            ]))
    }

    /// `GET /thumbnails/ROW` (or `ROW.jpg`): only decimal row numbers are names; anything else is refused.
    func thumbnail(_ name: String) throws -> Response {
        let stem = name.hasSuffix(".jpg") ? String(name.dropLast(4)) : name
        guard !stem.isEmpty, stem.count <= 12, stem.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let row = Int(stem) else {
            throw ServiceError(400, "bad_thumbnail_name", "a thumbnail is named by its gallery row number, e.g. /thumbnails/12")
        }
        guard let data = try service.gallery.thumbnail(row: row) else {
            throw ServiceError(404, "no_such_thumbnail", "the gallery has rows 0…\(service.gallery.count - 1)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "image/jpeg"
        headers[.cacheControl] = "public, max-age=86400"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: Helpers

    func imageJSON(_ r: ImageResult, rank: Int) -> PyJSON {
        obj([
            "rank": (.int(Int64(rank))), "row": (.int(Int64(r.row))), "id": (idJSON(r.id)),
            "score": (.float(Double(r.score))), "thumbnail": (.string("/thumbnails/\(r.row)")),
        ])
    }

    /// An id's json.dumps rendering back as a value (ints stay ints, paths stay strings).
    func idJSON(_ rendered: String) -> PyJSON { (try? PyJSONParser.parse(rendered)) ?? .string(rendered) }

    func json(_ value: PyJSON, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        var out = [UInt8]()
        pythonDumps(value, into: &out)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: out)))
    }

    /// The request body, refusing more than `maxBodyBytes` with 413 (by its declared length first, so a huge upload
    /// is refused before it is read).
    func body(_ request: Request) async throws -> Data {
        let limit = configuration.maxBodyBytes
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > limit {
            throw ServiceError(413, "too_large", "the body has \(declared) bytes; the limit is \(limit)")
        }
        let seconds = configuration.bodyTimeout
        do {
            // The body is read in a child task that a deadline cancels: a slow client holds its connection for at most
            // `bodyTimeout` seconds (the idle timeout alone restarts with every byte that arrives).
            var buffer = try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
                group.addTask { try await request.body.collect(upTo: limit) }
                group.addTask {
                    try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let buffer = first else {
                    throw ServiceError(408, "request_timeout", "the body did not arrive within \(seconds) seconds")
                }
                return buffer
            }
            return Data(buffer.readBytes(length: buffer.readableBytes) ?? [])
        } catch is NIOTooManyBytesError {
            throw ServiceError(413, "too_large", "the body is larger than the limit of \(limit) bytes")
        }
    }

    func jsonBody(_ request: Request) async throws -> PyJSON {
        let data = try await body(request)
        guard !data.isEmpty else { throw ServiceError(400, "bad_json", "the body is empty; send a JSON object") }
        let value: PyJSON
        do { value = try data.withUnsafeBytes { try PyJSONParser.parse($0.bindMemory(to: UInt8.self)) } } catch {
            throw ServiceError(400, "bad_json", "the body is not valid JSON: \(error)")
        }
        guard case .object = value else { throw ServiceError(400, "bad_json", "the body must be a JSON object") }
        return value
    }

    func intParameter(_ raw: Substring?, name: String, default value: Int) throws -> Int {
        guard let raw else { return value }
        guard let n = Int(raw) else { throw ServiceError(400, "bad_\(name)", "\(name) must be an integer") }
        return n
    }

    func intField(_ v: PyJSON?, name: String, default value: Int) throws -> Int {
        switch v {
        case nil: return value
        case .int(let n)?: return Int(clamping: n)
        default: throw ServiceError(400, "bad_\(name)", "\"\(name)\" must be an integer")
        }
    }
}

extension ServiceError {
    /// The HTTP status.
    var httpStatus: HTTPResponse.Status { HTTPResponse.Status(code: status) }
}

/// `{"error": {"status", "code", "message"}}` with `status`.
func errorResponse(status: HTTPResponse.Status, code: String, message: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json; charset=utf-8"
    var out = [UInt8]()
    pythonDumps(
        obj([
            "error":
                (obj([
                    "status": (.int(Int64(status.code))), "code": (.string(code)), "message": (.string(message)),
                ]))
        ]), into: &out)
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: out)))
}

/// Turns every error (unknown routes, Hummingbird's own refusals, our ServiceError, anything unexpected) into the
/// JSON error body, so a client never has to parse HTML or an empty body.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as ServiceError {
            return errorResponse(status: e.httpStatus, code: e.code, message: e.message)
        } catch is NIOTooManyBytesError {
            return errorResponse(status: .contentTooLarge, code: "too_large", message: "the body is too large")
        } catch let e as HTTPError {
            let code = e.status == .notFound ? "not_found" : "http_\(e.status.code)"
            return errorResponse(status: e.status, code: code, message: e.body ?? e.status.reasonPhrase)
        } catch let e as UserFacingError where e is GalleryError || e is FileError {
            context.logger.error("gallery error: \(e)")
            return errorResponse(status: .internalServerError, code: "internal", message: e.description)
        } catch {
            context.logger.error("unexpected error: \(error)")
            return errorResponse(status: .internalServerError, code: "internal", message: "internal error")
        }
    }
}

/// A JSON object from key-value pairs, in their order (a typed parameter keeps literals quick to type-check).
func obj(_ pairs: KeyValuePairs<String, PyJSON>) -> PyJSON { .object(pairs.map { (key: $0.key, value: $0.value) }) }
