import Checkpoints
import Foundation
import TestSupport
import XCTest

/// `cnclip train` under `mpirun --oversubscribe -np 2` (Open MPI from scripts/install-deps.sh): data-parallel
/// training equals one process with the global batch, and a rank killed mid-run ends the job, which resumes.
final class DistributedTrainCLITests: XCTestCase {
    var scratch: URL!
    /// mpirun as root needs these; harmless otherwise.
    let mpiEnvironment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"]

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-ddp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    var mpirun: URL {
        get throws {
            for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"] {
                let url = URL(fileURLWithPath: dir).appendingPathComponent("mpirun")
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
            XCTFail("mpirun not found: run scripts/install-deps.sh (it installs Open MPI; CI runs it)")
            throw CocoaError(.fileNoSuchFile)
        }
    }

    /// A 32-pixel CLIP without dropout, so that the two layouts see the same computation.
    let config = """
        {"embed_dim": 64, "image_resolution": 32, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8,
         "vision_head_width": 32, "vocab_size": 21128, "text_attention_probs_dropout_prob": 0.0, "text_hidden_act": "gelu",
         "text_hidden_dropout_prob": 0.0, "text_hidden_size": 64, "text_initializer_range": 0.02,
         "text_intermediate_size": 256, "text_max_position_embeddings": 512, "text_num_attention_heads": 2,
         "text_num_hidden_layers": 2, "text_type_vocab_size": 2}
        """

