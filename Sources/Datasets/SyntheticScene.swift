// The scenes of the synthetic demo dataset (DESIGN.md, "The synthetic demo"): 1–2 coloured shapes at named
// positions, and their Chinese captions. A scene is the *meaning* of an image; everything a caption does not say
// (exact offset, rotation, shade, noise) is left to the renderer, so identical scenes share identical captions.

import Essentials

/// A synthetic scene: up to five shapes, at most one per position, kept in caption (reading) order.
package struct SyntheticScene: Hashable, Sendable {
    /// The kinds of shape.
    package enum Shape: Int, CaseIterable, Sendable {
        /// 圆形.
        case circle
        /// 正方形.
        case square
        /// 三角形 (equilateral, pointing up).
        case triangle
        /// 星形 (five-pointed).
        case star
        /// The Chinese name used in captions.
        package var name: String { ["圆形", "正方形", "三角形", "星形"][rawValue] }
    }

    /// The eight colours.
    package enum Colour: Int, CaseIterable, Sendable {
        /// 红色.
        case red
        /// 绿色.
        case green
        /// 蓝色.
        case blue
        /// 黄色.
        case yellow
        /// 紫色.
        case purple
        /// 橙色.
        case orange
        /// 黑色.
        case black
        /// 白色.
        case white
        /// The Chinese name used in captions.
        package var name: String { ["红色", "绿色", "蓝色", "黄色", "紫色", "橙色", "黑色", "白色"][rawValue] }
        /// The nominal sRGB value (the renderer jitters it slightly).
        package var rgb: (r: UInt8, g: UInt8, b: UInt8) {
            // Chosen to stay apart from each other and from the 105–154 grey background, including luminance,
            // so that 4:2:0 JPEG chroma subsampling does not merge small shapes into the background.
            [
                (215, 35, 35), (40, 165, 60), (35, 75, 215), (240, 215, 35),
                (135, 55, 185), (245, 135, 25), (20, 20, 20), (240, 240, 240),
            ][rawValue]
        }
    }

    /// The five positions, declared in caption order: top row left to right, the centre, then the bottom row.
    package enum Position: Int, CaseIterable, Comparable, Sendable {
        /// 左上角.
        case topLeft
        /// 右上角.
        case topRight
        /// 中间.
        case center
        /// 左下角.
        case bottomLeft
        /// 右下角.
        case bottomRight
        /// The Chinese name used in captions.
        package var name: String { ["左上角", "右上角", "中间", "左下角", "右下角"][rawValue] }
        /// The nominal centre as fractions (x, y) of the image side, y downwards.
        package var centre: (x: Double, y: Double) {
            let near = SyntheticScene.cornerInset, far = 1 - SyntheticScene.cornerInset
            return [(near, near), (far, near), (0.5, 0.5), (near, far), (far, far)][rawValue]
        }
        /// Caption order.
        package static func < (a: Position, b: Position) -> Bool { a.rawValue < b.rawValue }
    }

    /// The two sizes.
    package enum Size: Int, CaseIterable, Sendable {
        /// 大.
        case large
        /// 小.
        case small
        /// The Chinese name used in captions.
        package var name: String { ["大", "小"][rawValue] }
        /// The nominal radius as a fraction of the image side (shapes are drawn to about this radius).
        package var radius: Double { [0.16, 0.095][rawValue] }
    }

    /// One shape of a scene.
    package struct Object: Hashable, Sendable {
        /// What is drawn.
        package var shape: Shape
        /// Its colour.
        package var colour: Colour
        /// Large or small.
        package var size: Size
        /// Where it is.
        package var position: Position

        /// An object from its four attributes.
        package init(shape: Shape, colour: Colour, size: Size, position: Position) {
            self.shape = shape
            self.colour = colour
            self.size = size
            self.position = position
        }

        /// Its caption clause, e.g. "左上角有一个红色的大圆形".
        package var clause: String { "\(position.name)有一个\(colour.name)的\(size.name)\(shape.name)" }
    }

    /// Distance of the corner positions' centres from the image edges, as a fraction of the side: far enough in for
    /// a large shape plus its jitter to stay inside, far enough out that it does not touch a large central shape.
    static let cornerInset = 0.21

    /// The objects, sorted by position (caption order).
    package let objects: [Object]

    /// A scene of 1–5 objects in distinct positions (given in any order; stored in caption order).
    package init(_ objects: [Object]) throws(DatasetError) {
        guard (1...Position.allCases.count).contains(objects.count) else {
            throw DatasetError.invalidArgument("a synthetic scene holds 1 to \(Position.allCases.count) shapes, not \(objects.count)")
        }
        let sorted = objects.sorted { $0.position < $1.position }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.position == b.position {
            throw DatasetError.invalidArgument("two shapes of a synthetic scene are both at \(a.position.name)")
        }
        self.objects = sorted
    }

    /// The scene's caption: one clause per object in position order, joined by "，",
    /// e.g. "左上角有一个红色的大圆形，中间有一个黑色的小三角形".
    package var caption: String { objects.map(\.clause).joined(separator: "，") }

    /// Parses a caption written by ``caption``; nil when it does not follow that grammar exactly.
    package init?(caption: String) {
        var objects: [Object] = []
        for clause in caption.split(separator: "，", omittingEmptySubsequences: false) {
            guard let position = Position.allCases.first(where: { clause.hasPrefix($0.name) }) else { return nil }
            var rest = clause.dropFirst(position.name.count)
            guard rest.hasPrefix("有一个") else { return nil }
            rest = rest.dropFirst(3)
            guard let colour = Colour.allCases.first(where: { rest.hasPrefix($0.name + "的") }) else { return nil }
            rest = rest.dropFirst(colour.name.count + 1)
            guard let size = Size.allCases.first(where: { rest.hasPrefix($0.name) }) else { return nil }
            rest = rest.dropFirst(size.name.count)
            guard let shape = Shape.allCases.first(where: { rest == $0.name }) else { return nil }
            objects.append(Object(shape: shape, colour: colour, size: size, position: position))
        }
        guard let scene = try? SyntheticScene(objects), scene.caption == caption else { return nil }  // also rejects out-of-order clauses
        self = scene
    }

    /// A random scene: 1 or 2 shapes (2 with probability `twoShapeFraction`) with independent uniform attributes
    /// and distinct positions.
    package static func random(using rng: inout SplitMix64, twoShapeFraction: Double = 0.5) -> SyntheticScene {
        let count = rng.unitInterval() < twoShapeFraction ? 2 : 1
        var positions = Position.allCases
        var objects: [Object] = []
        for _ in 0..<count {
            let position = positions.remove(at: rng.below(positions.count))
            objects.append(
                Object(
                    shape: Shape.allCases[rng.below(Shape.allCases.count)],
                    colour: Colour.allCases[rng.below(Colour.allCases.count)],
                    size: Size.allCases[rng.below(Size.allCases.count)],
                    position: position))
        }
        return try! SyntheticScene(objects)  // distinct positions by construction
    }
}

extension SplitMix64 {
    /// A uniform Double in [0, 1), from the top 53 bits (the same on every platform, unlike `Double.random(in:using:)`'s
    /// unspecified algorithm).
    mutating func unitInterval() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// A uniform integer in 0..<n (multiply-high; the bias is below 2⁻⁵⁰ for the small n used here).
    mutating func below(_ n: Int) -> Int { Int(next().multipliedFullWidth(by: UInt64(n)).high) }

    /// A uniform Double in [lo, hi).
    mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * unitInterval() }
}
