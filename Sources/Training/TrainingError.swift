// The errors training reports. Each names the file, key, flag or step at fault, because a training run is long
// and a bare "invalid input" after an hour of work leaves the user guessing.

import Essentials
import Foundation

/// An error of `cnclip train`: bad data, bad flags, an unusable checkpoint or a diverged run.
package enum TrainingError: UserFacingError, Equatable {
    /// A dataset LMDB is missing or unreadable (`path` names the directory or key at fault).
    case dataset(path: String, reason: String)
    /// Flags that cannot work together.
    case invalidOption(String)
    /// A checkpoint cannot be read or does not fit the model.
    case checkpoint(path: String, reason: String)
    /// The loss became NaN or infinite at 1-based `step`; the last good checkpoint (if any) is kept.
    case nonFiniteLoss(step: Int, loss: Float, lastCheckpoint: String?)

    /// A one-line message for the user.
    package var description: String {
        switch self {
        case .dataset(let p, let r): return "\(p): \(r)"
        case .invalidOption(let m): return m
        case .checkpoint(let p, let r): return "\(p): \(r)"
        case .nonFiniteLoss(let step, let loss, let last):
            let kept = last.map { "the last good checkpoint is kept at \($0)" } ?? "no checkpoint had been written yet"
            return "the loss is \(loss) at step \(step): training stopped before updating the weights; \(kept). "
                + "Try a lower --lr or a longer --warmup."
        }
    }
}
