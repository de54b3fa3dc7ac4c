/// A minimal protobuf writer for the few messages libp2p uses.
public struct ProtobufWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func varint(field: Int, _ value: UInt64) {
        Varint.encode(UInt64(field << 3 | 0), into: &bytes)
        Varint.encode(value, into: &bytes)
    }

    public mutating func bytes(field: Int, _ value: [UInt8]) {
        Varint.encode(UInt64(field << 3 | 2), into: &bytes)
        Varint.encode(UInt64(value.count), into: &bytes)
        bytes.append(contentsOf: value)
    }

    public mutating func string(field: Int, _ value: String) {
        bytes(field: field, Array(value.utf8))
    }
}

/// One decoded protobuf field.
public enum ProtobufValue: Equatable, Sendable {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes([UInt8])
    case fixed32(UInt32)
}

/// A bounded protobuf reader: yields (field number, value) pairs, rejecting malformed input.
public struct ProtobufReader: Sendable {
    private let data: [UInt8]
    private var pos = 0

    /// `maxSize` bounds the whole message; larger input is rejected before parsing.
    public init(_ data: [UInt8], maxSize: Int = 1 << 20) throws {
        guard data.count <= maxSize else { throw WireError.tooLarge("protobuf message") }
        self.data = data
    }

    public var isAtEnd: Bool { pos >= data.count }

    /// Next field, or nil at the end of the message.
    public mutating func next() throws -> (field: Int, value: ProtobufValue)? {
        guard pos < data.count else { return nil }
        let (key, n) = try Varint.decode(data, at: pos)
        pos += n
        let field = key >> 3
        guard field >= 1, field <= 536_870_911 else { throw WireError.invalid("protobuf field number") }
        switch key & 7 {
        case 0:
            let (v, m) = try Varint.decode(data, at: pos)
            pos += m
            return (Int(field), .varint(v))
        case 1:
            guard pos + 8 <= data.count else { throw WireError.truncated("protobuf fixed64") }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(data[pos + i]) << (8 * UInt64(i)) }
            pos += 8
            return (Int(field), .fixed64(v))
        case 2:
            let (len, m) = try Varint.decode(data, at: pos)
            pos += m
            guard len <= UInt64(data.count - pos) else { throw WireError.truncated("protobuf bytes") }
            let v = Array(data[pos..<(pos + Int(len))])
            pos += Int(len)
            return (Int(field), .bytes(v))
        case 5:
            guard pos + 4 <= data.count else { throw WireError.truncated("protobuf fixed32") }
            var v: UInt32 = 0
            for i in 0..<4 { v |= UInt32(data[pos + i]) << (8 * UInt32(i)) }
            pos += 4
            return (Int(field), .fixed32(v))
        default:
            throw WireError.invalid("protobuf wire type \(key & 7)")
        }
    }
}
