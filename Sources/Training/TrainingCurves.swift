// The curves of a training run, read back from the `out_*.log` lines that cn-clip's `train.py` (and `cnclip train`)
// writes, and drawn as one self-contained SVG. The log is the only record every run has — TensorBoard is optional
// and cn-clip has none — so this is what lets a user compare runs of either implementation.
//
// The parser looks for each message by its leading text, not by the line's prefix: cn-clip's worker filter adds
// `Rank N | ` only where a rank is set, and users paste lines from terminals that add their own prefixes.
//
// Only Foundation is imported here; the error type and the file reading live in TrainingCurvesFiles.swift.

import Foundation

/// The training-loss and validation curves of one run, by global step.
package struct TrainingCurves: Equatable, Sendable {
    /// One training line (`Global Steps: …`), printed every `--log-interval` steps.
    package struct TrainingPoint: Equatable, Sendable {
        /// The 1-based global step.
        package var step: Int
        /// The 1-based epoch.
        package var epoch: Int
        /// The batch's contrastive loss (NaN or infinite when the run diverged).
        package var loss: Double
        /// The batch's image-to-text accuracy in percent; present only with `--report-training-batch-acc`.
        package var i2tAccuracy: Double?
        /// The batch's text-to-image accuracy in percent; present only with `--report-training-batch-acc`.
        package var t2iAccuracy: Double?
        /// The learning rate of the first parameter group.
        package var lr: Double
        /// The logit scale (before `exp`).
        package var logitScale: Double

        /// A training point.
        package init(
            step: Int, epoch: Int, loss: Double, i2tAccuracy: Double? = nil, t2iAccuracy: Double? = nil, lr: Double,
            logitScale: Double
        ) {
            self.step = step
            self.epoch = epoch
            self.loss = loss
            self.i2tAccuracy = i2tAccuracy
            self.t2iAccuracy = t2iAccuracy
            self.lr = lr
            self.logitScale = logitScale
        }
    }

    /// One validation result line (`Validation Result (epoch E @ S steps) | …`).
    package struct ValidationPoint: Equatable, Sendable {
        /// The 1-based global step the model was evaluated at.
        package var step: Int
        /// The 1-based epoch.
        package var epoch: Int
        /// The mean validation loss.
        package var loss: Double
        /// Image-to-text accuracy over the validation set, in percent.
        package var i2tAccuracy: Double
        /// Text-to-image accuracy over the validation set, in percent.
        package var t2iAccuracy: Double
        /// The logit scale (before `exp`).
        package var logitScale: Double

        /// A validation point.
        package init(step: Int, epoch: Int, loss: Double, i2tAccuracy: Double, t2iAccuracy: Double, logitScale: Double) {
            self.step = step
            self.epoch = epoch
            self.loss = loss
            self.i2tAccuracy = i2tAccuracy
            self.t2iAccuracy = t2iAccuracy
            self.logitScale = logitScale
        }
    }

    /// The training points, one per step, by increasing step.
    package private(set) var training: [TrainingPoint]
    /// The validation points, one per step, by increasing step.
    package private(set) var validation: [ValidationPoint]

    /// Curves from points in log order: a later point at the same step replaces an earlier one.
    package init(training: [TrainingPoint] = [], validation: [ValidationPoint] = []) {
        self.training = Self.lastPerStep(training, step: \.step)
        self.validation = Self.lastPerStep(validation, step: \.step)
    }

    /// The curves in the text of one log; throws ``TrainingCurvesError`` naming `source` when it has no such line.
    package init(parsing text: String, source: String) throws {
        self = Self.parse(text)
        if isEmpty { throw TrainingCurvesError(source: source) }
    }

    /// The curves in the text of one log, empty when it has no training or validation line.
    package static func parse(_ text: String) -> TrainingCurves {
        var training: [TrainingPoint] = []
        var validation: [ValidationPoint] = []
        text.enumerateLines { line, _ in
            if let point = trainingPoint(line) {
                training.append(point)
            } else if let point = validationPoint(line) {
                validation.append(point)
            }
        }
        return TrainingCurves(training: training, validation: validation)
    }

    /// Whether there is neither a training nor a validation point.
    package var isEmpty: Bool { training.isEmpty && validation.isEmpty }

    /// The first and last step of any point, nil when empty.
    package var stepRange: ClosedRange<Int>? {
        let steps = training.map(\.step) + validation.map(\.step)
        guard let lo = steps.min(), let hi = steps.max() else { return nil }
        return lo...hi
    }

    /// These curves followed by those of a later log (a resumed run): `later`'s point at a step replaces this one's.
    package func merged(with later: TrainingCurves) -> TrainingCurves {
        TrainingCurves(training: training + later.training, validation: validation + later.validation)
    }

    private static func lastPerStep<P>(_ points: [P], step: KeyPath<P, Int>) -> [P] {
        var byStep: [Int: P] = [:]
        for p in points { byStep[p[keyPath: step]] = p }
        return byStep.keys.sorted().map { byStep[$0]! }
    }

    // MARK: Parsing

    /// The message that starts with `marker`, at the start of the line or after a ` | ` separator.
    private static func message(in line: String, startingWith marker: String) -> Substring? {
        if line.hasPrefix(marker) { return line[...] }
        guard let r = line.range(of: "| " + marker) else { return nil }
        return line[line.index(r.lowerBound, offsetBy: 2)...]
    }

    /// `key: value` fields of a message split at ` | `; the first of a repeated key wins.
    private static func fields(_ message: Substring) -> [String: String] {
        var out: [String: String] = [:]
        for part in message.components(separatedBy: " | ") {
            guard let colon = part.range(of: ": ") else { continue }
            let key = String(part[..<colon.lowerBound])
            if out[key] == nil { out[key] = part[colon.upperBound...].trimmingCharacters(in: .whitespaces) }
        }
        return out
    }

    /// Python prints `nan`, `inf` and `-inf` for non-finite floats, which `Double.init` reads too.
    private static func number(_ text: String?) -> Double? { text.flatMap { Double($0) } }

    /// The leading integer of `text` (`"50/580"` → 50, `"1 [6400/20096 (32%)]"` → 1).
    private static func leadingInt<S: StringProtocol>(_ text: S?) -> Int? {
        guard let text else { return nil }
        return Int(text.prefix { $0.isASCII && $0.isNumber })
    }

    /// A training line, or nil (also for a line cut short, as a killed run may leave).
    static func trainingPoint(_ line: String) -> TrainingPoint? {
        guard let message = message(in: line, startingWith: "Global Steps: ") else { return nil }
        let f = fields(message)
        guard let step = leadingInt(f["Global Steps"]), let epoch = leadingInt(f["Train Epoch"]), let loss = number(f["Loss"]),
            let lr = number(f["LR"]), let scale = number(f["logit_scale"]), f["Global Batch Size"] != nil
        else { return nil }
        return TrainingPoint(
            step: step, epoch: epoch, loss: loss, i2tAccuracy: number(f["Image2Text Acc"]), t2iAccuracy: number(f["Text2Image Acc"]),
            lr: lr, logitScale: scale)
    }

    /// A validation result line, or nil.
    static func validationPoint(_ line: String) -> ValidationPoint? {
        let marker = "Validation Result (epoch "
        guard let message = message(in: line, startingWith: marker) else { return nil }
        let header = message.dropFirst(marker.count)  // `E @ S steps) | …`
        guard let at = header.range(of: " @ "), let epoch = leadingInt(header[..<at.lowerBound]),
            let step = leadingInt(header[at.upperBound...])
        else { return nil }
        let f = fields(message)
        guard let loss = number(f["Valid Loss"]), let i2t = number(f["Image2Text Acc"]), let t2i = number(f["Text2Image Acc"]),
            let scale = number(f["logit_scale"]), f["Valid Batch Size"] != nil
        else { return nil }
        return ValidationPoint(step: step, epoch: epoch, loss: loss, i2tAccuracy: i2t, t2iAccuracy: t2i, logitScale: scale)
    }

    // MARK: Drawing

    /// Training points whose loss is NaN or infinite: the plot leaves them out and says how many.
    package var nonFiniteTrainingLosses: Int { training.count { !$0.loss.isFinite } }
    /// Validation points whose loss is NaN or infinite.
    package var nonFiniteValidationLosses: Int { validation.count { !$0.loss.isFinite } }

    /// A self-contained 900×600 SVG: loss by global step above, accuracy (%) by global step below.
    package func svg(title: String) -> String {
        var c = SVGCanvas(width: 900, height: 600)
        c.line("<title>\(SVGCanvas.escape(title))</title>")
        c.text(450, 26, title, size: 16, anchor: "middle", bold: true)

        let allSteps = (training.map(\.step) + validation.map(\.step)).map(Double.init)
        let xAxis = Axis(
            lo: allSteps.min() ?? 0, hi: allSteps.max() ?? 1, integral: true, title: "global step")

        // (a) Loss.
        let trainLoss = training.filter { $0.loss.isFinite }.map { (Double($0.step), $0.loss) }
        let validLoss = validation.filter { $0.loss.isFinite }.map { (Double($0.step), $0.loss) }
        var lossNotes: [String] = []
        if nonFiniteTrainingLosses > 0 {
            lossNotes.append("\(nonFiniteTrainingLosses) non-finite training loss\(nonFiniteTrainingLosses == 1 ? "" : "es") skipped")
        }
        if nonFiniteValidationLosses > 0 {
            lossNotes.append(
                "\(nonFiniteValidationLosses) non-finite validation loss\(nonFiniteValidationLosses == 1 ? "" : "es") skipped")
        }
        var lossSeries: [Series] = []
        if !trainLoss.isEmpty {
            lossSeries.append(Series(id: "train-loss", label: "training loss", color: "#1f77b4", points: trainLoss, markers: trainLoss.count == 1))
        }
        if !validLoss.isEmpty {
            lossSeries.append(Series(id: "valid-loss", label: "validation loss", color: "#ff7f0e", points: validLoss, markers: true))
        }
        let losses = (trainLoss + validLoss).map(\.1)
        c.panel(
            top: 40, title: "(a) Loss vs. global step", notes: lossNotes, x: xAxis,
            y: Axis(lo: losses.min() ?? 0, hi: losses.max() ?? 1, integral: false, title: "loss"), series: lossSeries,
            emptyMessage: "no finite losses")

        // (b) Accuracy.
        func finite(_ points: [(Double, Double?)]) -> [(Double, Double)] {
            points.compactMap { p in p.1.flatMap { $0.isFinite ? (p.0, $0) : nil } }
        }
        let trainI2T = finite(training.map { (Double($0.step), $0.i2tAccuracy) })
        let trainT2I = finite(training.map { (Double($0.step), $0.t2iAccuracy) })
        let validI2T = finite(validation.map { (Double($0.step), $0.i2tAccuracy) })
        let validT2I = finite(validation.map { (Double($0.step), $0.t2iAccuracy) })
        var accuracySeries: [Series] = []
        // The batch accuracies go first so the validation curves are drawn over them.
        if !trainI2T.isEmpty {
            accuracySeries.append(
                Series(id: "train-i2t", label: "Image2Text (train batch)", color: "#2ca02c", points: trainI2T, markers: false, faint: true))
        }
        if !trainT2I.isEmpty {
            accuracySeries.append(
                Series(id: "train-t2i", label: "Text2Image (train batch)", color: "#9467bd", points: trainT2I, markers: false, faint: true))
        }
        if !validI2T.isEmpty {
            accuracySeries.append(Series(id: "valid-i2t", label: "Image2Text (valid)", color: "#2ca02c", points: validI2T, markers: true))
        }
        if !validT2I.isEmpty {
            accuracySeries.append(Series(id: "valid-t2i", label: "Text2Image (valid)", color: "#9467bd", points: validT2I, markers: true))
        }
        let accuracies = (trainI2T + trainT2I + validI2T + validT2I).map(\.1)
        c.panel(
            top: 320, title: "(b) Accuracy vs. global step", notes: validation.isEmpty && !accuracySeries.isEmpty ? ["no validation results"] : [],
            x: xAxis,
            y: Axis(lo: 0, hi: max(accuracies.max() ?? 100, 1), integral: false, title: "accuracy (%)"), series: accuracySeries,
            emptyMessage: "no validation results")
        return c.finish()
    }
}

