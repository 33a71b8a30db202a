// The one error protocol: every error a command can meet says, in its description, what went wrong and where
// (file, line, key, id or flag), as one line a user can act on. The CLI reports any of them the same way.

/// An error whose `description` is a complete one-line message for the user, naming the file, line, key or flag at fault.
package protocol UserFacingError: Error, CustomStringConvertible {}

extension Base64Error: UserFacingError {}

/// A file or folder that could not be opened, read, created, written or renamed. For a write through the safe
/// writer, the target is as it was before.
package struct FileError: UserFacingError, Equatable, Sendable {
    /// The file or folder at fault (for an output, its final path).
    package var path: String
    /// What went wrong, for the user.
    package var reason: String

    /// An error about `path`.
    package init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// `path: reason`.
    package var description: String { "\(path): \(reason)" }
}
