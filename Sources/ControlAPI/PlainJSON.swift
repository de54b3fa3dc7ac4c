import Foundation
import Wire

/// A fast writer for the plain Swift values handlers build (`[String: Any]`, `[Any]`, `String`,
/// `Int`, `Int64`, `UInt64`, `UInt32`, `Int32`, `Bool`, `NSNull`), with sorted keys and unescaped
/// slashes — the same text `JSONSerialization` writes with `.sortedKeys, .withoutEscapingSlashes`,
/// at a fraction of its cost. Anything else (floating point, `NSNumber`, …) returns nil and the
/// caller falls back to `JSONSerialization`.
public enum PlainJSON {
    public static func encode(_ value: Any) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        return write(value, into: &out, depth: 0) ? out : nil
    }

    private static func write(_ value: Any, into out: inout [UInt8], depth: Int) -> Bool {
        guard depth < 64 else { return false }
        switch value {
        case let s as String where type(of: value) == String.self:
            writeString(s, into: &out)
        case let d as [String: Any] where type(of: value) == [String: Any].self:
            out.append(UInt8(ascii: "{"))
            var first = true
            for key in sortedKeys(d) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                guard write(d[key]!, into: &out, depth: depth + 1) else { return false }
            }
            out.append(UInt8(ascii: "}"))
        case let a as [Any] where type(of: value) == [Any].self:
            return writeArray(a, into: &out, depth: depth)
        case let a as [String] where type(of: value) == [String].self:
            return writeArray(a, into: &out, depth: depth)
        case let a as [[String: Any]] where type(of: value) == [[String: Any]].self:
            return writeArray(a, into: &out, depth: depth)
        case let b as Bool where type(of: value) == Bool.self:
            out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case let n as Int where type(of: value) == Int.self:
            out.append(contentsOf: Array(String(n).utf8))
        case let n as Int64 where type(of: value) == Int64.self:
            out.append(contentsOf: Array(String(n).utf8))
        case let n as UInt64 where type(of: value) == UInt64.self:
            out.append(contentsOf: Array(String(n).utf8))
        case let n as Int32 where type(of: value) == Int32.self:
            out.append(contentsOf: Array(String(n).utf8))
        case let n as UInt32 where type(of: value) == UInt32.self:
            out.append(contentsOf: Array(String(n).utf8))
        case is NSNull where type(of: value) == NSNull.self:
            out.append(contentsOf: Array("null".utf8))
        default:
            return false
        }
        return true
    }

    private static func writeArray<T>(_ a: [T], into out: inout [UInt8], depth: Int) -> Bool {
        out.append(UInt8(ascii: "["))
        for (i, v) in a.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            guard write(v, into: &out, depth: depth + 1) else { return false }
        }
        out.append(UInt8(ascii: "]"))
        return true
    }

    /// Keys in JSONSerialization's order (case-insensitive, numeric, locale collation). Keys of
    /// lowercase letters and underscores — every key this project writes — sort the same by bytes.
    private static func sortedKeys(_ d: [String: Any]) -> [String] {
        let simple = d.keys.allSatisfy { k in k.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f } }
        if simple { return d.keys.sorted() }
        return d.keys.sorted { a, b in
            a.compare(b, options: [.numeric, .caseInsensitive, .forcedOrdering], range: a.startIndex..<a.endIndex, locale: NSLocale.system) == .orderedAscending
        }
    }

    /// JSONSerialization escapes strings exactly as the canonical writer does (", \, the named
    /// control characters, other controls as \u00xx; nothing else) — PlainJSONTests check it.
    private static func writeString(_ s: String, into out: inout [UInt8]) {
        CanonicalJSON.appendString(s, to: &out)
    }
}
