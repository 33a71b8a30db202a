// The zero-shot test set as cn-clip reads it: a label file (one class name per line) and torchvision's
// `ImageFolder` layout (one sub-folder per class, any depth below it). The order of classes and images decides
// which label a folder gets and the row order of the ELEVATER predictions, so it follows ImageFolder exactly:
// class folders sorted by name (Python code-point order), each walked top-down (symlinks followed) with
// directories and file names sorted, keeping files whose lower-cased name ends in one of its image extensions.

import Essentials
import Foundation
import Imaging

/// Why a zero-shot evaluation cannot run; every case names the file or folder at fault.
package enum ZeroShotError: UserFacingError, Equatable {
    /// The label file is missing, unreadable or not UTF-8.
    case labelFile(path: String, reason: String)
    /// The data folder has no sub-folder (no class).
    case noClassFolders(path: String)
    /// Class folders without a single image file (ImageFolder refuses these).
    case emptyClasses(path: String, classes: [String])
    /// The label file and the data folder disagree on the number of classes.
    case classCountMismatch(labelFile: String, labels: Int, datapath: String, folders: Int)
    /// An image file could not be read or decoded.
    case image(path: String, reason: String)
    /// The `--index` file is unreadable, not a JSON list of integers, or points outside the predictions.
    case index(path: String, reason: String)
    /// A template set the dataset rule names is missing from the bundled templates.
    case unknownTemplateSet(String)

    /// A one-line message for the user.
    package var description: String {
        switch self {
        case .labelFile(let p, let r): return "\(p): label file: \(r)"
        case .noClassFolders(let p): return "\(p): no class folder found (expected one sub-folder per class)"
        case .emptyClasses(let p, let c):
            return "\(p): no image file in the class folder(s) \(c.joined(separator: ", ")); supported extensions: "
                + ZeroShotDataset.imageExtensions.joined(separator: ", ")
        case .classCountMismatch(let l, let n, let d, let f):
            return "\(l): \(n) labels, but \(d) has \(f) class folders; they must correspond one to one, in sorted folder order"
        case .image(let p, let r): return "\(p): \(r)"
        case .index(let p, let r): return "\(p): index file: \(r)"
        case .unknownTemplateSet(let n): return "template set '\(n)' is missing from the bundled zeroshot_templates.json"
        }
    }
}

