// The reference's training augmentation (`cnclip train --use-augment`), as established from the code of
// cn_clip 1.6.0 (training/data.py `_build_transform`), timm 1.0.31 (data/transforms_factory.py,
// transforms.py, auto_augment.py), torchvision 0.29 and Pillow 13.0:
//
// cn_clip calls `create_transform(input_size=res, scale=(0.9, 1.0), is_training=True, color_jitter=None,
// auto_augment='original', interpolation='bicubic', mean=CLIP mean, std=CLIP std)`, which is timm's
// `transforms_imagenet_train` (train_crop_mode 'rrc', hflip 0.5, vflip 0, re_prob 0, no colour jitter —
// and colour jitter would be disabled by AutoAugment anyway) =
//     [RandomResizedCropAndInterpolation, RandomHorizontalFlip(0.5), AutoAugment, MaybeToTensor, Normalize]
// and then inserts `convert('RGB')` before the last three, so the pipeline is:
//  1. RandomResizedCropAndInterpolation(res, scale=(0.9, 1.0), ratio=(3/4, 4/3), BICUBIC) on the image in its
//     own mode. `get_params`: up to 10 tries of target_area = uniform(0.9, 1.0) * w * h, aspect =
//     exp(uniform(log 3/4, log 4/3)), tw = int(round(sqrt(area * aspect))), th = int(round(sqrt(area /
//     aspect))) (Python's round: half to even); the first try with tw <= w and th <= h gives i = randint(0,
//     h - th), j = randint(0, w - tw) (inclusive). Otherwise a centred fallback: w/h below 3/4 -> (w,
//     round(w / (3/4))); above 4/3 -> (round(h * 4/3), h); else the whole image; i = (h - th) // 2,
//     j = (w - tw) // 2. Then torchvision's resized_crop: Pillow crop((j, i, j + tw, i + th)) and
//     resize((res, res), BICUBIC) — Pillow's resize, so P and "1" images use NEAREST and RGBA/LA are
//     resized premultiplied (see Resample.swift); no resize when the crop is already res x res.
//  2. RandomHorizontalFlip(p=0.5): `torch.rand(1) < 0.5` -> Pillow FLIP_LEFT_RIGHT, still in the own mode.
//  3. convert('RGB') (Convert.swift).
//  4. AutoAugment 'original' (timm's `auto_augment_policy_original`): one of 25 sub-policies chosen
//     uniformly (`random.choice`; several sub-policies appear twice, so they are twice as likely), each a
//     pair of ops applied in order. An op with probability p < 1 is skipped when random() > p (so p = 0.0
//     practically never applies, p = 1.0 always does, drawing nothing). No magnitude noise (no 'mstd'):
//     magnitudes are fixed and clamped to [0, 10]. hparams: fillcolor = img_mean = tuple(min(255,
//     round(255 * m)) for m in CLIP mean) = (123, 117, 104); resample = BICUBIC (from interpolation
//     'bicubic'; timm's random BILINEAR/BICUBIC choice only applies without it); translate_const =
//     int(res * 0.45) (unused: the policy has no Translate op). The ops of 'original' and their arguments
//     (level = magnitude / 10):
//       PosterizeOriginal  bits = int(level * 4) + 4           -> ImageOps.posterize (8 bits returns the image)
//       Solarize           threshold = min(256, int(level * 256)) -> ImageOps.solarize
//       Rotate             degrees = level * 30, negated with probability 1/2 (random() > 0.5)
//                          -> img.rotate(deg, resample=BICUBIC, fillcolor=(123, 117, 104))
//       ShearX             factor = level * 0.3, negated likewise
//                          -> img.transform(size, AFFINE, (1, factor, 0, 0, 1, 0), BICUBIC, fillcolor=...)
//       Color/Contrast/Sharpness  factor = level * 1.8 + 0.1 (never negated) -> ImageEnhance.*.enhance
//       AutoContrast, Equalize, Invert  no argument            -> ImageOps.autocontrast/equalize/invert
//     (Brightness, ShearY and Translate{X,Y} are implemented too, with explicit arguments, but 'original'
//     does not use them.) The pixel operations are in Enhance.swift and Geometry.swift.
//  5. MaybeToTensor + Normalize(CLIP mean, std): the same fp32 arithmetic as the plain transform
//     (Preprocess.swift).
// The validation split never augments (`split == "train" and use_augment`).
//
// Random draws: the reference draws from Python's `random` and torch's generator inside DataLoader
// workers, which are not reproducible across runs, so only the distributions are matched: every
// uniform(0, 1) here is 53 random bits (as Python's random()), integers are drawn without bias, and the
// caller supplies the generator (Training derives one per (seed, epoch, sample index) so that resuming a
// killed run replays the same augmentations).

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One image operation with its argument resolved, as timm's `AugmentOp` ends up calling Pillow.
package enum AugmentOperation: Equatable, Sendable {
    /// `ImageOps.autocontrast`.
    case autoContrast
    /// `ImageOps.equalize`.
    case equalize
    /// `ImageOps.invert`.
    case invert
    /// `ImageOps.posterize(bits)`; 8 or more bits leave the image unchanged (timm's `posterize`).
    case posterize(bits: Int)
    /// `ImageOps.solarize(threshold)`.
    case solarize(threshold: Int)
    /// `rotate(degrees)` counter-clockwise with the augmentation's filter and fill.
    case rotate(degrees: Double)
    /// `transform(AFFINE, (1, factor, 0, 0, 1, 0))`.
    case shearX(factor: Double)
    /// `transform(AFFINE, (1, 0, 0, factor, 1, 0))`.
    case shearY(factor: Double)
    /// `transform(AFFINE, (1, 0, pixels, 0, 1, 0))`.
    case translateX(pixels: Double)
    /// `transform(AFFINE, (1, 0, 0, 0, 1, pixels))`.
    case translateY(pixels: Double)
    /// `ImageEnhance.Color(img).enhance(factor)`.
    case color(factor: Double)
    /// `ImageEnhance.Contrast(img).enhance(factor)`.
    case contrast(factor: Double)
    /// `ImageEnhance.Brightness(img).enhance(factor)`.
    case brightness(factor: Double)
    /// `ImageEnhance.Sharpness(img).enhance(factor)`.
    case sharpness(factor: Double)

    /// Applies the operation to an L or RGB image; geometric ones resample with `filter` and fill with `fill`.
    package func apply(to image: Image, filter: AffineFilter = .bicubic, fill: [UInt8]) -> Image {
        switch self {
        case .autoContrast: return image.autocontrasted()
        case .equalize: return image.equalized()
        case .invert: return image.inverted()
        case .posterize(let bits): return bits >= 8 ? image : image.posterized(bits: bits)
        case .solarize(let threshold): return image.solarized(threshold: threshold)
        case .rotate(let degrees): return image.rotated(degrees: degrees, filter: filter, fill: fill)
        case .shearX(let f): return image.affineTransformed([1, f, 0, 0, 1, 0], filter: filter, fill: fill)
        case .shearY(let f): return image.affineTransformed([1, 0, 0, f, 1, 0], filter: filter, fill: fill)
        case .translateX(let p): return image.affineTransformed([1, 0, p, 0, 1, 0], filter: filter, fill: fill)
        case .translateY(let p): return image.affineTransformed([1, 0, 0, 0, 1, p], filter: filter, fill: fill)
        case .color(let f): return image.colorEnhanced(f)
        case .contrast(let f): return image.contrastEnhanced(f)
        case .brightness(let f): return image.brightnessEnhanced(f)
        case .sharpness(let f): return image.sharpnessEnhanced(f)
        }
    }
}

