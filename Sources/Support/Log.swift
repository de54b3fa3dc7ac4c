import Foundation

/// Severity of a log line; lines below the configured level are dropped.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug = 0, info, warn, error

    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warn
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warn: return "warn"
        case .error: return "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// The one logger of the process: `[MODULE] action=<action> key=value …` lines on stderr.
public final class Log: @unchecked Sendable {
    /// Shared process-wide logger.
    public static let shared = Log()

    private let lock = NSLock()
    private var _level: LogLevel = .info
    private var _sink: (@Sendable (String) -> Void)? = nil
    private var _context: [(String, String)] = []

    public var level: LogLevel {
        get { lock.lock(); defer { lock.unlock() }; return _level }
        set { lock.lock(); _level = newValue; lock.unlock() }
    }

    /// Replace the output (tests capture lines this way); nil restores stderr.
    public func setSink(_ sink: (@Sendable (String) -> Void)?) {
        lock.lock(); _sink = sink; lock.unlock()
    }

    /// Key/values appended to every line (peer_id, cluster_id once known).
    public func setContext(_ pairs: [(String, String)]) {
        lock.lock(); _context = pairs; lock.unlock()
    }

    public static func debug(_ module: String, _ action: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        shared.write(.debug, module, action, fields)
    }
    public static func info(_ module: String, _ action: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        shared.write(.info, module, action, fields)
    }
    public static func warn(_ module: String, _ action: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        shared.write(.warn, module, action, fields)
    }
    public static func error(_ module: String, _ action: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        shared.write(.error, module, action, fields)
    }

    public func write(_ level: LogLevel, _ module: String, _ action: String, _ fields: KeyValuePairs<String, Any>) {
        lock.lock()
        let minLevel = _level
        let sink = _sink
        let context = _context
        lock.unlock()
        guard level >= minLevel else { return }
        var line = "[\(module.uppercased())] action=\(action)"
        if level != .info { line += " level=\(level.name)" }
        for (k, v) in fields { line += " \(k)=\(Log.quote(String(describing: v)))" }
        for (k, v) in context where !fields.contains(where: { $0.key == k }) { line += " \(k)=\(Log.quote(v))" }
        if let sink = sink { sink(line); return }
        line += "\n"
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }

    /// Values with spaces, quotes or `=` are quoted so lines stay machine-parsable.
    public static func quote(_ s: String) -> String {
        if s.isEmpty { return "\"\"" }
        if s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" || $0 == "\t" }) {
            var out = "\""
            for c in s {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default: out.append(c)
                }
            }
            return out + "\""
        }
        return s
    }
}

/// Rate limit for a log line about a repeated event (a flood must not become a flood of lines):
/// `count()` records one event and answers how many happened since the last line once at least
/// `intervalNanos` has passed since it, nil otherwise. One thread at a time.
public struct LogEvery: Sendable {
    public let intervalNanos: UInt64
    private var pending = 0
    private var last: UInt64 = 0

    public init(seconds: Double = 1) { intervalNanos = UInt64(seconds * 1e9) }

    public mutating func count(now: UInt64 = Monotonic.nanos()) -> Int? {
        pending += 1
        guard last == 0 || now &- last >= intervalNanos else { return nil }
        let n = pending
        pending = 0
        last = now
        return n
    }
}
