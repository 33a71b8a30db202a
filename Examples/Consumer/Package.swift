// swift-tools-version: 6.1
// swift-format-ignore-file
// (Not formatted: the DocC getting-started article quotes this manifest line for line.)
import PackageDescription

let package = Package(
    name: "Consumer",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The checkout of ChineseCLIP, named: a path dependency is otherwise known by its folder's name.
        .package(name: "ChineseCLIP", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "Consumer", dependencies: [
            .product(name: "ChineseCLIP", package: "ChineseCLIP"),
        ]),
    ]
)