/// The timm op names the 'original' AutoAugment policy uses, with their level-to-argument rules.
package enum AutoAugmentOp: String, Sendable, CaseIterable {
    /// Posterize to int(level * 4) + 4 bits (the paper's 4...8 range).
    case posterizeOriginal = "PosterizeOriginal"
    /// Rotate by ±level * 30 degrees.
    case rotate = "Rotate"
    /// Solarize above min(256, int(level * 256)).
    case solarize = "Solarize"
    /// Autocontrast (no argument).
    case autoContrast = "AutoContrast"
    /// Equalize (no argument).
    case equalize = "Equalize"
    /// Invert (no argument).
    case invert = "Invert"
    /// Colour enhance by level * 1.8 + 0.1.
    case color = "Color"
    /// Contrast enhance by level * 1.8 + 0.1.
    case contrast = "Contrast"
    /// Sharpness enhance by level * 1.8 + 0.1.
    case sharpness = "Sharpness"
    /// Shear along x by ±level * 0.3.
    case shearX = "ShearX"

    /// Whether timm's level function negates the argument with probability 1/2 (`_randomly_negate`).
    package var randomlyNegated: Bool { self == .rotate || self == .shearX }

    /// timm's LEVEL_TO_ARG and NAME_TO_OP: the operation at `magnitude` (clamped to 0...10), negated if asked.
    package func operation(magnitude: Double, negated: Bool = false) -> AugmentOperation {
        let level = max(0.0, min(magnitude, 10.0)) / 10.0
        func sign(_ v: Double) -> Double { negated ? -v : v }
        switch self {
        case .posterizeOriginal: return .posterize(bits: Int(level * 4) + 4)
        case .rotate: return .rotate(degrees: sign(level * 30.0))
        case .solarize: return .solarize(threshold: min(256, Int(level * 256)))
        case .autoContrast: return .autoContrast
        case .equalize: return .equalize
        case .invert: return .invert
        case .color: return .color(factor: level * 1.8 + 0.1)
        case .contrast: return .contrast(factor: level * 1.8 + 0.1)
        case .sharpness: return .sharpness(factor: level * 1.8 + 0.1)
        case .shearX: return .shearX(factor: sign(level * 0.3))
        }
    }
}

