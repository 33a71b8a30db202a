// The one way outputs are written: under a temporary name in the target's own folder, flushed to disk, then
// renamed into place and the folder flushed too. A reader — or a rerun after `kill -9` — finds the previous file
// or the new one, never half of one and never neither.
//
// Files: on Linux an unnamed file (O_TMPFILE) that gets a name only at commit, so a process killed at any moment
// leaves nothing behind; elsewhere (or where the file system lacks O_TMPFILE) a hidden named sibling.
// Folders: built under a hidden sibling name; an existing target is swapped with it in one step
// (`renameat2(RENAME_EXCHANGE)` on Linux) and only then removed. A hidden sibling that a killed process left behind
// is removed by the next writer of the same target.

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

private func systemError() -> String { String(cString: strerror(errno)) }

/// Flushes a folder's entry list to disk, so a rename inside it survives a crash.
func syncFolder(_ path: String) {
    let fd = open(path.isEmpty ? "." : path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
}

/// Flushes a file's contents to disk; false (with `errno` set) when it cannot be opened or flushed.
func syncFile(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    let ok = fsync(fd) == 0
    let saved = errno
    close(fd)
    errno = saved
    return ok
}

/// The folder holding `path` ("." for a bare name). Not `NSString.deletingLastPathComponent`: swift-corelibs-foundation
/// traps on a one-character relative path ("a"), which is a file name a user may give.
package func parentFolder(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "." }
    let dir = trimmed[..<slash]
    return dir.isEmpty ? "/" : String(dir)
}

/// A hidden name beside `path` for its temporary version: `.NAME.PID-RANDOM.tmp`.
func temporarySibling(of path: String) -> String {
    let name = (path as NSString).lastPathComponent
    return (parentFolder(path) as NSString).appendingPathComponent(".\(name).\(getpid())-\(UUID().uuidString.prefix(8)).tmp")
}

/// Removes the temporaries that killed processes left in the folder of `path` (`.NAME.PID-RANDOM.tmp` whose PID is no
/// longer running): a `kill -9` cannot clean up after itself, so the next writer in the same folder does — whatever
/// target the temporary was for, since a rerun may write under another name (a timestamped `params_….txt`). A
/// temporary of a live process, or of a PID now reused, is left alone.
func removeStaleTemporaries(of path: String) {
    AtomicOutput.removeStaleTemporaries(inFolder: parentFolder(path))
}

extension AtomicOutput {
    /// Removes the temporaries of killed processes in `folder` (see `removeStaleTemporaries(of:)`): for a command that
    /// may have nothing left to write when rerun (a resumed training that had finished).
    package static func removeStaleTemporaries(inFolder folder: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            // `.NAME.` then `PID-XXXXXXXX` (eight hex digits) then `.tmp`.
            let middle = name.dropLast(".tmp".count)
            guard let dot = middle.lastIndex(of: "."), dot > middle.startIndex else { continue }
            let tag = middle[middle.index(after: dot)...]
            guard let dash = tag.firstIndex(of: "-"), tag.distance(from: dash, to: tag.endIndex) == 9,
                tag[tag.index(after: dash)...].allSatisfy(\.isHexDigit), let pid = pid_t(tag[..<dash]), pid > 0, pid != getpid()
            else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: (folder as NSString).appendingPathComponent(name))
            }
        }
    }
}

/// Opens `path` for appending, creating it if absent. (Not `FileManager.createFile`, which writes even an empty file
/// through a temporary and a rename, and a kill between the two leaves the temporary behind.)
package func openForAppending(_ path: String) throws -> FileHandle {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FileError(path: path, reason: "cannot open for appending: \(systemError())") }
    return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
}

