import Foundation

/// Base58btc (Bitcoin alphabet), used for peer IDs.
public enum Base58 {
    static let alphabet = Array("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".utf8)
    static let decodeTable: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        String(decoding: BaseN.encode(bytes, base: 58, alphabet: alphabet), as: UTF8.self)
    }

    /// Nil on any character outside the alphabet or input over 1 KiB.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count <= 1024 else { return nil }
        return BaseN.decode(chars, base: 58, table: decodeTable, zeroChar: alphabet[0])
    }
}

/// Base36 lowercase, as multibase `k` uses it.
public enum Base36 {
    static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
    static let decodeTable: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() {
            t[Int(c)] = Int8(i)
            if c >= 97 { t[Int(c) - 32] = Int8(i) }
        }
        return t
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        String(decoding: BaseN.encode(bytes, base: 36, alphabet: alphabet), as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count <= 1024 else { return nil }
        return BaseN.decode(chars, base: 36, table: decodeTable, zeroChar: alphabet[0])
    }
}

/// Generic big-number radix conversion with leading-zero preservation (as base58btc does).
enum BaseN {
    static func encode(_ bytes: [UInt8], base: Int, alphabet: [UInt8]) -> [UInt8] {
        var zeros = 0
        while zeros < bytes.count && bytes[zeros] == 0 { zeros += 1 }
        var digits: [Int] = []  // little-endian digits in `base`
        for byte in bytes[zeros...] {
            var carry = Int(byte)
            for j in 0..<digits.count {
                carry += digits[j] << 8
                digits[j] = carry % base
                carry /= base
            }
            while carry > 0 {
                digits.append(carry % base)
                carry /= base
            }
        }
        var out = [UInt8](repeating: alphabet[0], count: zeros)
        for d in digits.reversed() { out.append(alphabet[d]) }
        return out
    }

    static func decode(_ chars: [UInt8], base: Int, table: [Int8], zeroChar: UInt8) -> [UInt8]? {
        var zeros = 0
        while zeros < chars.count && chars[zeros] == zeroChar { zeros += 1 }
        var bytes: [Int] = []  // little-endian base-256
        for c in chars[zeros...] {
            let v = table[Int(c)]
            guard v >= 0 else { return nil }
            var carry = Int(v)
            for j in 0..<bytes.count {
                carry += bytes[j] * base
                bytes[j] = carry & 0xff
                carry >>= 8
            }
            while carry > 0 {
                bytes.append(carry & 0xff)
                carry >>= 8
            }
        }
        return [UInt8](repeating: 0, count: zeros) + bytes.reversed().map { UInt8($0) }
    }
}

/// Standard base64 (RFC 4648 with padding), strict on decode.
public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Nil on anything but canonical padded standard base64 (surrounding whitespace is trimmed).
    public static func decode(_ text: String) -> [UInt8]? {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.isEmpty, t.utf8.count % 4 == 0 else { return t.isEmpty ? [] : nil }
        guard let d = Data(base64Encoded: t) else { return nil }
        let bytes = [UInt8](d)
        // Reject non-canonical encodings (non-zero padding bits).
        guard Data(bytes).base64EncodedString() == t else { return nil }
        return bytes
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    static let digits = Array("0123456789abcdef".utf8)

    public static func encode<C: Sequence>(_ bytes: C) -> String where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let c = Array(text.utf8)
        guard c.count % 2 == 0 else { return nil }
        func nib(_ x: UInt8) -> UInt8? {
            switch x {
            case 48...57: return x - 48
            case 97...102: return x - 87
            case 65...70: return x - 55
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(c.count / 2)
        var i = 0
        while i < c.count {
            guard let h = nib(c[i]), let l = nib(c[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
}
