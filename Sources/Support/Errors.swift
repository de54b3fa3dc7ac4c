/// An error meant for an operator: what went wrong, where, and what to do next.
public struct P2POSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Stable machine-readable code, e.g. `CONFIG_INVALID`, `KEY_PERMISSIONS`.
    public var code: String
    /// One line: what failed and where.
    public var message: String
    /// What the operator should do next (may be empty).
    public var hint: String

    public init(_ code: String, _ message: String, hint: String = "") {
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { hint.isEmpty ? message : "\(message); \(hint)" }
}
