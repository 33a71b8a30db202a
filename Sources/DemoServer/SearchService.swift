// What the demo does, without HTTP: search the gallery by text or by image, and classify an image zero-shot.
// One model and one gallery are loaded once and shared; each kind of work has its own batching worker.

import ChineseCLIP
import Evaluation
import Foundation
import Gallery
import Imaging
import Tensors
import Tokenization

/// Limits the service enforces on its inputs.
package struct ServiceLimits: Sendable {
    /// Longest query, in characters (a longer one is an error rather than silently cut at the context length).
    package var maxQueryCharacters = 200
    /// Most results one request may ask for.
    package var maxResults = 100
    /// Most labels in one classification.
    package var maxLabels = 64
    /// Most templates in one classification.
    package var maxTemplates = 16
    /// Longest label or template, in characters.
    package var maxLabelCharacters = 100
    /// Largest decoded image, in pixels (a guard against decompression bombs).
    package var maxImagePixels = 40_000_000
    /// Most jobs encoded in one batch.
    package var maxBatch = 32

    /// The defaults.
    package init() {}
}

/// A request the service refuses, with the HTTP status and a stable code the API reports.
package struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// HTTP status code.
    package var status: Int
    /// Machine-readable reason (`empty_query`, `not_an_image`, …).
    package var code: String
    /// Human-readable reason.
    package var message: String

    /// An error with `status`, `code` and `message`.
    package init(_ status: Int, _ code: String, _ message: String) { self.status = status; self.code = code; self.message = message }

    /// `code: message`.
    package var description: String { "\(code): \(message)" }
}

/// One image result.
package struct ImageResult: Sendable, Equatable {
    /// Gallery row (also the thumbnail's name).
    package var row: Int
    /// The image's id as json.dumps renders it.
    package var id: String
    /// Inner product of the normalised features.
    package var score: Float
}

/// One caption result.
package struct CaptionResult: Sendable, Equatable {
    /// Caption row.
    package var row: Int
    /// Its text_id as json.dumps renders it.
    package var id: String
    /// The caption.
    package var text: String
    /// Inner product of the normalised features.
    package var score: Float
}

/// One class of a zero-shot classification.
package struct LabelResult: Sendable, Equatable {
    /// The label as given.
    package var label: String
    /// Its softmax probability.
    package var probability: Float
}