// MARK: - SVG drawing

/// One curve of a panel: `points` are (step, value) by increasing step.
private struct Series {
    var id: String
    var label: String
    var color: String
    var points: [(Double, Double)]
    var markers: Bool
    var faint = false
}

/// A linear axis over "nice" round ticks (1, 2 or 5 × 10^k apart) that cover the data.
private struct Axis {
    var lo: Double
    var hi: Double
    var ticks: [Double]
    var decimals: Int
    var title: String

    init(lo dataLo: Double, hi dataHi: Double, integral: Bool, title: String) {
        self.title = title
        var lo = dataLo, hi = dataHi
        if !(hi > lo) {
            // One value (or one point): give it room on both sides instead of dividing by zero.
            let pad = integral ? max(1, (abs(lo) * 0.1).rounded()) : (lo == 0 ? 1 : abs(lo) * 0.1)
            lo -= pad
            hi += pad
            if integral && dataLo >= 0 { lo = max(lo, 0) }
        }
        let raw = (hi - lo) / 5
        // The exponent is kept as an integer: the label's decimals come from it, not from a log10 that may round.
        var exponent = Int(log10(raw).rounded(.down))
        let fraction = raw / pow(10, Double(exponent))
        var mantissa = fraction <= 1 ? 1.0 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        if mantissa == 10 { (mantissa, exponent) = (1, exponent + 1) }
        if integral && exponent < 0 { (mantissa, exponent) = (1, 0) }
        let step = mantissa * pow(10, Double(exponent))
        let first = (lo / step).rounded(.down), last = (hi / step).rounded(.up)
        let count = Int(last - first)
        ticks = (0...count).map { i in
            let v = (first + Double(i)) * step
            return abs(v) < step * 1e-9 ? 0 : v  // no "-0.00"
        }
        self.lo = ticks.first!
        self.hi = ticks.last!
        decimals = max(0, -exponent)
    }

