// The reference's learning-rate schedule (`cn_clip/training/scheduler.py`, `cosine_lr`).

import Foundation

/// Cosine decay with linear warmup: `base·(step+1)/warmup` for the first `warmup` steps, then
/// `0.5·(1 + cos(π·e/es))·base` with `e = step − warmup`, `es = total − warmup`.
package struct CosineSchedule: Sendable {
    /// Peak learning rate.
    package let baseLearningRate: Double
    /// Steps of linear warmup.
    package let warmupSteps: Int
    /// Total steps of training.
    package let totalSteps: Int

    /// A schedule peaking at `baseLearningRate` after `warmupSteps`, reaching 0 at `totalSteps`.
    package init(baseLearningRate: Double, warmupSteps: Int, totalSteps: Int) {
        self.baseLearningRate = baseLearningRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The learning rate of 0-based `step`.
    package func learningRate(at step: Int) -> Double {
        if step < warmupSteps { return baseLearningRate * Double(step + 1) / Double(warmupSteps) }
        let e = Double(step - warmupSteps), es = Double(totalSteps - warmupSteps)
        return 0.5 * (1 + cos(Double.pi * e / es)) * baseLearningRate
    }
}
