// swift-tools-version: 6.1
import PackageDescription

// One target per concern; imports point downward only (see DESIGN.md in the project's shared notes).
let package = Package(
    name: "ChineseCLIP",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ChineseCLIP", targets: ["ChineseCLIP"]),
        .executable(name: "cnclip", targets: ["cnclip"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries from the distribution's packages (scripts/install-deps.sh).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CWebP", pkgConfig: "libwebp", providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        .target(name: "Tensors", dependencies: ["COpenBLAS"]),
        .target(name: "NeuralNet", dependencies: ["Tensors"]),
        .target(name: "Checkpoints", dependencies: ["Tensors"]),
        .target(name: "Tokenization", resources: [.copy("Resources/vocab.txt")]),
        .target(name: "Imaging", dependencies: ["CTurboJPEG", "CPNG", "CWebP"]),
        .target(name: "ChineseCLIP", dependencies: ["Tensors", "NeuralNet", "Checkpoints", "Tokenization", "Imaging"]),
        .target(name: "Datasets", dependencies: ["ChineseCLIP", "Checkpoints", "Imaging", "NeuralNet", "Tensors", "Tokenization", "CLMDB"]),
        .target(name: "Distributed", dependencies: ["CMPI"]),
        .target(name: "Training", dependencies: ["Distributed", "Datasets", "ChineseCLIP", "NeuralNet", "Tensors", "Checkpoints", "Imaging", "Tokenization"]),
        .target(name: "Retrieval", dependencies: ["Datasets", "ChineseCLIP", "Imaging", "NeuralNet", "Tensors", "Tokenization"], resources: [.copy("Resources/zeroshot_templates.json")]),
        .executableTarget(name: "cnclip", dependencies: [
            "ChineseCLIP", "Datasets", "Distributed", "Retrieval", "NeuralNet", "Tensors", "Training", "Tokenization",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Test helpers (a loopback HTTP server); not a product.
        .target(name: "TestSupport", dependencies: ["Tensors"], path: "Sources/TestSupport"),

        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "Checkpoints", "TestSupport"]),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet", "Tensors", "Checkpoints", "TestSupport"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Tensors"]),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging"]),
        .testTarget(name: "ChineseCLIPTests", dependencies: ["ChineseCLIP", "Checkpoints", "Imaging", "NeuralNet", "Tensors", "TestSupport"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Checkpoints", "Imaging", "NeuralNet"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Distributed", "ChineseCLIP", "Checkpoints", "Datasets", "NeuralNet", "Tensors", "Tokenization"]),
        .testTarget(name: "RetrievalTests", dependencies: ["Retrieval", "ChineseCLIP", "Tensors"]),
        .testTarget(name: "CLITests", dependencies: ["cnclip", "Checkpoints", "ChineseCLIP", "Imaging", "Tokenization", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