    /// Where `v` falls between `a` (at `lo`) and `b` (at `hi`).
    func position(_ v: Double, from a: Double, to b: Double) -> Double { a + (v - lo) / (hi - lo) * (b - a) }

    func label(_ v: Double) -> String { String(format: "%.\(decimals)f", v) }
}

/// An SVG document built as text, every coordinate with two decimals so the same curves give the same bytes.
private struct SVGCanvas {
    let width: Int
    let height: Int
    private var body = ""

    // The plot area of each panel, in document coordinates; the legend sits to its right.
    private let plotLeft = 72.0
    private let plotRight = 690.0
    private let legendLeft = 706.0
    private let panelHeight = 270.0

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // XML 1.0 allows no control characters but tab, newline and carriage return.
                if let a = ch.asciiValue, a < 0x20, a != 0x09, a != 0x0A, a != 0x0D { out += " " } else { out.append(ch) }
            }
        }
        return out
    }

    static func f(_ v: Double) -> String { String(format: "%.2f", v) }

    mutating func line(_ s: String) { body += s + "\n" }

    /// `<name a="v" …/>`, or `<name …>content</name>` with `content` escaped, attributes in the order given.
    mutating func element(_ name: String, _ attributes: KeyValuePairs<String, String>, content: String? = nil) {
        var s = "<" + name
        for (key, value) in attributes { s += " \(key)=\"\(Self.escape(value))\"" }
        if let content { s += ">\(Self.escape(content))</\(name)>" } else { s += "/>" }
        line(s)
    }

    mutating func text(
        _ x: Double, _ y: Double, _ s: String, size: Int, anchor: String = "start", fill: String = "#222222", bold: Bool = false,
        rotated: Bool = false
    ) {
        // KeyValuePairs cannot be built up, so the optional attributes are spelled out.
        let (px, py) = (Self.f(x), Self.f(y))
        switch (bold, rotated) {
        case (true, _):
            element(
                "text", ["x": px, "y": py, "font-size": "\(size)", "text-anchor": anchor, "fill": fill, "font-weight": "bold"], content: s)
        case (false, true):
            element(
                "text", ["x": px, "y": py, "font-size": "\(size)", "text-anchor": anchor, "fill": fill, "transform": "rotate(-90 \(px) \(py))"],
                content: s)
        case (false, false):
            element("text", ["x": px, "y": py, "font-size": "\(size)", "text-anchor": anchor, "fill": fill], content: s)
        }
    }

    /// One panel: frame, grid, ticks, axis titles, curves and legend; `emptyMessage` in the middle when there are no curves.
    mutating func panel(top: Double, title: String, notes: [String], x: Axis, y: Axis, series: [Series], emptyMessage: String) {
        let plotTop = top + 28, plotBottom = top + panelHeight - 44
        line("<g class=\"panel\">")
        var heading = "<text x=\"\(Self.f(plotLeft))\" y=\"\(Self.f(top + 16))\" font-size=\"13\" font-weight=\"bold\" fill=\"#222222\">"
        heading += Self.escape(title)
        if !notes.isEmpty {
            heading += "<tspan font-weight=\"normal\" fill=\"#a33a3a\"> (" + Self.escape(notes.joined(separator: "; ")) + ")</tspan>"
        }
        line(heading + "</text>")
        element(
            "rect",
            [
                "x": Self.f(plotLeft), "y": Self.f(plotTop), "width": Self.f(plotRight - plotLeft), "height": Self.f(plotBottom - plotTop),
                "fill": "none", "stroke": "#888888", "stroke-width": "1",
            ])
        if series.isEmpty {
            text((plotLeft + plotRight) / 2, (plotTop + plotBottom) / 2, emptyMessage, size: 14, anchor: "middle", fill: "#777777")
            line("</g>")
            return
        }
        // Grid and tick labels.
        for t in y.ticks {
            let py = y.position(t, from: plotBottom, to: plotTop)
            element(
                "line",
                ["x1": Self.f(plotLeft), "y1": Self.f(py), "x2": Self.f(plotRight), "y2": Self.f(py), "stroke": "#e5e5e5", "stroke-width": "1"])
            text(plotLeft - 6, py + 4, y.label(t), size: 11, anchor: "end", fill: "#444444")
        }
        for t in x.ticks {
            let px = x.position(t, from: plotLeft, to: plotRight)
            element(
                "line",
                [
                    "x1": Self.f(px), "y1": Self.f(plotBottom), "x2": Self.f(px), "y2": Self.f(plotBottom + 5), "stroke": "#888888",
                    "stroke-width": "1",
                ])
            text(px, plotBottom + 18, x.label(t), size: 11, anchor: "middle", fill: "#444444")
        }
        text((plotLeft + plotRight) / 2, plotBottom + 36, x.title, size: 12, anchor: "middle")
        text(18, (plotTop + plotBottom) / 2, y.title, size: 12, anchor: "middle", rotated: true)

        // Curves.
        for s in series {
            let coordinates = s.points.map { p in
                (Self.f(x.position(p.0, from: plotLeft, to: plotRight)), Self.f(y.position(p.1, from: plotBottom, to: plotTop)))
            }
            let points = coordinates.map { "\($0.0),\($0.1)" }.joined(separator: " ")
            element(
                "polyline",
                [
                    "id": s.id, "points": points, "fill": "none", "stroke": s.color, "stroke-width": s.faint ? "1" : "1.5",
                    "stroke-opacity": s.faint ? "0.35" : "1", "stroke-linejoin": "round",
                ])
            if s.markers {
                line("<g id=\"\(s.id)-markers\" fill=\"\(s.color)\">")
                for (cx, cy) in coordinates { element("circle", ["cx": cx, "cy": cy, "r": "3"]) }
                line("</g>")
            }
        }

        // Legend.
        for (i, s) in series.enumerated() {
            let ly = plotTop + 10 + Double(i) * 18
            element(
                "line",
                [
                    "x1": Self.f(legendLeft), "y1": Self.f(ly), "x2": Self.f(legendLeft + 22), "y2": Self.f(ly), "stroke": s.color,
                    "stroke-width": s.faint ? "1" : "1.5", "stroke-opacity": s.faint ? "0.35" : "1",
                ])
            if s.markers { element("circle", ["cx": Self.f(legendLeft + 11), "cy": Self.f(ly), "r": "3", "fill": s.color]) }
            text(legendLeft + 28, ly + 4, s.label, size: 11)
        }
        line("</g>")
    }

    func finish() -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="sans-serif">
        <rect width="\(width)" height="\(height)" fill="#ffffff"/>

        """ + body + "</svg>\n"
    }
}