/// The retrieval demo's engine: a model, a gallery and three batching workers.
package final class SearchService: Sendable {
    /// The model.
    package let model: ChineseCLIPModel
    /// The gallery.
    package let gallery: GalleryIndex
    /// Input limits.
    package let limits: ServiceLimits
    /// Tokens per query text.
    package let contextLength: Int
    /// Whether searches use the FAISS index (when the gallery has one).
    package let approximate: Bool
    let textWorker: BatchWorker<TextJob, [ImageResult]>
    let imageWorker: BatchWorker<ImageJob, ([ImageResult], [CaptionResult])>
    let classifyWorker: BatchWorker<ClassifyJob, [LabelResult]>

    struct TextJob: Sendable { var text: String; var k: Int }
    struct ImageJob: Sendable { var pixels: [Float]; var k: Int; var captions: Int }
    struct ClassifyJob: Sendable { var pixels: [Float]; var labels: [String]; var templates: [String] }

    /// A service over `gallery` with `model`, which must be the model the gallery was built with.
    package init(
        model: ChineseCLIPModel, gallery: GalleryIndex, limits: ServiceLimits = ServiceLimits(),
        contextLength: Int? = nil, approximate: Bool = true
    ) throws {
        let contextLength = contextLength ?? gallery.manifest.contextLength
        guard contextLength >= 2, contextLength <= model.config.textMaxPositionEmbeddings else {
            throw GalleryError.invalidArgument("context length \(contextLength) is outside 2…\(model.config.textMaxPositionEmbeddings)")
        }
        try gallery.checkModel(model)
        self.model = model
        self.gallery = gallery
        self.limits = limits
        self.contextLength = contextLength
        let useApproximate = approximate && gallery.approximate != nil
        self.approximate = useApproximate
        let dim = gallery.dim, resolution = model.resolution
        textWorker = BatchWorker(name: "cnclip-text", maxBatch: limits.maxBatch) { jobs in
            // The reference's text preparation (lower-case, curly quotes), as extract-features applies it.
            let tokens = model.tokenize(jobs.map { Tokenizer.prepareCaption($0.text) }, contextLength: contextLength)
            let features = model.encodeTexts(tokens: tokens, count: jobs.count, normalized: true)
            let k = jobs.map(\.k).max() ?? 0
            return Self.results(features, count: jobs.count, dim: dim) { q in
                try gallery.searchImages(q, queryCount: jobs.count, k: k, approximate: useApproximate)
            }.enumerated().map { i, r in r.map { Array($0.prefix(jobs[i].k)).map { Self.image($0, gallery) } } }
        }
        imageWorker = BatchWorker(name: "cnclip-image", maxBatch: limits.maxBatch) { jobs in
            let input = Tensor(shape: [jobs.count, 3, resolution, resolution], scalars: Array(jobs.map(\.pixels).joined()))
            let features = model.encodeImages(preprocessed: input, normalized: true)
            let k = jobs.map(\.k).max() ?? 0, kc = jobs.map(\.captions).max() ?? 0
            let images = Self.results(features, count: jobs.count, dim: dim) { q in
                try gallery.searchImages(q, queryCount: jobs.count, k: k, approximate: useApproximate)
            }
            let captions = features.withUnsafeBufferPointer { gallery.searchCaptions($0, queryCount: jobs.count, k: kc) }
            return images.enumerated().map { i, r in
                r.map { hits in
                    (
                        Array(hits.prefix(jobs[i].k)).map { Self.image($0, gallery) },
                        Array(captions[i].prefix(jobs[i].captions)).map {
                            CaptionResult(row: $0.row, id: gallery.captions[$0.row].id, text: gallery.captions[$0.row].text, score: $0.score)
                        }
                    )
                }
            }
        }
        classifyWorker = BatchWorker(name: "cnclip-classify", maxBatch: 1) { jobs in
            jobs.map { job in
                // All prompts of all labels in one encode call.
                let prompts = job.labels.flatMap { ZeroShotClassifier.prompts(label: $0, templates: job.templates) }
                let features = model.encodeTexts(
                    tokens: model.tokenize(prompts, contextLength: contextLength), count: prompts.count, normalized: true)
                let classifier = ZeroShotClassifier(classNames: job.labels, promptFeatures: features, promptsPerClass: job.templates.count)
                let image = model.encodeImages(preprocessed: Tensor(shape: [1, 3, resolution, resolution], scalars: job.pixels), normalized: true)
                let p = classifier.probabilities(imageFeatures: image).scalars
                return .success(zip(job.labels, p).map { LabelResult(label: $0, probability: $1) })
            }
        }
    }

    deinit {
        textWorker.stop(); imageWorker.stop(); classifyWorker.stop()
    }

    /// The best `k` gallery images for a Chinese (or any) text query.
    package func searchText(_ query: String, k: Int) async throws -> [ImageResult] {
        let text = query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw ServiceError(400, "empty_query", "the query is empty") }
        guard text.count <= limits.maxQueryCharacters else {
            throw ServiceError(400, "query_too_long", "the query has \(text.count) characters; the limit is \(limits.maxQueryCharacters)")
        }
        try checkK(k, name: "k")
        return try await textWorker.submit(TextJob(text: text, k: k))
    }

    /// The best `k` gallery images and `captions` captions for an image file's bytes (JPEG, PNG or WebP).
    package func searchImage(_ data: Data, k: Int, captions: Int) async throws -> (images: [ImageResult], captions: [CaptionResult]) {
        try checkK(k, name: "k")
        try checkK(captions, name: "captions")
        let pixels = try preprocess(data)
        let (images, caps) = try await imageWorker.submit(ImageJob(pixels: pixels, k: k, captions: captions))
        return (images, caps)
    }

    /// Zero-shot class probabilities of an image for `labels`, each filled into every template (`{}` marks the label).
    package func classify(_ data: Data, labels: [String], templates: [String]) async throws -> [LabelResult] {
        let labels = labels.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard !labels.isEmpty else { throw ServiceError(400, "no_labels", "give at least one label") }
        guard labels.count <= limits.maxLabels else { throw ServiceError(400, "too_many_labels", "at most \(limits.maxLabels) labels") }
        if labels.contains(where: \.isEmpty) { throw ServiceError(400, "empty_label", "a label is empty") }
        guard !templates.isEmpty else { throw ServiceError(400, "no_templates", "give at least one template") }
        guard templates.count <= limits.maxTemplates else {
            throw ServiceError(400, "too_many_templates", "at most \(limits.maxTemplates) templates")
        }
        for t in labels + templates where t.count > limits.maxLabelCharacters {
            throw ServiceError(400, "label_too_long", "labels and templates have at most \(limits.maxLabelCharacters) characters")
        }
        for t in templates where !t.contains("{}") {
            throw ServiceError(400, "bad_template", "a template needs {} where the label goes: \(t)")
        }
        let pixels = try preprocess(data)
        return try await classifyWorker.submit(ClassifyJob(pixels: pixels, labels: labels, templates: templates))
    }

    /// Batch sizes the text and image workers have run (size → count).
    package var batchSizeCounts: (text: [Int: Int], image: [Int: Int]) { (textWorker.batchSizeCounts, imageWorker.batchSizeCounts) }

    // MARK: Helpers

    private func checkK(_ k: Int, name: String) throws {
        guard k >= 1, k <= limits.maxResults else {
            throw ServiceError(400, "bad_\(name)", "\(name) must be between 1 and \(limits.maxResults)")
        }
    }

    /// Decodes and preprocesses an upload on the caller's thread (requests decode in parallel; the worker only encodes).
    private func preprocess(_ data: Data) throws -> [Float] {
        guard !data.isEmpty else { throw ServiceError(400, "empty_upload", "the request has no image") }
        guard Image.format(of: data) != nil else {
            throw ServiceError(415, "not_an_image", "the upload is not a JPEG, PNG or WebP image")
        }
        let image: Image
        do { image = try Image(data: data, name: "upload", maxPixels: limits.maxImagePixels) } catch {
            // Refused from the header, before any pixel memory is taken.
            if let error = error as? ImageError, case .tooManyPixels(let width, let height, let limit) = error.reason {
                throw ServiceError(413, "image_too_large", "the image has \(width)×\(height) pixels; the limit is \(limit)")
            }
            throw ServiceError(400, "bad_image", "the image cannot be decoded: \(error)")
        }
        return image.preprocess(resolution: model.resolution)
    }

    static func image(_ hit: GalleryHit, _ gallery: GalleryIndex) -> ImageResult {
        ImageResult(row: hit.row, id: gallery.ids[hit.row], score: hit.score)
    }

    static func results(
        _ features: Tensor, count: Int, dim: Int,
        _ search: (UnsafeBufferPointer<Float>) throws -> [[GalleryHit]]
    ) -> [Result<[GalleryHit], Error>] {
        do {
            let hits = try features.withUnsafeBufferPointer { try search($0) }
            return hits.map { .success($0) }
        } catch {
            return Array(repeating: .failure(error), count: count)
        }
    }
}
