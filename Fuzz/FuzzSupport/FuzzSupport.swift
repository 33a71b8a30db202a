// What the harnesses share: a scratch folder in memory for the inputs a reader only takes by path.

import Foundation
import Synchronization

/// The folders to remove when the process exits.
private let scratchFolders = Mutex<[String]>([])
private let removeAtExit: Void = {
    atexit {
        for folder in scratchFolders.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: folder) }
    }
}()

/// An empty folder `cnclip-fuzz-NAME-PID` in /dev/shm (else the temporary folder), removed with its contents when the
/// process exits normally (a crash leaves it, beside the crash's input).
package func scratchFolder(_ name: String) -> String {
    _ = removeAtExit
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let folder = "\(base)/cnclip-fuzz-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: folder)
    do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
        fatalError("cannot create the scratch folder \(folder): \(error)")
    }
    scratchFolders.withLock { $0.append(folder) }
    return folder
}