    func prepare(train: Int) throws -> [String] {
        let data = scratch.appendingPathComponent("data"), configPath = scratch.appendingPathComponent("clip.json").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        var r = try runCNCLIP([
            "synth-dataset", "--output", data.path, "--train", "\(train)", "--valid", "40", "--test", "0",
            "--resolution", "32", "--seed", "5",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCNCLIP(["build-lmdb", "--data_dir", data.path, "--splits", "train,valid"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return [
            "train", "--train-data", data.appendingPathComponent("lmdb/train").path,
            "--val-data", data.appendingPathComponent("lmdb/valid").path, "--config", configPath, "--context-length", "32",
            "--lr", "1e-3", "--warmup", "2", "--log-interval", "1", "--seed", "3", "--valid-batch-size", "10",
            "--logs", scratch.appendingPathComponent("logs").path,
        ]
    }

    /// The PIDs of the run's two ranks: cnclip processes (not mpirun) whose command line names the run.
    func ranks(of name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Int32] {
        let ranks = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            guard let cmd = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
            return cmd.contains(name) && cmd.hasPrefix(builtCNCLIP.path)
        }
        XCTAssertEqual(ranks.count, 2, "expected two ranks of \(name)", file: file, line: line)
        return ranks
    }

    func losses(_ log: String) -> [Double] {
        log.split(separator: "\n").filter { $0.contains("Global Steps: ") }
            .map { Double($0.components(separatedBy: "| Loss: ")[1].prefix { $0 != " " })! }
    }

    func weights(_ name: String) throws -> [String: [Float]] {
        let url = scratch.appendingPathComponent("logs/\(name)/checkpoints/epoch_latest.pt")
        var out: [String: [Float]] = [:]
        for (key, t) in try loadStateDict(url) { out[key] = t.floats }
        return out
    }

    /// 2 ranks × batch 10 with --gather-with-grad take the steps of 1 process × batch 20 on the same data order:
    /// the same losses (≤ 1e-5 relative) and weights within 1e-4. Without it (the reference's default) the ranks
    /// average gradients of the loss through their own features only: the same first loss, close weights.
    func testTwoRanksMatchOneProcessWithTheGlobalBatch() throws {
        let mpirun = try self.mpirun
        let common = try prepare(train: 400)
        let one = try runCNCLIP(common + ["--batch-size", "20", "--max-steps", "6", "--name", "one", "--gather-with-grad"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try runCommand(
            mpirun,
            ["-np", "2", builtCNCLIP.path] + common
                + ["--batch-size", "10", "--max-steps", "6", "--name", "two", "--gather-with-grad"], environment: mpiEnvironment)
        XCTAssertEqual(two.status, 0, two.stderr)
        let (a, b) = (losses(one.stderr), losses(two.stderr))
        XCTAssertEqual(a.count, 6, one.stderr)
        XCTAssertEqual(b.count, 6, "rank 0 alone logs: \(two.stderr)")
        for (x, y) in zip(a, b) { XCTAssertEqual(y, x, accuracy: 1e-5 * abs(x), "losses \(a) vs \(b)") }
        XCTAssertTrue(two.stderr.contains("Global Batch Size: 20"), two.stderr)
        let params = try String(
            contentsOf: try XCTUnwrap(
                FileManager.default.contentsOfDirectory(
                    at: scratch.appendingPathComponent("logs/two"),
                    includingPropertiesForKeys: nil
                ).first { $0.lastPathComponent.hasPrefix("params_") }), encoding: .utf8)
        XCTAssertTrue(params.contains("world_size: 2\n") && params.contains("gather_with_grad: True\n"), params)

        let (wa, wb) = (try weights("one"), try weights("two"))
        XCTAssertEqual(Set(wa.keys), Set(wb.keys))
        for (key, x) in wa {
            let y = wb[key]!
            let scale = max(1, x.map(abs).max() ?? 0)
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(key): first \(x.prefix(3)) vs \(y.prefix(3))")
        }

        let local = try runCommand(
            mpirun,
            ["-np", "2", builtCNCLIP.path] + common
                + ["--batch-size", "10", "--max-steps", "2", "--name", "local"], environment: mpiEnvironment)
        XCTAssertEqual(local.status, 0, local.stderr)
        XCTAssertEqual(losses(local.stderr).first ?? 0, a[0], accuracy: 1e-5 * a[0])
    }

    /// `--accum-freq 2` across ranks: each rank caches its batches' features, and every re-run batch is contrasted
    /// with all ranks' features of the step — the losses of one process with the global batch.
    func testAccumFreqAcrossRanks() throws {
        let mpirun = try self.mpirun
        let common = try prepare(train: 400) + ["--accum-freq", "2", "--max-steps", "3", "--gather-with-grad"]
        let one = try runCNCLIP(common + ["--batch-size", "20", "--name", "accum-one"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try runCommand(
            mpirun, ["-np", "2", builtCNCLIP.path] + common + ["--batch-size", "10", "--name", "accum-two"],
            environment: mpiEnvironment)
        XCTAssertEqual(two.status, 0, two.stderr)
        let (a, b) = (losses(one.stderr), losses(two.stderr))
        XCTAssertEqual(a.count, 3, one.stderr)
        XCTAssertEqual(b.count, 3, two.stderr)
        for (x, y) in zip(a, b) { XCTAssertEqual(y, x, accuracy: 1e-5 * abs(x), "losses \(a) vs \(b)") }
        XCTAssertTrue(two.stderr.contains("Global Batch Size: 40"), two.stderr)
    }

    /// kill -9 of one rank: mpirun ends the whole job with a non-zero status (no rank left waiting), and the
    /// run resumes from its last checkpoint — with 2 processes, and with 1 after --reset-data-offset.
    func testKilledRankEndsTheJobAndItResumes() throws {
        let mpirun = try self.mpirun
        let common = try prepare(train: 400)
        let name = "killed-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = mpirun
        p.arguments =
            ["-np", "2", builtCNCLIP.path] + common + [
                "--batch-size", "10", "--max-steps", "100000", "--save-step-frequency", "3",
                "--name", name, "--valid-epoch-interval", "None",
            ]
        p.environment = ProcessInfo.processInfo.environment.merging(mpiEnvironment) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let latest = scratch.appendingPathComponent("logs/\(name)/checkpoints/epoch_latest.pt")
        // Wait for the log to report a saved epoch_latest.pt (the file is renamed into place before the line is written).
        func savedLine() -> Substring? {
            let dir = scratch.appendingPathComponent("logs/\(name)")
            guard let log = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.first(where: { $0.hasPrefix("out_") }),
                let text = try? String(contentsOf: dir.appendingPathComponent(log), encoding: .utf8)
            else { return nil }
            return text.split(separator: "\n").last { $0.contains("Saved checkpoint") && $0.contains("epoch_latest.pt") }
        }
        var waited = 0.0
        while savedLine() == nil && waited < 120 { Thread.sleep(forTimeInterval: 0.2); waited += 0.2 }
        XCTAssertNotNil(savedLine(), "no checkpoint after 120 s")
        let ranks = try self.ranks(of: name)
        kill(try XCTUnwrap(ranks.first), SIGKILL)
        waited = 0
        while p.isRunning && waited < 60 { Thread.sleep(forTimeInterval: 0.2); waited += 0.2 }
        if p.isRunning {
            p.terminate()
            for pid in ranks { kill(pid, SIGKILL) }
            XCTFail("the job still runs 60 s after a rank was killed")
            return
        }
        XCTAssertNotEqual(p.terminationStatus, 0, "a killed rank must fail the job")

        let saved = try XCTUnwrap(savedLine())
        let logged = try XCTUnwrap(Int(saved.components(separatedBy: " @ ")[1].prefix { $0.isNumber }))
        // Resumed automatically from epoch_latest.pt, with the same two processes. (The file may be one save newer
        // than the log's last line, if the kill fell between the two: the resumed run says which step it loaded.)
        let maxSteps = logged + 6
        let resumed = try runCommand(
            mpirun,
            ["-np", "2", builtCNCLIP.path] + common
                + ["--batch-size", "10", "--max-steps", "\(maxSteps)", "--name", name, "--valid-epoch-interval", "None"],
            environment: mpiEnvironment)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let loaded = try XCTUnwrap(resumed.stderr.split(separator: "\n").first { $0.contains("=> loaded checkpoint '\(latest.path)'") })
        let step = try XCTUnwrap(Int(loaded.components(separatedBy: " @ ")[1].prefix { $0.isNumber }))
        XCTAssertTrue(step == logged || step == logged + 3, loaded.description)
        XCTAssertEqual(losses(resumed.stderr).count, maxSteps - step, resumed.stderr)
        // And with one process, starting the data over.
        let single = try runCNCLIP(
            common + [
                "--batch-size", "10", "--max-steps", "2", "--name", name, "--reset-data-offset",
                "--valid-epoch-interval", "None",
            ])
        XCTAssertEqual(single.status, 0, single.stderr)
        XCTAssertEqual(losses(single.stderr).count, 2, single.stderr)
    }

    /// A rank that stops answering (SIGSTOP: a hung host, a cut link) does not hold the job forever: the other rank's
    /// collective gives up after --comm-timeout with a message naming the call, the wait and the flag, and mpirun
    /// ends the job. (MPI's collectives never time out by themselves; torch.distributed's default is 30 minutes.)
    func testAStoppedRankEndsTheJobAfterTheCommunicationTimeout() throws {
        let mpirun = try self.mpirun
        let common = try prepare(train: 400)
        let name = "stopped-\(UUID().uuidString.prefix(8))"
        let errors = scratch.appendingPathComponent("stderr.txt")
        FileManager.default.createFile(atPath: errors.path, contents: nil)
        let p = Process()
        p.executableURL = mpirun
        p.arguments =
            ["-np", "2", builtCNCLIP.path] + common + [
                "--batch-size", "10", "--max-steps", "100000", "--name", name, "--valid-epoch-interval", "None",
                "--comm-timeout", "2",
            ]
        p.environment = ProcessInfo.processInfo.environment.merging(mpiEnvironment) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = try FileHandle(forWritingTo: errors)
        try p.run()
        // Training has begun once a step is logged.
        func stepped() -> Bool { ((try? String(contentsOf: errors, encoding: .utf8)) ?? "").contains("Global Steps: ") }
        var waited = 0.0
        while !stepped() && p.isRunning && waited < 120 { Thread.sleep(forTimeInterval: 0.1); waited += 0.1 }
        XCTAssertTrue(stepped(), "no training step after 120 s")
        let ranks = try self.ranks(of: name)
        kill(try XCTUnwrap(ranks.last), SIGSTOP)
        let stopped = Date()
        while p.isRunning && Date().timeIntervalSince(stopped) < 60 { Thread.sleep(forTimeInterval: 0.1) }
        if p.isRunning {
            for pid in ranks { kill(pid, SIGKILL) }
            p.terminate()
            XCTFail("the job still runs 60 s after a rank stopped, with --comm-timeout 2")
            return
        }
        XCTAssertNotEqual(p.terminationStatus, 0, "a timed-out collective must fail the job")
        let text = try String(contentsOf: errors, encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.contains("has waited") }, text)
        XCTAssertTrue(line.hasPrefix("error: rank ") && line.contains(" of 2: MPI_"), String(line))
        XCTAssertTrue(line.contains("for the other ranks (--comm-timeout 2)") && line.contains("--resume"), String(line))
    }
}