/// A file written beside its target and moved over it only by ``commit()``; ``discard()`` (or deinit) leaves no trace.
package final class AtomicOutputFile {
    /// The final path.
    package let path: String
    /// The name the file has between ``commit()``'s link and rename (the file has no name before, on Linux).
    package let temporaryPath: String
    private var handle: UnsafeMutablePointer<FILE>?
    private var isUnnamed = false

    /// Opens the temporary file beside `path` (whose folder must exist).
    package init(path: String) throws {
        self.path = path
        // An unnamed file gets its name for the moment between commit's link and rename: a kill there leaves it.
        removeStaleTemporaries(of: path)
        temporaryPath = temporarySibling(of: path)
        #if os(Linux)
            // O_TMPFILE is a macro Swift cannot import: __O_TMPFILE | O_DIRECTORY, 020200000 on Linux's common ABIs.
            let unnamed = open(parentFolder(path), 0o20_200_000 | O_WRONLY | O_CLOEXEC, 0o666)
            if unnamed >= 0, let f = fdopen(unnamed, "wb") {
                isUnnamed = true
                setvbuf(f, nil, _IOFBF, 1 << 20)
                handle = f
                return
            }
            if unnamed >= 0 { close(unnamed) }
        #endif
        guard let f = fopen(temporaryPath, "wbx") else {
            throw FileError(path: path, reason: "cannot create a file beside it: \(systemError())")
        }
        setvbuf(f, nil, _IOFBF, 1 << 20)
        handle = f
    }

    /// Appends `bytes`.
    package func write(bytes: UnsafeRawBufferPointer) throws {
        guard let handle else { throw FileError(path: path, reason: "written after commit or discard") }
        guard bytes.count > 0 else { return }
        if fwrite(bytes.baseAddress, 1, bytes.count, handle) != bytes.count {
            throw FileError(path: path, reason: "write failed: \(systemError())")
        }
    }

    /// Appends `bytes`.
    package func write(bytes: UnsafeBufferPointer<UInt8>) throws { try write(bytes: UnsafeRawBufferPointer(bytes)) }

    /// Appends `bytes`.
    package func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write(bytes: $0) } }

    /// Appends `data`.
    package func write(_ data: Data) throws { try data.withUnsafeBytes { try write(bytes: $0) } }

    /// Appends the UTF-8 of `text`.
    package func write(_ text: String) throws {
        var text = text
        try text.withUTF8 { try write(bytes: $0) }
    }

    /// Flushes the file to disk, renames it over the target and flushes the folder. A failure removes the temporary.
    package func commit() throws {
        guard let h = handle else { return }
        handle = nil
        var ok = fflush(h) == 0 && fsync(fileno(h)) == 0
        var reason = ok ? "" : systemError()
        if ok && isUnnamed {
            ok = linkat(AT_FDCWD, "/proc/self/fd/\(fileno(h))", AT_FDCWD, temporaryPath, AT_SYMLINK_FOLLOW) == 0
            if !ok { reason = "cannot name the new file: \(systemError())" }
        }
        if fclose(h) != 0 && ok { ok = false; reason = systemError() }
        if ok && rename(temporaryPath, path) != 0 { ok = false; reason = "cannot rename it into place: \(systemError())" }
        guard ok else {
            unlink(temporaryPath)
            throw FileError(path: path, reason: "cannot write: \(reason)")
        }
        syncFolder(parentFolder(path))
    }

    /// Closes and forgets the temporary file; the target is untouched.
    package func discard() {
        guard let h = handle else { return }
        fclose(h)
        handle = nil
        if !isUnnamed { unlink(temporaryPath) }
    }

    deinit { discard() }
}

/// One-call forms of ``AtomicOutputFile``, and the same guarantee for files other code writes by path.
package enum AtomicOutput {
    /// Writes `path` from `body`: committed when `body` returns, discarded (the old file kept) when it throws.
    package static func write(path: String, _ body: (AtomicOutputFile) throws -> Void) throws {
        let file = try AtomicOutputFile(path: path)
        do {
            try body(file)
            try file.commit()
        } catch {
            file.discard()
            throw error
        }
    }

    /// Writes `text` (UTF-8) as the whole content of `path`.
    package static func write(_ text: String, to path: String) throws {
        try write(path: path) { try $0.write(text) }
    }

    /// Writes `bytes` as the whole content of `path`.
    package static func write(_ bytes: [UInt8], to path: String) throws {
        try write(path: path) { try $0.write(bytes) }
    }

    /// Creates the empty hidden folder `folder/.PURPOSE.PID-RANDOM.tmp` in which a command builds several outputs
    /// before moving them into `folder`, after removing the ones that killed runs left there.
    package static func workingFolder(in folder: String, purpose: String) throws -> String {
        let marker = (folder as NSString).appendingPathComponent(purpose)
        removeStaleTemporaries(inFolder: folder)
        let path = temporarySibling(of: marker)
        guard mkdir(path, 0o755) == 0 else {
            throw FileError(path: folder, reason: "cannot create a temporary folder in it: \(systemError())")
        }
        return path
    }

    /// For a library that writes only by file name (FAISS): `body` writes the named temporary it is given, which is
    /// then flushed and renamed over `path`; a throw or a failure removes it.
    package static func writeNamed(path: String, _ body: (String) throws -> Void) throws {
        removeStaleTemporaries(inFolder: parentFolder(path))
        let tmp = temporarySibling(of: path)
        do {
            try body(tmp)
            try moveFlushed(tmp, to: path)
        } catch {
            unlink(tmp)
            throw error
        }
        syncFolder(parentFolder(path))
    }
}