/// A zero-shot test set in ImageFolder layout: its class folders and its images with their class index.
package struct ZeroShotDataset: Sendable {
    /// One image and the index of its class folder.
    package struct Sample: Sendable, Equatable {
        /// The image file, as `os.path.join(root, class, …, name)` spells it.
        package let path: String
        /// Index of the class folder in ``ZeroShotDataset/classFolders``.
        package let classIndex: Int
    }

    /// torchvision's `IMG_EXTENSIONS`, matched case-insensitively at the end of the file name.
    package static let imageExtensions = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"]

    /// The data folder as given.
    package let root: String
    /// Class folder names in class-index order (sorted by code point).
    package let classFolders: [String]
    /// The images in the reference's order.
    package let samples: [Sample]

    /// Scans `root` as torchvision's `ImageFolder` does; a class folder without images is an error.
    package init(imageFolder root: String) throws {
        let fm = FileManager.default
        guard isDirectory(root) else { throw FileError(path: root, reason: "no such folder") }
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: root) } catch {
            throw FileError(path: root, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        let classes = entries.filter { isDirectory(joinPath(root, $0)) }.sorted(by: codePointLess)
        guard !classes.isEmpty else { throw ZeroShotError.noClassFolders(path: root) }

        var samples: [Sample] = []
        var empty: [String] = []
        for (index, name) in classes.enumerated() {
            var folders: [(root: String, files: [String])] = []
            var visited = Set<String>()
            walk(joinPath(root, name), into: &folders, visited: &visited)
            // `sorted(os.walk(...))` orders the (root, dirs, files) tuples by their root path.
            folders.sort { codePointLess($0.root, $1.root) }
            let before = samples.count
            for folder in folders {
                for file in folder.files.sorted(by: codePointLess) where Self.hasImageExtension(file) {
                    samples.append(Sample(path: joinPath(folder.root, file), classIndex: index))
                }
            }
            if samples.count == before { empty.append(name) }
        }
        guard empty.isEmpty else { throw ZeroShotError.emptyClasses(path: root, classes: empty) }
        self.root = root
        self.classFolders = classes
        self.samples = samples
    }

    /// Class names from a label file, one per line and stripped of surrounding white space, as the reference's
    /// `[line.strip() for line in f.readlines()]` reads them (so a blank line in the middle is a class named "").
    package static func readLabels(contentsOfFile path: String) throws -> [String] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            let exists = FileManager.default.fileExists(atPath: path)
            throw ZeroShotError.labelFile(path: path, reason: exists ? "cannot be read" : "no such file")
        }
        let text = String(decoding: data, as: UTF8.self)
        guard Data(text.utf8) == data else { throw ZeroShotError.labelFile(path: path, reason: "not valid UTF-8") }
        // Python's text mode reads \r\n and \r as \n; readlines() gives no entry after a final newline.
        var lines = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines.map(pythonStripped)
    }

    /// Checks that there is one label per class folder. The reference does not check: with more folders than
    /// labels the extra classes' images silently count as wrong, and with fewer, labels shift onto the wrong
    /// folders unless the missing ones are last — either way the accuracy would not mean what it says.
    package func checkLabels(_ labels: [String], labelFile: String) throws {
        guard labels.count == classFolders.count else {
            throw ZeroShotError.classCountMismatch(
                labelFile: labelFile, labels: labels.count, datapath: root,
                folders: classFolders.count)
        }
    }

    /// Decodes an image file and converts it to RGB first, as ImageFolder's loader does before any transform.
    package static func loadImage(path: String) throws -> Image {
        do { return try Image(contentsOfFile: path).converted(to: .rgb) } catch let e as ImageError {
            throw ZeroShotError.image(path: path, reason: "\(e)")
        } catch {
            throw ZeroShotError.image(path: path, reason: "\(error)")
        }
    }

    /// True when `name` ends in one of ``imageExtensions``, ignoring case.
    package static func hasImageExtension(_ name: String) -> Bool {
        let lower = name.lowercased()
        return imageExtensions.contains { lower.hasSuffix($0) }
    }
}

// MARK: - Helpers that reproduce Python's behaviour

/// `os.path.join(a, b)` for a relative `b`.
func joinPath(_ a: String, _ b: String) -> String {
    a.isEmpty || a.hasSuffix("/") ? a + b : a + "/" + b
}

/// Whether `path` is a directory, following symbolic links (`os.DirEntry.is_dir()`).
private func isDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
}

/// Python's string order: lexicographic by Unicode code point (Swift's `<` compares canonical equivalents).
func codePointLess(_ a: String, _ b: String) -> Bool {
    a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
}

/// `os.walk(top, followlinks=True)`: every folder below `top` with its non-folder entries. A folder reached twice
/// through links is walked once, where Python would loop for ever; an unreadable folder is skipped, as os.walk
/// skips it without an error handler.
private func walk(_ top: String, into out: inout [(root: String, files: [String])], visited: inout Set<String>) {
    let real = (top as NSString).resolvingSymlinksInPath
    guard visited.insert(real).inserted,
        let names = try? FileManager.default.contentsOfDirectory(atPath: top)
    else { return }
    var files: [String] = []
    var dirs: [String] = []
    for name in names {
        if isDirectory(joinPath(top, name)) { dirs.append(name) } else { files.append(name) }
    }
    out.append((top, files))
    for d in dirs { walk(joinPath(top, d), into: &out, visited: &visited) }
}

/// `str.strip()`: drops leading and trailing characters Python counts as white space.
func pythonStripped(_ s: String) -> String {
    func isSpace(_ u: Unicode.Scalar) -> Bool {
        u.properties.isWhitespace || (0x1C...0x1F).contains(u.value)
    }
    let scalars = Array(s.unicodeScalars)
    guard let first = scalars.firstIndex(where: { !isSpace($0) }),
        let last = scalars.lastIndex(where: { !isSpace($0) })
    else { return "" }
    var view = String.UnicodeScalarView()
    view.append(contentsOf: scalars[first...last])
    return String(view)
}
