/// Yamux frame header (12 bytes, big-endian) as in the yamux spec.
public struct YamuxHeader: Equatable, Sendable {
    public enum FrameType: UInt8, Sendable { case data = 0, windowUpdate = 1, ping = 2, goAway = 3 }
    public static let syn: UInt16 = 1, ack: UInt16 = 2, fin: UInt16 = 4, rst: UInt16 = 8
    public static let size = 12
    public static let initialWindow: UInt32 = 256 * 1024

    public var type: FrameType
    public var flags: UInt16
    public var streamID: UInt32
    /// Data length, window delta, ping opaque value or GoAway code.
    public var length: UInt32

    public init(type: FrameType, flags: UInt16, streamID: UInt32, length: UInt32) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.length = length
    }

    public func encode(into p: UnsafeMutablePointer<UInt8>) {
        p[0] = 0
        p[1] = type.rawValue
        p[2] = UInt8(flags >> 8); p[3] = UInt8(flags & 0xff)
        p[4] = UInt8(streamID >> 24); p[5] = UInt8((streamID >> 16) & 0xff); p[6] = UInt8((streamID >> 8) & 0xff); p[7] = UInt8(streamID & 0xff)
        p[8] = UInt8(length >> 24); p[9] = UInt8((length >> 16) & 0xff); p[10] = UInt8((length >> 8) & 0xff); p[11] = UInt8(length & 0xff)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        out.withUnsafeMutableBufferPointer { encode(into: $0.baseAddress!) }
        return out
    }

    /// Decode 12 bytes; rejects unknown versions and types.
    public static func decode(_ p: UnsafePointer<UInt8>) throws -> YamuxHeader {
        guard p[0] == 0 else { throw YamuxError.protocolError("unsupported yamux version \(p[0])") }
        guard let t = FrameType(rawValue: p[1]) else { throw YamuxError.protocolError("unknown yamux frame type \(p[1])") }
        let flags = UInt16(p[2]) << 8 | UInt16(p[3])
        let sid = UInt32(p[4]) << 24 | UInt32(p[5]) << 16 | UInt32(p[6]) << 8 | UInt32(p[7])
        let len = UInt32(p[8]) << 24 | UInt32(p[9]) << 16 | UInt32(p[10]) << 8 | UInt32(p[11])
        return YamuxHeader(type: t, flags: flags, streamID: sid, length: len)
    }

    public static func decode(_ b: [UInt8]) throws -> YamuxHeader {
        guard b.count >= 12 else { throw YamuxError.protocolError("short yamux header") }
        return try b.withUnsafeBufferPointer { try decode($0.baseAddress!) }
    }
}

/// Yamux session errors.
public enum YamuxError: Error, Equatable, Sendable, CustomStringConvertible {
    case protocolError(String)
    public var description: String {
        switch self { case .protocolError(let s): return "yamux: \(s)" }
    }
}
