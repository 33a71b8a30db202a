// swift-tools-version: 6.1
import PackageDescription

// One target per concern; imports point downward only. The README's Layout table says what each target holds.

let package = Package(
    name: "ChineseCLIP",
    platforms: [.macOS(.v15)],  // Synchronization.Mutex
    products: [
        .library(name: "ChineseCLIP", targets: ["ChineseCLIP"]),
        .executable(name: "cnclip", targets: ["cnclip"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The demo server's HTTP stack; no traits: swift-configuration support is not needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // System libraries from the distribution's packages (scripts/install-deps.sh).
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CWebP", pkgConfig: "libwebp", providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // FAISS through a C interface of our own: Debian's libfaiss-dev has only the static C++ library
        // (built with OpenMP, against the system BLAS/LAPACK).
        .target(
            name: "CFaiss",
            linkerSettings: [
                .linkedLibrary("faiss"), .linkedLibrary("gomp"), .linkedLibrary("lapack"),
                .linkedLibrary("blas"), .linkedLibrary("stdc++"),
            ]),

        // Our GEMMs and elementwise kernels (C with vector kernels chosen at run time; no build flags, so the package stays
        // usable as a dependency).
        .target(name: "CKernels"),
        // What every target shares: the safe output writer, Python's JSON text, the seeded generator, Base64.
        .target(name: "Essentials"),
        .target(name: "Tensors", dependencies: ["CKernels", "Essentials"]),
        .target(name: "NeuralNet", dependencies: ["CKernels", "Tensors", "Essentials"]),
        // Checkpoints pickles NeuralNet's optimizer state dict; NeuralNet knows nothing of files.
        .target(name: "Checkpoints", dependencies: ["Tensors", "NeuralNet", "Essentials"]),
        .target(name: "Tokenization", dependencies: ["Essentials"], resources: [.copy("Resources/vocab.txt")]),
        .target(name: "Imaging", dependencies: ["Essentials", "CTurboJPEG", "CPNG", "CWebP"]),
        .target(name: "ChineseCLIP", dependencies: ["Essentials", "Tensors", "NeuralNet", "Checkpoints", "Tokenization", "Imaging"]),
        .target(name: "Datasets", dependencies: ["Essentials", "Checkpoints", "Imaging", "CLMDB"]),
        .target(name: "Distributed", dependencies: ["CMPI"]),
        .target(
            name: "Training",
            dependencies: ["Essentials", "Distributed", "Datasets", "ChineseCLIP", "NeuralNet", "Tensors", "Checkpoints", "Imaging", "Tokenization"]),
        .target(name: "FeatureExtraction", dependencies: ["Essentials", "Datasets", "ChineseCLIP", "Imaging", "Tensors", "Tokenization"]),
        .target(
            name: "Evaluation", dependencies: ["CKernels", "Essentials", "ChineseCLIP", "Imaging", "NeuralNet", "Tensors", "Tokenization"],
            resources: [.copy("Resources/zeroshot_templates.json")]),
        .target(
            name: "Gallery",
            dependencies: ["Essentials", "Datasets", "FeatureExtraction", "Evaluation", "ChineseCLIP", "Imaging", "Tensors", "Checkpoints", "CFaiss"]),
        .target(
            name: "DemoServer",
            dependencies: [
                "Gallery", "Evaluation", "ChineseCLIP", "Essentials", "Imaging", "Tensors", "Tokenization",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ], resources: [.copy("Resources/index.html")]),
        .executableTarget(
            name: "cnclip",
            dependencies: [
                "ChineseCLIP", "Datasets", "Distributed", "Essentials", "FeatureExtraction", "Evaluation", "Gallery", "DemoServer", "Imaging",
                "NeuralNet", "Tensors", "Training", "Tokenization",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Test helpers (a loopback HTTP server); not a product.
        .target(name: "TestSupport", dependencies: ["Checkpoints", "Essentials", "Tensors"], path: "Sources/TestSupport"),

        .testTarget(name: "EssentialsTests", dependencies: ["Essentials"]),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "CKernels", "Checkpoints", "Essentials", "TestSupport"]),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet", "Tensors", "Checkpoints", "TestSupport"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Essentials", "NeuralNet", "Tensors", "TestSupport"]),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "Essentials", "TestSupport"]),
        .testTarget(name: "ChineseCLIPTests", dependencies: ["ChineseCLIP", "Checkpoints", "Imaging", "NeuralNet", "Tensors", "TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Essentials", "Checkpoints", "Imaging", "NeuralNet"]),
        .testTarget(name: "FeatureExtractionTests", dependencies: ["FeatureExtraction"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: ["Training", "Distributed", "ChineseCLIP", "Checkpoints", "NeuralNet", "Tensors", "Tokenization", "TestSupport"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "CKernels", "Essentials", "ChineseCLIP", "Tensors"]),
        .testTarget(
            name: "DemoServerTests", dependencies: ["cnclip", "DemoServer", "Gallery", "Evaluation", "ChineseCLIP", "Imaging", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["cnclip", "Checkpoints", "ChineseCLIP", "Imaging", "Tokenization", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)

// libFuzzer harnesses (Fuzz/<Name>/), only when CNCLIP_FUZZ=1: scripts/fuzz.sh builds them into .build-fuzz with
// `-sanitize=fuzzer,address`. Without the variable the package is exactly the one above.
if Context.environment["CNCLIP_FUZZ"] == "1" {
    let harnesses: [(String, [Target.Dependency])] = [
        ("FuzzPickle", ["Checkpoints", "NeuralNet", "Tensors"]),
        ("FuzzTorchSave", ["Checkpoints", "NeuralNet"]),
        ("FuzzSafeTensors", ["Checkpoints"]),
        ("FuzzHFConfig", ["ChineseCLIP", "Tensors", "Tokenization"]),
        ("FuzzJSON", ["Essentials", "Datasets", "Evaluation"]),
        ("FuzzTSV", ["Datasets", "Essentials", "Imaging"]),
        ("FuzzLMDBRecords", ["Datasets", "Checkpoints", "Essentials"]),
        ("FuzzTokenizer", ["Tokenization"]),
        ("FuzzImage", ["Imaging"]),
        ("FuzzServer", ["DemoServer", "ChineseCLIP", "Gallery", "TestSupport"]),
    ]
    // libFuzzer's driver entry point (the harnesses' top-level code calls it; SwiftPM's own `main` runs first).
    package.targets.append(.systemLibrary(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"))
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/FuzzSupport"))
    for (name, dependencies) in harnesses {
        package.targets.append(
            .executableTarget(name: name, dependencies: dependencies + ["CLibFuzzer", "FuzzSupport"], path: "Fuzz/\(name)"))
    }
}
