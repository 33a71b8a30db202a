import Foundation
import TestSupport
import XCTest

/// `cnclip extract-features` under `mpirun` (the batches shared among the ranks, rank 0 writing the same files as
/// one process would), a rank's failure ending the whole job, and the finetuning run_scripts' mpirun command.
final class DistributedCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-mpi-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// Open MPI's launcher: /usr/bin/mpirun, else the first on PATH. A missing one fails the test (CI installs it).
    func mpirun(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = ["/usr/bin"] + path.split(separator: ":").map(String.init)
        for dir in candidates {
            let url = URL(fileURLWithPath: dir).appendingPathComponent("mpirun")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        let message = "mpirun not found in /usr/bin or on PATH: run scripts/install-deps.sh (it installs Open MPI)"
        XCTFail(message, file: file, line: line)
        throw MissingTool(description: message)
    }

    /// A tool the test needs is not installed.
    struct MissingTool: Error, CustomStringConvertible { let description: String }

    /// Lets mpirun run as root (containers, CI); harmless for other users.
    let mpiEnvironment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]

    /// `cnclip args` in `ranks` processes under mpirun, killed if still running after `timeout` seconds.
    func mpiCNCLIP(_ ranks: Int, _ args: [String], timeout: TimeInterval = 300) throws -> CommandResult {
        try runCommand(
            try mpirun(), ["--oversubscribe", "-np", String(ranks), builtCNCLIP.path] + args,
            environment: mpiEnvironment, timeout: timeout)
    }

    func cnclip(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CommandResult {
        let r = try runCNCLIP(args, timeout: 300)
        XCTAssertEqual(r.status, 0, "cnclip \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    var modelArgs: [String] {
        [
            "--resume", Self.fixtures.appendingPathComponent("models/vit-tiny.pt").path,
            "--config", Self.fixtures.appendingPathComponent("models/vit-tiny.json").path, "--context-length", "32",
        ]
    }

    /// A synthetic dataset of 40 validation images and texts, with its LMDB.
    func syntheticData() throws -> URL {
        let data = scratch.appendingPathComponent("data")
        _ = try cnclip(["synth-dataset", "--output", data.path, "--train", "0", "--valid", "40", "--test", "0", "--seed", "11"])
        _ = try cnclip(["build-lmdb", "--data_dir", data.path, "--splits", "valid"])
        return data
    }

    /// extract-features on `data`'s valid split into `dir` (image and text features).
    func extractArgs(_ data: URL, _ dir: URL, imageData: String? = nil) throws -> [String] {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return [
            "extract-features", "--extract-image-feats", "--extract-text-feats",
            "--image-data", imageData ?? data.appendingPathComponent("lmdb/valid/imgs").path,
            "--text-data", data.appendingPathComponent("valid_texts.jsonl").path,
            "--image-feat-output-path", dir.appendingPathComponent("img.jsonl").path,
            "--text-feat-output-path", dir.appendingPathComponent("txt.jsonl").path,
            // 40 images in 14 batches, 40 texts in 10: several per rank, and a short last round for 3 ranks.
            "--img-batch-size", "3", "--text-batch-size", "4",
            // The same compute threads in every process: BLAS products are split by thread count, and OpenBLAS
            // rounds a product's columns differently when it computes them in narrower calls.
            "--threads", "1",
        ] + modelArgs
    }

    func testRanksWriteTheFilesOneProcessWrites() throws {
        let data = try syntheticData()
        let one = scratch.appendingPathComponent("one")
        _ = try cnclip(try extractArgs(data, one))
        let image = try Data(contentsOf: one.appendingPathComponent("img.jsonl"))
        let text = try Data(contentsOf: one.appendingPathComponent("txt.jsonl"))
        XCTAssertEqual(image.filter { $0 == 0x0A }.count, 40)
        XCTAssertEqual(text.filter { $0 == 0x0A }.count, 40)

        for ranks in [2, 3] {
            let dir = scratch.appendingPathComponent("np\(ranks)")
            let r = try mpiCNCLIP(ranks, try extractArgs(data, dir))
            XCTAssertFalse(r.timedOut, "mpirun -np \(ranks) hung")
            XCTAssertEqual(r.status, 0, "mpirun -np \(ranks): \(r.stderr)\n\(r.stdout)")
            XCTAssertEqual(
                try Data(contentsOf: dir.appendingPathComponent("img.jsonl")), image, "-np \(ranks): image features differ from one process's")
            XCTAssertEqual(
                try Data(contentsOf: dir.appendingPathComponent("txt.jsonl")), text, "-np \(ranks): text features differ from one process's")
            XCTAssertEqual(
                try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["img.jsonl", "txt.jsonl"],
                "no temporary file left")
            // Only rank 0 speaks.
            XCTAssertEqual(r.stdout.components(separatedBy: "40 image features are stored in").count - 1, 1, r.stdout)
            XCTAssertEqual(r.stdout.components(separatedBy: "40 text features are stored in").count - 1, 1, r.stdout)
            XCTAssertEqual(r.stdout.components(separatedBy: "Done!").count - 1, 1, r.stdout)
        }
    }

    func testAFailingRankEndsTheJob() throws {
        let data = try syntheticData()
        // An LMDB whose 4th image (cursor order) is not an image: with 3 images a batch it is in batch 1, rank 1's
        // with 2 ranks, while rank 0 computes batch 0 and then waits for rank 1 in the gather.
        let bad = scratch.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        let rows = try String(contentsOf: data.appendingPathComponent("valid_imgs.tsv"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        let ids = rows.map { $0[0] }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let broken = ids[3]
        let junk = Data(repeating: 0x41, count: 100).base64EncodedString()
        try rows.map { "\($0[0])\t\($0[0] == broken ? junk : $0[1])\n" }.joined()
            .write(to: bad.appendingPathComponent("valid_imgs.tsv"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: data.appendingPathComponent("valid_texts.jsonl"), to: bad.appendingPathComponent("valid_texts.jsonl"))
        _ = try cnclip(["build-lmdb", "--data_dir", bad.path, "--splits", "valid"])

        let out = scratch.appendingPathComponent("out")
        var args = try extractArgs(bad, out)
        args.removeAll { $0 == "--extract-text-feats" }
        let started = Date()
        var r = try mpiCNCLIP(2, args, timeout: 120)
        XCTAssertFalse(r.timedOut, "the job hung after rank 1 failed: \(r.stderr)")
        XCTAssertLessThan(Date().timeIntervalSince(started), 120)
        XCTAssertNotEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stderr.contains("error (rank 1 of 2)") && r.stderr.contains("image id \(broken)"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), [], "no output or temporary file left")

        // Every rank failing alike (a missing LMDB) ends the job too, naming the path.
        let missing = scratch.appendingPathComponent("none/imgs").path
        r = try mpiCNCLIP(2, try extractArgs(data, out, imageData: missing), timeout: 120)
        XCTAssertFalse(r.timedOut, "the job hung: \(r.stderr)")
        XCTAssertNotEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stderr.contains(missing) && r.stderr.contains("(rank "), r.stderr)
    }

    // MARK: run_scripts

    /// Runs a finetuning script in dry-run mode; returns what it printed.
    func dryRun(_ script: String, _ environment: [String: String], arguments: [String]) throws -> CommandResult {
        let url = Self.repository.appendingPathComponent("run_scripts/\(script)")
        var env = ["DRY_RUN": "1", "CNCLIP": builtCNCLIP.path, "MPIRUN": "mpirun"]
        env.merge(environment) { $1 }
        return try runCommand(URL(fileURLWithPath: "/bin/bash"), [url.path] + arguments, environment: env, timeout: 60)
    }

    func testFinetuneScriptsLaunchCnclipTrainThroughMpirun() throws {
        let datapath = scratch.appendingPathComponent("datapath").path
        let hostfile = scratch.appendingPathComponent("hosts")
        try "host1 slots=2\nhost2 slots=2\n".write(to: hostfile, atomically: true, encoding: .utf8)
        for (script, dataset, extra) in [
            ("muge_finetune_vit-b-16_rbt-base.sh", "MUGE", [String]()),
            ("flickr30k_finetune_vit-b-16_rbt-base.sh", "Flickr30k-CN", []),
            ("coco-cn_finetune_vit-b-16_rbt-base.sh", "COCO-CN", ["--grad-checkpointing"]),
        ] {
            let syntax = try runCommand(
                URL(fileURLWithPath: "/bin/bash"), ["-n", Self.repository.appendingPathComponent("run_scripts/\(script)").path])
            XCTAssertEqual(syntax.status, 0, "bash -n \(script): \(syntax.stderr)")
            let r = try dryRun(
                script,
                [
                    "GPUS_PER_NODE": "2", "WORKER_CNT": "2", "HOSTFILE": hostfile.path,
                    "MPIRUN_ARGS": "--mca btl_tcp_if_include eth0",
                ],
                arguments: [datapath, "--max-steps", "7"])
            XCTAssertEqual(r.status, 0, "\(script): \(r.stderr)")
            let commandLine = r.stdout.split(separator: "\n").last { !$0.hasPrefix("#") }.map(String.init) ?? ""
            let words = commandLine.split(separator: " ").map(String.init)
            XCTAssertEqual(Array(words.prefix(7)), ["mpirun", "-np", "4", "--map-by", "ppr:2:node", "--hostfile", hostfile.path], commandLine)
            XCTAssertTrue(commandLine.contains(" --mca btl_tcp_if_include eth0 "), commandLine)
            guard let train = words.firstIndex(of: "train"), train > 0, words[train - 1] == builtCNCLIP.path else {
                XCTFail("\(script): no `cnclip train` in \(commandLine)"); continue
            }
            let trainArgs = Array(words[(train + 1)...])
            for flag in [
                "--train-data=\(datapath)/datasets/\(dataset)/lmdb/train", "--val-data=\(datapath)/datasets/\(dataset)/lmdb/valid",
                "--resume=\(datapath)/pretrained_weights/clip_cn_vit-b-16.pt", "--reset-data-offset", "--reset-optimizer",
                "--logs=\(datapath)/experiments/", "--vision-model=ViT-B-16", "--text-model=RoBERTa-wwm-ext-base-chinese",
                "--use-augment", "--report-training-batch-acc", "--context-length=52",
            ] + extra {
                XCTAssertTrue(trainArgs.contains(flag), "\(script): \(flag) missing from \(trainArgs)")
            }
            XCTAssertEqual(Array(trainArgs.suffix(2)), ["--max-steps", "7"], "extra arguments go to cnclip train")
            // Every flag is one `cnclip train` knows: parsing succeeds and it fails only on the missing dataset.
            let parsed = try runCNCLIP(["train"] + trainArgs, timeout: 120)
            XCTAssertNotEqual(parsed.status, 0)
            XCTAssertNotEqual(parsed.status, 64, "\(script): cnclip train rejected its arguments: \(parsed.stderr)")
            XCTAssertFalse(parsed.stderr.contains("Usage:"), "\(script): \(parsed.stderr)")
            XCTAssertTrue(parsed.stderr.contains("\(datapath)/datasets/\(dataset)/lmdb/train"), "\(script): \(parsed.stderr)")
        }

        // HOSTS (the machines, the first being this one) becomes a hostfile of GPUS_PER_NODE slots each.
        var r = try dryRun(
            "muge_finetune_vit-b-16_rbt-base.sh", ["GPUS_PER_NODE": "3", "WORKER_CNT": "2", "HOSTS": "alpha,beta"],
            arguments: [datapath])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("# alpha slots=3\n# beta slots=3\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpirun -np 6 --map-by ppr:3:node --hostfile "), r.stdout)
        // One machine needs no hostfile; several need one.
        r = try dryRun("muge_finetune_vit-b-16_rbt-base.sh", [:], arguments: [datapath])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 1 --map-by ppr:1:node \(builtCNCLIP.path) train "), r.stdout)
        r = try dryRun("muge_finetune_vit-b-16_rbt-base.sh", ["WORKER_CNT": "2"], arguments: [datapath])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("HOSTFILE"), r.stderr)
        // The reference starts the script on every machine; with mpirun only the first (RANK=0) launches.
        r = try dryRun("muge_finetune_vit-b-16_rbt-base.sh", ["RANK": "1", "WORKER_CNT": "2", "HOSTFILE": hostfile.path], arguments: [datapath])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.contains("mpirun"), r.stdout)
        XCTAssertTrue(r.stderr.contains("RANK=0"), r.stderr)
        // No DATAPATH: the usage.
        r = try dryRun("muge_finetune_vit-b-16_rbt-base.sh", [:], arguments: [])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("DATAPATH"), r.stderr)
    }
}
