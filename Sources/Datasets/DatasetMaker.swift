// Makes a dataset in the reference's layout (`{split}_imgs.tsv` + `{split}_texts.jsonl`) from a folder of images
// and a captions file — the step cn-clip leaves to its users. Choices (documented in `cnclip make-dataset --help`):
//   - captions: CSV with a header naming `image_path` (or `image`) and `caption` columns (RFC 4180 quoting within a
//     line), or JSONL objects with `image` (or `image_path`) and `caption`; paths are relative to the image folder;
//   - ids: images get 1, 2, … in order of first appearance in the captions file; texts get 1, 2, … in order of
//     first appearance of their (split, caption); identical captions of several images in one split become one
//     text with several `image_ids`, as in the reference's datasets;
//   - splits: images (not captions, so no image straddles two splits) are shuffled with SplitMix64 seeded by
//     `seed` and cut by the ratios (train and valid rounded, test takes the rest); a split with ratio 0 is not written;
//   - images: every file is decoded to check it; without `resize` the TSV holds the file's own bytes, with it the
//     image is scaled so its shorter side is `resize` px (aspect ratio kept, bicubic as Pillow does it, never
//     enlarged), converted to RGB and stored as JPEG (quality 95);
//   - output: written into a temporary directory inside the output directory and renamed into place at the end.

import Essentials
import Foundation
import Imaging

/// One caption line: an image path and its caption.
package struct CaptionRecord: Equatable, Sendable {
    /// The image path as written in the captions file.
    package var image: String
    /// The caption.
    package var caption: String
    /// The 1-based line of the captions file it came from.
    package var line: Int
}

/// What `DatasetMaker.make` wrote for one split.
package struct MadeSplit: Equatable, Sendable {
    /// The split name.
    package var split: String
    /// Images in `{split}_imgs.tsv`.
    package var images: Int
    /// Texts in `{split}_texts.jsonl`.
    package var texts: Int
}

