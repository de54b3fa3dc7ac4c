import Wire

/// multistream-select 1.0.0 message codec: uvarint length, then the text and `\n`.
public enum Multistream {
    public static let protocolID = "/multistream/1.0.0"
    public static let na = "na"
    /// Longest message accepted (protocol IDs are short).
    public static let maxMessage = 1024

    /// Encode one message (adds the trailing newline).
    public static func encode(_ text: String) -> [UInt8] {
        let body = Array(text.utf8) + [0x0a]
        return Varint.encode(UInt64(body.count)) + body
    }

    /// Try to decode one message from the front of `bytes`.
    /// Returns nil when more bytes are needed; throws on malformed input.
    public static func decode(_ bytes: UnsafeBufferPointer<UInt8>) throws -> (text: String, consumed: Int)? {
        if bytes.isEmpty { return nil }
        let len: UInt64, n: Int
        do {
            (len, n) = try Varint.decode(bytes, at: 0)
        } catch WireError.truncated {
            if bytes.count >= 3 { throw WireError.invalid("multistream length") }
            return nil
        }
        guard len >= 1, len <= UInt64(maxMessage) else { throw WireError.invalid("multistream message length \(len)") }
        guard bytes.count >= n + Int(len) else { return nil }
        guard bytes[n + Int(len) - 1] == 0x0a else { throw WireError.invalid("multistream message (no trailing newline)") }
        let body = UnsafeBufferPointer(rebasing: bytes[n..<(n + Int(len) - 1)])
        guard !body.contains(0x0a), let s = String(validating: body, as: UTF8.self) else {
            throw WireError.invalid("multistream message (not UTF-8 text)")
        }
        return (s, n + Int(len))
    }

    public static func decode(_ bytes: [UInt8]) throws -> (text: String, consumed: Int)? {
        try bytes.withUnsafeBufferPointer { try decode($0) }
    }
}
