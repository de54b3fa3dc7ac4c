/// Errors from the pure decoders in Wire.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(String)
    case overflow(String)
    case invalid(String)
    case tooLarge(String)

    public var description: String {
        switch self {
        case .truncated(let s): return "truncated \(s)"
        case .overflow(let s): return "overflow in \(s)"
        case .invalid(let s): return "invalid \(s)"
        case .tooLarge(let s): return "\(s) too large"
        }
    }
}

/// Unsigned LEB128 varints as used by multiformats and protobuf (at most 10 bytes, minimal form).
public enum Varint {
    /// Append the varint encoding of `value` to `out`.
    public static func encode(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    public static func encode(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        encode(value, into: &out)
        return out
    }

    /// Decode at `offset`; returns the value and the number of bytes used.
    /// Rejects encodings over 10 bytes, values over 64 bits and non-minimal forms.
    public static func decode<C: RandomAccessCollection>(_ bytes: C, at offset: C.Index) throws -> (value: UInt64, length: Int) where C.Element == UInt8 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var i = offset
        var n = 0
        while true {
            guard i < bytes.endIndex else { throw WireError.truncated("varint") }
            let b = bytes[i]
            n += 1
            if n > 10 { throw WireError.overflow("varint") }
            if n == 10 && b > 1 { throw WireError.overflow("varint") }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 {
                if b == 0 && n > 1 { throw WireError.invalid("varint (not minimal)") }
                return (result, n)
            }
            shift += 7
            i = bytes.index(after: i)
        }
    }
}
