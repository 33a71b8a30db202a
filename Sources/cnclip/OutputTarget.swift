import ChineseCLIP
import Essentials
import Foundation

/// Where a command that writes a whole model (`convert`, `export onnx`) puts it, and the checks made before any
/// work: nothing a user has is overwritten without --force, and a write that cannot succeed fails before the model
/// is read.
struct OutputTarget {
    /// The file or folder to write.
    let path: String
    /// True when the output is a folder of files.
    let isFolder: Bool
    /// True when an existing output may be replaced.
    let force: Bool

    /// Refuses an output that is the input, one that exists (a non-empty folder, or any file) without --force, a file
    /// where a folder goes or the reverse, and a parent folder that is missing or not writable.
    func checkWritable(readingFrom input: String?) throws {
        let fm = FileManager.default
        if let input, canonical(input) == canonical(path) || canonical(path).hasPrefix(canonical(input) + "/") {
            throw FileError(path: path, reason: "is the model being read (or inside it); write the output elsewhere")
        }
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue != isFolder {
                throw FileError(
                    path: path, reason: isFolder ? "exists and is a file; this output is a directory" : "is a directory; this output is a file")
            }
            let occupied = !isFolder || !((try? fm.contentsOfDirectory(atPath: path)) ?? []).isEmpty
            if occupied && !force {
                throw FileError(
                    path: path, reason: isFolder ? "exists and is not empty; pass --force to replace it" : "exists; pass --force to replace it")
            }
        }
        let parent = parentFolder(path)
        guard fm.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FileError(path: path, reason: "its folder \(parent) does not exist")
        }
        guard fm.isWritableFile(atPath: parent) else { throw FileError(path: path, reason: "its folder \(parent) is not writable") }
    }

    private func canonical(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }

    /// Builds the output folder with `fill` (given the hidden folder it builds in) and puts it in place in one step;
    /// a throw leaves the previous output (or nothing) as it was.
    func writeFolder(_ fill: (URL) throws -> Void) throws {
        let folder = try AtomicOutputFolder(path: path)
        do { try fill(URL(fileURLWithPath: folder.temporaryPath)) } catch { throw locatedInOutput(error, builtIn: folder.temporaryPath) }
        try folder.commit()
    }

    /// `error` naming the file of the output it is about (`out/hf/model.safetensors`) instead of its twin in the hidden
    /// folder the output was being built in, a name the user never gave.
    private func locatedInOutput(_ error: Error, builtIn temporary: String) -> Error {
        // The writers name it as given or, through a file URL, made absolute.
        let names = [temporary, URL(fileURLWithPath: temporary).path]
        func located(_ p: String) -> String {
            guard let name = names.first(where: { p.hasPrefix($0 + "/") }) else { return p }
            return path + p.dropFirst(name.count)
        }
        switch error {
        case let e as FileError: return FileError(path: located(e.path), reason: e.reason)
        case CLIPError.io(let p, let reason): return CLIPError.io(path: located(p), reason: reason)
        default: return error
        }
    }
}
