// The one error protocol: every error a command can meet says, in its description, what went wrong and where
// (file, line, key, id or flag), as one line a user can act on. The CLI reports any of them the same way.

/// An error whose `description` is a complete one-line message for the user, naming the file, line, key or flag at fault.
package protocol UserFacingError: Error, CustomStringConvertible {}

extension OutputError: UserFacingError {}
extension Base64Error: UserFacingError {}