extension AtomicOutput {
    /// Flushes the finished file `source` to disk and renames it over `target`; errors name `target`.
    static func moveFlushed(_ source: String, to target: String) throws {
        guard syncFile(source) else { throw FileError(path: target, reason: "cannot flush the new file: \(systemError())") }
        guard rename(source, target) == 0 else { throw FileError(path: target, reason: "cannot rename it into place: \(systemError())") }
    }

    /// Moves finished files `names` from the temporary folder `built` into `folder` (both on one file system): each
    /// flushed, then renamed over its namesake in one step; then `folder` is flushed. Every file is whole, old or new.
    package static func install(files names: [String], from built: String, into folder: String) throws {
        for name in names {
            try moveFlushed((built as NSString).appendingPathComponent(name), to: (folder as NSString).appendingPathComponent(name))
        }
        syncFolder(folder)
    }
}

/// A folder built under a hidden sibling name and put in place of its target only by ``commit()``.
package final class AtomicOutputFolder {
    /// The final path.
    package let path: String
    /// Where the folder is built until ``commit()``.
    package let temporaryPath: String
    private var isOpen = true

    /// Creates the empty temporary folder beside `path` (whose parent must exist).
    package init(path: String) throws {
        self.path = path
        removeStaleTemporaries(of: path)
        temporaryPath = temporarySibling(of: path)
        guard mkdir(temporaryPath, 0o755) == 0 else {
            throw FileError(path: path, reason: "cannot create a folder beside it: \(systemError())")
        }
    }

    /// Flushes every file under the temporary folder, then puts it in place of the target: atomically exchanged
    /// with an existing target (whose old contents are then removed), or renamed where there is none.
    package func commit() throws {
        guard isOpen else { return }
        isOpen = false
        defer { try? FileManager.default.removeItem(atPath: temporaryPath) }  // the old contents, after a swap
        try Self.install(temporaryPath, at: path)
    }

    /// Puts the finished folder `built` at `target` (same file system): every file in it flushed, then swapped with an
    /// existing target in one step — the old contents are left at `built` for the caller to remove — or renamed.
    package static func install(_ built: String, at target: String) throws {
        try syncTree(built)
        if FileManager.default.fileExists(atPath: target) {
            guard exchange(built, target) else {
                throw FileError(path: target, reason: "cannot swap the new folder into place: \(systemError())")
            }
        } else if rename(built, target) != 0 {
            throw FileError(path: target, reason: "cannot rename the new folder into place: \(systemError())")
        }
        syncFolder(parentFolder(target))
    }

    /// Removes the temporary folder; the target is untouched.
    package func discard() {
        guard isOpen else { return }
        isOpen = false
        try? FileManager.default.removeItem(atPath: temporaryPath)
    }

    deinit { discard() }

    /// fsync of every regular file and folder under `root`.
    static func syncTree(_ root: String) throws {
        let fm = FileManager.default
        var folders = [root]
        if let walker = fm.enumerator(atPath: root) {
            for case let relative as String in walker {
                let full = (root as NSString).appendingPathComponent(relative)
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: full, isDirectory: &isDir) else { continue }
                if isDir.boolValue { folders.append(full); continue }
                guard syncFile(full) else { throw FileError(path: full, reason: "cannot flush: \(systemError())") }
            }
        }
        folders.forEach(syncFolder)
    }

    /// Swaps two paths in one step (Linux's `renameat2(RENAME_EXCHANGE)`, looked up at run time since Swift's
    /// Glibc module does not declare it); elsewhere the old target is moved aside first.
    static func exchange(_ a: String, _ b: String) -> Bool {
        typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") {
            let renameat2 = unsafeBitCast(symbol, to: RenameAt2.self)
            let exchangeFlag: UInt32 = 1 << 1  // RENAME_EXCHANGE
            if renameat2(AT_FDCWD, a, AT_FDCWD, b, exchangeFlag) == 0 { return true }
            if errno != EINVAL && errno != ENOSYS { return false }
        }
        let aside = temporarySibling(of: b)
        guard rename(b, aside) == 0 else { return false }
        guard rename(a, b) == 0 else { rename(aside, b); return false }
        return rename(aside, a) == 0
    }
}
