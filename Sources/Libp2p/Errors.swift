import Identity

/// Errors surfaced by the libp2p host, connections and streams.
public enum Libp2pError: Error, Equatable, Sendable, CustomStringConvertible {
    case connectionClosed(String)
    case streamReset
    case writeClosed
    case timeout(String)
    case protocolNotSupported([String])
    case limit(String)
    case dialFailed(String)
    case notConnected(String)
    case tooLarge(String)
    case badAddress(String)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .connectionClosed(let s): return "connection closed: \(s)"
        case .streamReset: return "stream reset by peer or connection lost"
        case .writeClosed: return "stream write side already closed"
        case .timeout(let s): return "timed out: \(s)"
        case .protocolNotSupported(let p): return "remote supports none of \(p.joined(separator: ", "))"
        case .limit(let s): return "limit reached: \(s)"
        case .dialFailed(let s): return "dial failed: \(s)"
        case .notConnected(let p): return "not connected to \(p) and no known address"
        case .tooLarge(let s): return "message too large: \(s)"
        case .badAddress(let s): return "bad address: \(s)"
        case .protocolViolation(let s): return "protocol violation: \(s)"
        }
    }
}