/// Turns an image folder and a captions file into `{split}_imgs.tsv` and `{split}_texts.jsonl`.
package struct DatasetMaker {
    /// The folder image paths are relative to.
    package var imagesDirectory: String
    /// The CSV or JSONL captions file.
    package var captionsFile: String
    /// Where the TSV/JSONL files go.
    package var outputDirectory: String
    /// Split names and their weights, e.g. `[("train", 8), ("valid", 1), ("test", 1)]`.
    package var splits: [(name: String, ratio: Double)] = [("train", 1)]
    /// Seed of the image shuffle.
    package var seed: UInt64 = 0
    /// Shorter side in pixels for re-encoded JPEGs; nil keeps the original files.
    package var resize: Int?
    /// JPEG quality when resizing.
    package var jpegQuality = 95
    /// Called after each image with (images done, total).
    package var progress: ((Int, Int) -> Void)?
    /// Called with the temporary directory when it is created and with nil once it is gone (for signal handlers).
    package var temporaryDirectoryChanged: ((String?) -> Void)?

    /// A maker reading `captionsFile` and `imagesDirectory`, writing into `outputDirectory`.
    package init(imagesDirectory: String, captionsFile: String, outputDirectory: String) {
        self.imagesDirectory = imagesDirectory
        self.captionsFile = captionsFile
        self.outputDirectory = outputDirectory
    }

    /// Parses `--split-ratio`: "0.8,0.1,0.1" or "8:1:1" → train/valid/test weights (one or two numbers also work).
    package static func parseRatios(_ text: String) throws -> [(name: String, ratio: Double)] {
        let parts = text.split(whereSeparator: { $0 == "," || $0 == ":" }).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard (1...3).contains(parts.count), parts.allSatisfy({ $0 != nil && $0! >= 0 && $0!.isFinite }),
            parts.reduce(0, { $0 + $1! }) > 0
        else {
            throw DatasetError.invalidArgument(
                "--split-ratio '\(text)': expected up to three non-negative numbers for train,valid,test, e.g. 0.8,0.1,0.1")
        }
        return zip(["train", "valid", "test"], parts.map { $0! }).map { (name: $0, ratio: $1) }
    }

    /// Reads the captions file (CSV with a header, or JSONL by extension or first character).
    package func readCaptions() throws -> [CaptionRecord] {
        let reader = LineReader(path: captionsFile)
        var records: [CaptionRecord] = []
        let isJSONL = captionsFile.lowercased().hasSuffix(".jsonl") || captionsFile.lowercased().hasSuffix(".json")
        if isJSONL {
            try JSONLReader(path: captionsFile).forEach { object, line, _ in
                guard case .string(let image)? = object["image"] ?? object["image_path"] else {
                    throw DatasetError.malformedLine(file: captionsFile, line: line, reason: "field 'image' (a path string) is missing")
                }
                guard case .string(let caption)? = object["caption"] ?? object["text"] else {
                    throw DatasetError.malformedLine(file: captionsFile, line: line, reason: "field 'caption' (a string) is missing")
                }
                records.append(CaptionRecord(image: image, caption: caption, line: line))
            }
            return records
        }
        var columns: (image: Int, caption: Int, count: Int)?
        try reader.forEachLine { raw, line, _ in
            var text = String(decoding: raw, as: UTF8.self)
            if line == 1, text.hasPrefix("\u{FEFF}") { text.removeFirst() }  // a BOM from spreadsheet exports
            if text.trimmingCharacters(in: .whitespaces).isEmpty { return }
            let fields: [String]
            do { fields = try Self.csvFields(text) } catch {
                throw DatasetError.malformedLine(file: captionsFile, line: line, reason: "\(error)")
            }
            guard let cols = columns else {
                let names = fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                guard let i = names.firstIndex(where: { $0 == "image_path" || $0 == "image" }),
                    let c = names.firstIndex(of: "caption")
                else {
                    throw DatasetError.malformedLine(
                        file: captionsFile, line: line,
                        reason: "expected a header naming the columns image_path and caption, got \(names)")
                }
                columns = (i, c, fields.count)
                return
            }
            guard fields.count == cols.count else {
                throw DatasetError.malformedLine(
                    file: captionsFile, line: line,
                    reason: "\(fields.count) fields where the header has \(cols.count) (quote captions holding commas)")
            }
            records.append(CaptionRecord(image: fields[cols.image], caption: fields[cols.caption], line: line))
        }
        if columns == nil { throw DatasetError.malformedLine(file: captionsFile, line: 1, reason: "empty captions file") }
        return records
    }

    /// The fields of one CSV line (RFC 4180 quoting; a quoted field may not span lines).
    static func csvFields(_ line: String) throws -> [String] {
        var fields: [String] = [], field = "", quoted = false, wasQuoted = false
        var it = Array(line).makeIterator()
        var pending: Character? = nil
        while let c = pending ?? it.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    if let n = it.next() { if n == "\"" { field.append("\"") } else { quoted = false; pending = n } } else { quoted = false }
                } else {
                    field.append(c)
                }
            } else if c == "\"" && field.isEmpty && !wasQuoted {
                quoted = true; wasQuoted = true
            } else if c == "," {
                fields.append(field); field = ""; wasQuoted = false
            } else {
                field.append(c)
            }
        }
        if quoted { throw DatasetError.invalidArgument("unterminated quoted field (a caption may not span lines)") }
        fields.append(field)
        return fields
    }

    /// Writes the splits; on error nothing in the output directory has changed.
    @discardableResult
    package func make() throws -> [MadeSplit] {
        let fm = FileManager.default
        let records = try readCaptions()
        guard !records.isEmpty else { throw DatasetError.malformedLine(file: captionsFile, line: 1, reason: "no captions") }
        // Images in order of first appearance; each keeps the line that first named it for error messages.
        var imageIndex: [String: Int] = [:]
        var images: [(path: String, resolved: String, line: Int)] = []
        for r in records where imageIndex[r.image] == nil {
            imageIndex[r.image] = images.count
            let resolved = r.image.hasPrefix("/") ? r.image : (imagesDirectory as NSString).appendingPathComponent(r.image)
            images.append((r.image, resolved, r.line))
        }
        // Deterministic split assignment.
        var order = Array(images.indices)
        var rng = SplitMix64(seed: seed)
        order.shuffle(using: &rng)
        let total = splits.reduce(0) { $0 + $1.ratio }
        var splitOf = [Int](repeating: 0, count: images.count)
        var cursor = 0
        for (s, split) in splits.enumerated() {
            let n =
                s == splits.count - 1
                ? order.count - cursor
                : min(order.count - cursor, Int((Double(order.count) * split.ratio / total).rounded()))
            for i in order[cursor..<cursor + n] { splitOf[i] = s }
            cursor += n
        }
        // Texts per split, merged by caption.
        var texts: [[(id: Int, caption: String, images: [Int])]] = Array(repeating: [], count: splits.count)
        var textIndex: [[String: Int]] = Array(repeating: [:], count: splits.count)
        var nextText = 1
        for r in records {
            let img = imageIndex[r.image]!, s = splitOf[img]
            if let t = textIndex[s][r.caption] {
                if !texts[s][t].images.contains(img + 1) { texts[s][t].images.append(img + 1) }
            } else {
                textIndex[s][r.caption] = texts[s].count
                texts[s].append((nextText, r.caption, [img + 1]))
                nextText += 1
            }
        }

        do { try fm.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true) } catch {
            throw FileError(path: outputDirectory, reason: "cannot create: \(error.localizedDescription)")
        }
        let tmp = try AtomicOutput.workingFolder(in: outputDirectory, purpose: "make-dataset")
        temporaryDirectoryChanged?(tmp)
        defer { try? fm.removeItem(atPath: tmp); temporaryDirectoryChanged?(nil) }
        var made: [MadeSplit] = []
        var done = 0
        let active = splits.indices.filter { s in splits[s].ratio > 0 }
        for s in active {
            let name = splits[s].name
            let tsvPath = (tmp as NSString).appendingPathComponent("\(name)_imgs.tsv")
            let tsv = try OutputFile(path: tsvPath)
            var count = 0
            for i in images.indices where splitOf[i] == s {
                let img = images[i]
                let bytes = try encodedImage(img.resolved, shown: img.path, line: img.line)
                try tsv.write("\(i + 1)\t")
                try tsv.write(bytes.base64EncodedString())
                try tsv.write("\n")
                count += 1
                done += 1
                progress?(done, images.count)
            }
            try tsv.close()
            let jsonl = try OutputFile(path: (tmp as NSString).appendingPathComponent("\(name)_texts.jsonl"))
            for t in texts[s] {
                try jsonl.write(
                    "{\"text_id\": \(t.id), \"text\": \(PythonJSON.string(t.caption, ensureASCII: false)), \"image_ids\": [\(t.images.map(String.init).joined(separator: ", "))]}\n"
                )
            }
            try jsonl.close()
            made.append(MadeSplit(split: name, images: count, texts: texts[s].count))
        }
        let files = active.flatMap { ["\(splits[$0].name)_imgs.tsv", "\(splits[$0].name)_texts.jsonl"] }
        try AtomicOutput.install(files: files, from: tmp, into: outputDirectory)
        return made
    }

    /// The bytes stored for one image: its file, checked by decoding, or a resized JPEG.
    func encodedImage(_ path: String, shown: String, line: Int) throws -> Data {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw DatasetError.malformedLine(file: captionsFile, line: line, reason: "image '\(shown)' cannot be read at \(path)")
        }
        let image: Image
        do { image = try Image(data: data, name: path) } catch {
            throw DatasetError.badImage(file: captionsFile, line: line, id: shown, reason: "\(error)")
        }
        guard let side = resize else { return data }
        let shorter = min(image.width, image.height)
        var out = image
        if shorter > side {
            let scale = Double(side) / Double(shorter)
            let w = image.width <= image.height ? side : max(1, Int((Double(image.width) * scale).rounded()))
            let h = image.height < image.width ? side : max(1, Int((Double(image.height) * scale).rounded()))
            out = image.resized(to: (w, h))
        }
        do { return try out.converted(to: .rgb).jpegData(quality: jpegQuality) } catch {
            throw DatasetError.badImage(file: captionsFile, line: line, id: shown, reason: "cannot re-encode: \(error)")
        }
    }
}

/// A buffered output file (for writing multi-gigabyte TSVs without holding them).
final class OutputFile {
    let path: String
    private let handle: UnsafeMutablePointer<FILE>

    init(path: String) throws {
        self.path = path
        guard let f = fopen(path, "wb") else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        handle = f
        setvbuf(f, nil, _IOFBF, 1 << 20)
    }

    func write(_ s: String) throws {
        var s = s
        let ok = s.withUTF8 { fwrite($0.baseAddress, 1, $0.count, handle) == $0.count }
        if !ok { throw FileError(path: path, reason: "write failed: \(String(cString: strerror(errno)))") }
    }

    func close() throws {
        let flushed = fflush(handle) == 0 && fsync(fileno(handle)) == 0
        fclose(handle)
        if !flushed { throw FileError(path: path, reason: "write failed: \(String(cString: strerror(errno)))") }
    }
}
