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
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    /// Byte → 6-bit value, 0xff for bytes outside the alphabet.
    static let values: [UInt8] = {
        var t = [UInt8](repeating: 0xff, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

    /// A byte of the alphabet or the padding `=` (what canonical base64 text is made of).
    public static func isTextByte(_ b: UInt8) -> Bool { values[Int(b)] < 64 || b == UInt8(ascii: "=") }

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(alphabet[Int(v & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(rest == 2 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Nil on anything but canonical padded standard base64 (surrounding whitespace is trimmed).
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        var ascii = true
        let r = text.withUTF8 { u -> [UInt8]? in
            // Non-ASCII input is never valid base64, but Unicode whitespace around it is trimmed.
            if u.contains(where: { $0 >= 0x80 }) { ascii = false; return nil }
            return decode(ascii: u)
        }
        if ascii { return r }
        let trimmed = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        if trimmed.contains(where: { $0 >= 0x80 }) { return nil }
        return trimmed.withUnsafeBufferPointer { decode(ascii: $0) }
    }

    private static func decode(ascii u: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var lo = 0, hi = u.count
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0d) }
        while lo < hi && isSpace(u[lo]) { lo += 1 }
        while hi > lo && isSpace(u[hi - 1]) { hi -= 1 }
        let n = hi - lo
        if n == 0 { return [] }
        guard n % 4 == 0 else { return nil }
        var pad = 0
        if u[hi - 1] == UInt8(ascii: "=") { pad = 1; if u[hi - 2] == UInt8(ascii: "=") { pad = 2 } }
        let count = n / 4 * 3 - pad
        var ok = true
        let out = values.withUnsafeBufferPointer { values in
            [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
                var i = lo, o = 0
                while i < hi {
                    let last = i + 4 == hi
                    let a = values[Int(u[i])], b = values[Int(u[i + 1])]
                    let c = last && pad == 2 ? 0 : values[Int(u[i + 2])]
                    let d = last && pad >= 1 ? 0 : values[Int(u[i + 3])]
                    guard a < 64, b < 64, c < 64, d < 64 else { ok = false; break }
                    let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    if last {
                        // Canonical: the bits the padding drops must be zero.
                        if pad == 2 && (b & 0x0f) != 0 { ok = false; break }
                        if pad == 1 && (c & 0x03) != 0 { ok = false; break }
                    }
                    out[o] = UInt8(v >> 16)
                    if !(last && pad == 2) { out[o + 1] = UInt8(v >> 8 & 0xff) }
                    if !(last && pad >= 1) { out[o + 2] = UInt8(v & 0xff) }
                    o += last ? 3 - pad : 3
                    i += 4
                }
                initialized = ok ? count : 0
            }
        }
        return ok ? out : nil
    }
}

/// Lowercase hexadecimal.
public enum Hex {
    static let digits = Array("0123456789abcdef".utf8)

    /// Bytes in an array (tx ids, hashes): written straight into the string's storage. The
    /// generic version below, called across modules unspecialized, took ~2.5 µs for 32 bytes.
    public static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { b in
            String(unsafeUninitializedCapacity: 2 * b.count) { out in
                write(b, to: out)
                return 2 * b.count
            }
        }
    }

    /// Append the digits of `bytes` to `out` in one append (an append per digit checks the
    /// array's uniqueness each time, which cost more than the digits).
    public static func append(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * bytes.count) { t in
            write(bytes, to: t)
            out.append(contentsOf: t)
        }
    }

    /// The digits of `bytes` into the first `2 * bytes.count` places of `out`.
    private static func write(_ bytes: UnsafeRawBufferPointer, to out: UnsafeMutableBufferPointer<UInt8>) {
        digits.withUnsafeBufferPointer { d in
            for (i, x) in bytes.enumerated() {
                out[2 * i] = d[Int(x >> 4)]
                out[2 * i + 1] = d[Int(x & 15)]
            }
        }
    }

    /// Whether `text` is exactly `count` lowercase hex digits (a SHA-256 digest: 64).
    public static func isLowercase(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

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