/// One op of a sub-policy: (name, probability, magnitude) as timm's policy tables list them.
package struct AutoAugmentStep: Equatable, Sendable {
    /// The op.
    package var op: AutoAugmentOp
    /// Probability of applying it.
    package var probability: Double
    /// Its magnitude on timm's 0...10 scale.
    package var magnitude: Double

    /// A step of `op` applied with `probability` at `magnitude`.
    package init(_ op: AutoAugmentOp, _ probability: Double, _ magnitude: Double) {
        self.op = op
        self.probability = probability
        self.magnitude = magnitude
    }
}

/// AutoAugment policies.
package enum AutoAugmentPolicy {
    /// timm's `auto_augment_policy_original` (the ImageNet policy of arXiv:1805.09501), in timm's order.
    package static let original: [[AutoAugmentStep]] = [
        [.init(.posterizeOriginal, 0.4, 8), .init(.rotate, 0.6, 9)],
        [.init(.solarize, 0.6, 5), .init(.autoContrast, 0.6, 5)],
        [.init(.equalize, 0.8, 8), .init(.equalize, 0.6, 3)],
        [.init(.posterizeOriginal, 0.6, 7), .init(.posterizeOriginal, 0.6, 6)],
        [.init(.equalize, 0.4, 7), .init(.solarize, 0.2, 4)],
        [.init(.equalize, 0.4, 4), .init(.rotate, 0.8, 8)],
        [.init(.solarize, 0.6, 3), .init(.equalize, 0.6, 7)],
        [.init(.posterizeOriginal, 0.8, 5), .init(.equalize, 1.0, 2)],
        [.init(.rotate, 0.2, 3), .init(.solarize, 0.6, 8)],
        [.init(.equalize, 0.6, 8), .init(.posterizeOriginal, 0.4, 6)],
        [.init(.rotate, 0.8, 8), .init(.color, 0.4, 0)],
        [.init(.rotate, 0.4, 9), .init(.equalize, 0.6, 2)],
        [.init(.equalize, 0.0, 7), .init(.equalize, 0.8, 8)],
        [.init(.invert, 0.6, 4), .init(.equalize, 1.0, 8)],
        [.init(.color, 0.6, 4), .init(.contrast, 1.0, 8)],
        [.init(.rotate, 0.8, 8), .init(.color, 1.0, 2)],
        [.init(.color, 0.8, 8), .init(.solarize, 0.8, 7)],
        [.init(.sharpness, 0.4, 7), .init(.invert, 0.6, 8)],
        [.init(.shearX, 0.6, 5), .init(.equalize, 1.0, 9)],
        [.init(.color, 0.4, 0), .init(.equalize, 0.6, 3)],
        [.init(.equalize, 0.4, 7), .init(.solarize, 0.2, 4)],
        [.init(.solarize, 0.6, 5), .init(.autoContrast, 0.6, 5)],
        [.init(.invert, 0.6, 4), .init(.equalize, 1.0, 8)],
        [.init(.color, 0.6, 4), .init(.contrast, 1.0, 8)],
        [.init(.equalize, 0.8, 8), .init(.equalize, 0.6, 3)],
    ]
}

