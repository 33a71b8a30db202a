// The one safe writer: commit, discard and failure each leave the old output or the new one; and a process
// killed with SIGKILL at random moments while it rewrites a file (or a folder) over and over leaves, every time, a
// whole version — never a missing or half-written one.

import Essentials
import Foundation
import XCTest

final class AtomicOutputTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-output-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    func read(_ name: String) -> String? { try? String(contentsOfFile: path(name), encoding: .utf8) }
    func leftovers() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") } }

    /// A one-character file name in the working folder ("a") is a name users give; Foundation's
    /// `NSString.deletingLastPathComponent` traps on it, so the writer finds the folder itself.
    func testTheFolderOfEveryKindOfPath() {
        let cases = [("a", "."), ("ab", "."), ("/a", "/"), ("x/y/z", "x/y"), ("x/y/", "x"), ("/", "/"), ("./a", ".")]
        for (path, folder) in cases { XCTAssertEqual(parentFolder(path), folder, path) }
    }

    func testCommitReplacesAndDiscardKeepsTheOldFile() throws {
        try AtomicOutput.write("old\n", to: path("out.txt"))
        let file = try AtomicOutputFile(path: path("out.txt"))
        try file.write("new ")
        try file.write(Array("bytes\n".utf8))
        XCTAssertEqual(read("out.txt"), "old\n", "nothing shows before commit")
        file.discard()
        XCTAssertEqual(read("out.txt"), "old\n")
        struct Stop: Error {}
        XCTAssertThrowsError(
            try AtomicOutput.write(path: path("out.txt")) {
                try $0.write("half"); throw Stop()
            })
        XCTAssertEqual(read("out.txt"), "old\n", "a failing body keeps the old file")
        try AtomicOutput.write(path: path("out.txt")) { try $0.write("new\n") }
        XCTAssertEqual(read("out.txt"), "new\n")
        XCTAssertEqual(try leftovers(), [])
    }

    /// `kill -9` leaves the hidden temporary of a folder being built, or of a file between its naming and its rename;
    /// the next writer of the same target removes those whose process is gone, and leaves a live process's alone.
    func testTemporariesOfKilledWritersAreRemovedByTheNextWriter() throws {
        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        let dead = exited.processIdentifier, alive = getppid()
        let fm = FileManager.default
        try Data("half".utf8).write(to: URL(fileURLWithPath: path(".out.txt.\(dead)-0D15F343.tmp")))
        try Data("busy".utf8).write(to: URL(fileURLWithPath: path(".out.txt.\(alive)-0D15F343.tmp")))
        for folder in [".gallery.\(dead)-24712EDE.tmp", ".build-lmdb.\(dead)-24712EDE.tmp"] {
            try fm.createDirectory(atPath: path(folder + "/inner"), withIntermediateDirectories: true)
        }
        try AtomicOutput.write("new\n", to: path("out.txt"))
        let gallery = try AtomicOutputFolder(path: path("gallery"))
        try gallery.commit()
        let working = try AtomicOutput.workingFolder(in: dir.path, purpose: "build-lmdb")
        try fm.removeItem(atPath: working)
        // A temporary for another name in the same folder (a rerun may write a new timestamped file) goes too.
        try Data("half".utf8).write(to: URL(fileURLWithPath: path(".params_2026-12-07-10-57-53.txt.\(dead)-6F63EEE2.tmp")))
        try AtomicOutput.write("other\n", to: path("params_2026-12-07-11-00-00.txt"))
        XCTAssertEqual(try leftovers(), [".out.txt.\(alive)-0D15F343.tmp"])
    }

    func testUnwritableFolderIsAnErrorNamingTheTarget() throws {
        let target = path("missing/out.txt")
        XCTAssertThrowsError(try AtomicOutput.write("x", to: target)) { error in
            XCTAssertEqual((error as? FileError)?.path, target, "\(error)")
        }
    }

    func testNamedWriterAndFileInstall() throws {
        try AtomicOutput.writeNamed(path: path("index.bin")) { tmp in try Data("faiss".utf8).write(to: URL(fileURLWithPath: tmp)) }
        XCTAssertEqual(read("index.bin"), "faiss")
        struct Stop: Error {}
        XCTAssertThrowsError(
            try AtomicOutput.writeNamed(path: path("index.bin")) { tmp in
                try Data("partial".utf8).write(to: URL(fileURLWithPath: tmp)); throw Stop()
            })
        XCTAssertEqual(read("index.bin"), "faiss")
        let built = path("built")
        try FileManager.default.createDirectory(atPath: built, withIntermediateDirectories: false)
        for name in ["a.tsv", "b.jsonl"] { try Data(name.utf8).write(to: URL(fileURLWithPath: built).appendingPathComponent(name)) }
        try AtomicOutput.install(files: ["a.tsv", "b.jsonl"], from: built, into: dir.path)
        XCTAssertEqual(read("a.tsv"), "a.tsv")
        XCTAssertEqual(read("b.jsonl"), "b.jsonl")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: built), [])
        XCTAssertEqual(try leftovers(), [])
    }

    func testFolderIsSwappedInWhole() throws {
        let target = path("gallery")
        func build(_ text: String) throws {
            let folder = try AtomicOutputFolder(path: target)
            try Data(text.utf8).write(to: URL(fileURLWithPath: folder.temporaryPath).appendingPathComponent("manifest.json"))
            try folder.commit()
        }
        try build("one")
        XCTAssertEqual(read("gallery/manifest.json"), "one")
        try build("two")
        XCTAssertEqual(read("gallery/manifest.json"), "two")
        let abandoned = try AtomicOutputFolder(path: target)
        try Data("three".utf8).write(to: URL(fileURLWithPath: abandoned.temporaryPath).appendingPathComponent("manifest.json"))
        abandoned.discard()
        XCTAssertEqual(read("gallery/manifest.json"), "two")
        XCTAssertEqual(try leftovers(), [])
    }

    // MARK: kill -9 while writing

    /// The content of version `generation`: a header line, 4 MiB of a pattern that depends on it, and an end line.
    static func version(_ generation: Int) -> [UInt8] {
        var bytes = Array("generation \(generation)\n".utf8)
        let fill = UInt8(truncatingIfNeeded: generation &* 37 &+ 11)
        bytes += [UInt8](repeating: fill, count: 4 << 20)
        bytes += Array("\nend \(generation)\n".utf8)
        return bytes
    }

    /// The generation `data` is a whole version of, or nil.
    static func wholeGeneration(_ data: Data) -> Int? {
        let bytes = [UInt8](data)
        guard let newline = bytes.firstIndex(of: 0x0A),
            let generation = Int(String(decoding: bytes[..<newline], as: UTF8.self).dropFirst("generation ".count))
        else { return nil }
        return bytes == version(generation) ? generation : nil
    }

    /// Runs only inside the child process the kill tests start: rewrites the file or folder forever.
    func testChildRewritesUntilKilled() throws {
        let env = ProcessInfo.processInfo.environment
        guard let target = env["ATOMIC_OUTPUT_CHILD_TARGET"] else { return }
        for generation in 1... {
            if env["ATOMIC_OUTPUT_CHILD_FOLDER"] != nil {
                let folder = try AtomicOutputFolder(path: target)
                for name in ["a.bin", "b.bin"] {
                    try Data(Self.version(generation)).write(to: URL(fileURLWithPath: folder.temporaryPath).appendingPathComponent(name))
                }
                try folder.commit()
            } else {
                try AtomicOutput.write(Self.version(generation), to: target)
            }
        }
    }

    /// `rounds` times: starts the child, lets it write for a random while, SIGKILLs it, then runs `check`.
    func killRepeatedly(target: String, folder: Bool, rounds: Int, check: () throws -> Void) throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<rounds {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            child.arguments = ["EssentialsTests.AtomicOutputTests/testChildRewritesUntilKilled"]
            var env = ProcessInfo.processInfo.environment
            env["ATOMIC_OUTPUT_CHILD_TARGET"] = target
            if folder { env["ATOMIC_OUTPUT_CHILD_FOLDER"] = "1" }
            child.environment = env
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            usleep(UInt32.random(in: 150_000...600_000, using: &generator))
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            XCTAssertEqual(child.terminationReason, .uncaughtSignal, "the child ended before it was killed")
            try check()
        }
    }

    func testKilledFileWriterLeavesOldOrNewNeverNeither() throws {
        let target = path("features.jsonl")
        try AtomicOutput.write(Self.version(0), to: target)
        var generations: [Int] = []
        try killRepeatedly(target: target, folder: false, rounds: 12) {
            let data = try XCTUnwrap(FileManager.default.contents(atPath: target), "the file is gone after a kill")
            let generation = Self.wholeGeneration(data)
            XCTAssertNotNil(generation, "a kill left \(data.count) bytes that are no whole version")
            generations.append(generation ?? -1)
        }
        XCTAssertGreaterThan(generations.max() ?? 0, 1, "the child never got to rewrite the file: \(generations)")
    }

    func testKilledFolderWriterLeavesOldOrNewNeverNeither() throws {
        let target = path("gallery")
        let first = try AtomicOutputFolder(path: target)
        for name in ["a.bin", "b.bin"] { try Data(Self.version(0)).write(to: URL(fileURLWithPath: first.temporaryPath).appendingPathComponent(name)) }
        try first.commit()
        var generations: [Int] = []
        try killRepeatedly(target: target, folder: true, rounds: 12) {
            let a = try XCTUnwrap(FileManager.default.contents(atPath: target + "/a.bin"), "a.bin is gone after a kill")
            let b = try XCTUnwrap(FileManager.default.contents(atPath: target + "/b.bin"), "b.bin is gone after a kill")
            let generation = Self.wholeGeneration(a)
            XCTAssertTrue(generation != nil && a == b, "a kill left a folder that is no whole version")
            generations.append(generation ?? -1)
        }
        XCTAssertGreaterThan(generations.max() ?? 0, 1, "the child never got to rebuild the folder: \(generations)")
    }
}