/// The random choices of one augmentation: the crop box, the flip, the sub-policy and the ops it applied.
package struct AugmentationDraw: Equatable, Sendable {
    /// Crop box top row in the source image (torchvision's `i`).
    package var top: Int
    /// Crop box left column (`j`).
    package var left: Int
    /// Crop box height (`h`).
    package var height: Int
    /// Crop box width (`w`).
    package var width: Int
    /// Whether the crop is flipped left to right.
    package var flip: Bool
    /// Index of the chosen sub-policy in the policy table.
    package var subPolicy: Int
    /// Positions in the sub-policy of the steps that passed their probability (one per operation).
    package var steps: [Int]
    /// The operations of those steps, in order, with their arguments (signs drawn).
    package var operations: [AugmentOperation]

    /// A draw with every choice given; `steps` only documents where `operations` came from.
    package init(
        top: Int, left: Int, height: Int, width: Int, flip: Bool, subPolicy: Int, steps: [Int] = [],
        operations: [AugmentOperation]
    ) {
        self.top = top
        self.left = left
        self.height = height
        self.width = width
        self.flip = flip
        self.subPolicy = subPolicy
        self.steps = steps
        self.operations = operations
    }
}

/// The reference's `--use-augment` training transform: random resized crop, flip, RGB, AutoAugment 'original'.
package struct TrainingAugmentation: Sendable {
    /// Output side in pixels.
    package let resolution: Int
    /// The sub-policies drawn from.
    package let policy: [[AutoAugmentStep]]
    /// Crop area range, as a fraction of the image (cn_clip's `scale=(0.9, 1.0)`).
    package static let cropScale: (lower: Double, upper: Double) = (0.9, 1.0)
    /// Crop aspect-ratio range (timm's default `(3/4, 4/3)`).
    package static let cropRatio: (lower: Double, upper: Double) = (3.0 / 4.0, 4.0 / 3.0)
    /// Probability of the horizontal flip (timm's default `hflip=0.5`).
    package static let flipProbability = 0.5
    /// Fill colour of rotations and shears: timm's `img_mean`, `min(255, round(255 * m))` of the CLIP mean.
    package static let fill: [UInt8] = [0.48145466, 0.4578275, 0.40821073].map {
        UInt8(min(255, (255 * $0).rounded(.toNearestOrEven)))
    }

    /// The augmentation producing `resolution`² RGB images with timm's 'original' policy.
    package init(resolution: Int, policy: [[AutoAugmentStep]] = AutoAugmentPolicy.original) {
        precondition(resolution > 0, "resolution must be positive, got \(resolution)")
        precondition(!policy.isEmpty, "an AutoAugment policy needs at least one sub-policy")
        self.resolution = resolution
        self.policy = policy
    }

    /// Draws the random choices for a `sourceWidth`x`sourceHeight` image, with the reference's distributions.
    package func draw<G: RandomNumberGenerator>(sourceWidth: Int, sourceHeight: Int, using rng: inout G) -> AugmentationDraw {
        let box = Self.cropBox(width: sourceWidth, height: sourceHeight, using: &rng)
        let flip = uniform01(&rng) < Self.flipProbability
        let index = uniformInt(below: policy.count, &rng)
        var ops: [AugmentOperation] = [], steps: [Int] = []
        for (k, step) in policy[index].enumerated() {
            if step.probability < 1.0 && uniform01(&rng) > step.probability { continue }
            let negated = step.op.randomlyNegated && uniform01(&rng) > 0.5
            ops.append(step.op.operation(magnitude: step.magnitude, negated: negated))
            steps.append(k)
        }
        return AugmentationDraw(
            top: box.top, left: box.left, height: box.height, width: box.width,
            flip: flip, subPolicy: index, steps: steps, operations: ops)
    }

    /// timm's `RandomResizedCropAndInterpolation.get_params` with scale (0.9, 1.0) and ratio (3/4, 4/3).
    package static func cropBox<G: RandomNumberGenerator>(width w: Int, height h: Int, using rng: inout G)
        -> (top: Int, left: Int, height: Int, width: Int)
    {
        precondition(w > 0 && h > 0, "cannot crop an empty \(w)x\(h) image")
        let area = Double(w * h)
        let logRatio = (log(cropRatio.lower), log(cropRatio.upper))
        for _ in 0..<10 {
            let targetArea = uniform(cropScale.lower, cropScale.upper, &rng) * area
            let aspect = exp(uniform(logRatio.0, logRatio.1, &rng))
            let tw = Int((targetArea * aspect).squareRoot().rounded(.toNearestOrEven))
            let th = Int((targetArea / aspect).squareRoot().rounded(.toNearestOrEven))
            if tw <= w && th <= h {
                let i = randint(0, h - th, &rng)
                let j = randint(0, w - tw, &rng)
                return (i, j, th, tw)
            }
        }
        let inRatio = Double(w) / Double(h)
        var tw = w, th = h
        if inRatio < cropRatio.lower {
            th = Int((Double(w) / cropRatio.lower).rounded(.toNearestOrEven))
        } else if inRatio > cropRatio.upper {
            tw = Int((Double(h) * cropRatio.upper).rounded(.toNearestOrEven))
        }
        return ((h - th) / 2, (w - tw) / 2, th, tw)
    }

    /// Crop, resize and flip in the image's own mode, then RGB: the image AutoAugment receives.
    package func croppedRGB(_ image: Image, _ d: AugmentationDraw) -> Image {
        var im = image.cropped(left: d.left, top: d.top, width: d.width, height: d.height)
            .resized(to: (resolution, resolution), filter: .bicubic)
        if d.flip { im = im.flippedLeftRight() }
        return im.converted(to: .rgb)
    }

    /// Applies the choices in `d` to `image` (any mode); returns the `resolution`² RGB image.
    package func apply(_ image: Image, _ d: AugmentationDraw) -> Image {
        var im = croppedRGB(image, d)
        for op in d.operations { im = op.apply(to: im, filter: .bicubic, fill: Self.fill) }
        return im
    }

    /// Draws and applies an augmentation of `image`: a `resolution`² RGB image.
    package func augment<G: RandomNumberGenerator>(_ image: Image, using rng: inout G) -> Image {
        apply(image, draw(sourceWidth: image.width, sourceHeight: image.height, using: &rng))
    }

    /// The whole training transform: the augmented image as a normalised CHW tensor `[3, resolution, resolution]`.
    package func tensor<G: RandomNumberGenerator>(_ image: Image, using rng: inout G) -> [Float] {
        Image.normalizedCHW(augment(image, using: &rng))
    }
}

/// Python's `random.random()`: 53 random bits as a double in [0, 1).
@inline(__always)
func uniform01<G: RandomNumberGenerator>(_ rng: inout G) -> Double {
    Double(rng.next() >> 11) * 0x1p-53
}

/// Python's `random.uniform(a, b)`: `a + (b - a) * random()`.
@inline(__always)
func uniform<G: RandomNumberGenerator>(_ a: Double, _ b: Double, _ rng: inout G) -> Double {
    a + (b - a) * uniform01(&rng)
}

/// An unbiased integer in `0..<n` (rejection sampling; fixed here so results never depend on the toolchain).
func uniformInt<G: RandomNumberGenerator>(below n: Int, _ rng: inout G) -> Int {
    precondition(n > 0, "no integer below \(n)")
    let m = UInt64(n)
    let threshold = (0 &- m) % m  // 2^64 mod m: draws below it would favour small results
    while true {
        let r = rng.next()
        if r >= threshold { return Int(r % m) }
    }
}

/// Python's `random.randint(a, b)`: an integer in `a...b`.
func randint<G: RandomNumberGenerator>(_ a: Int, _ b: Int, _ rng: inout G) -> Int {
    a + uniformInt(below: b - a + 1, &rng)
}
