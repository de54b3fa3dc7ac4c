import Foundation

/// A UTC instant with nanosecond precision, formatted the way Go's RFC3339Nano writes it.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Seconds since the Unix epoch.
    public var seconds: Int64
    /// Nanoseconds within the second, 0..<1_000_000_000.
    public var nanos: Int32

    public init(seconds: Int64, nanos: Int32 = 0) {
        self.seconds = seconds
        self.nanos = nanos
    }

    /// The current wall-clock time.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec), nanos: Int32(ts.tv_nsec))
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        a.seconds != b.seconds ? a.seconds < b.seconds : a.nanos < b.nanos
    }

    public func adding(seconds s: Int64) -> Timestamp { Timestamp(seconds: seconds + s, nanos: nanos) }

    /// Difference a - b in seconds (fractional).
    public func interval(since other: Timestamp) -> Double {
        Double(seconds - other.seconds) + Double(nanos - other.nanos) / 1e9
    }

    /// Go RFC3339Nano: UTC, `Z`, fraction without trailing zeros, none when zero.
    public var rfc3339Nano: String {
        let (y, mo, d, h, mi, s) = Timestamp.civil(fromUnix: seconds)
        var out: [UInt8] = []
        out.reserveCapacity(30)
        func digits(_ v: Int, _ width: Int) {
            // Zero-padded to `width`; wider values keep all their digits (as %0Nd does).
            var buf: [UInt8] = []
            var x = v < 0 ? -v : v
            repeat { buf.append(UInt8(48 + x % 10)); x /= 10 } while x > 0
            while buf.count < (v < 0 ? width - 1 : width) { buf.append(48) }
            if v < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: buf.reversed())
        }
        digits(y, 4); out.append(UInt8(ascii: "-")); digits(mo, 2); out.append(UInt8(ascii: "-")); digits(d, 2)
        out.append(UInt8(ascii: "T")); digits(h, 2); out.append(UInt8(ascii: ":")); digits(mi, 2); out.append(UInt8(ascii: ":")); digits(s, 2)
        if nanos != 0 {
            out.append(UInt8(ascii: "."))
            var frac = Int(nanos)
            var width = 9
            while frac % 10 == 0 { frac /= 10; width -= 1 }
            digits(frac, width)
        }
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { rfc3339Nano }

    /// Parse RFC 3339 (any offset, optional fraction up to 9 digits). Returns nil on malformed input.
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for i in from..<(from + count) {
                let c = b[i]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard b.count >= 20,
              let y = num(0, 4), b[4] == 45, let mo = num(5, 2), b[7] == 45, let d = num(8, 2),
              b[10] == 84 || b[10] == 116, let h = num(11, 2), b[13] == 58, let mi = num(14, 2),
              b[16] == 58, let s = num(17, 2) else { return nil }
        guard (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61 else { return nil }
        guard d <= Timestamp.daysIn(year: y, month: mo) else { return nil }
        var i = 19
        var nanos = 0
        if i < b.count && b[i] == 46 {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 9 { nanos = nanos * 10 + Int(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits >= 1, digits <= 9 else { return nil }
            for _ in digits..<9 { nanos *= 10 }
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45 {
            guard let oh = num(i + 1, 2), b.count > i + 3, b[i + 3] == 58, let om = num(i + 4, 2), oh < 24, om < 60 else { return nil }
            offset = (oh * 60 + om) * 60 * (b[i] == 45 ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = Timestamp.daysFromCivil(y, mo, d)
        let secs = Int64(days) * 86400 + Int64(h * 3600 + mi * 60 + min(s, 59)) - Int64(offset)
        self.init(seconds: secs, nanos: Int32(nanos))
    }

    static func daysIn(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's civil-from-days algorithms (public domain arithmetic).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civil(fromUnix secs: Int64) -> (Int, Int, Int, Int, Int, Int) {
        var days = Int(secs / 86400)
        var rem = Int(secs % 86400)
        if rem < 0 { rem += 86400; days -= 1 }
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
    }
}

/// Monotonic clock in nanoseconds, for timeouts and latency measurement.
public enum Monotonic {
    public static func nanos() -> UInt64 { read(CLOCK_MONOTONIC) }

    /// CPU time the calling thread has used, in nanoseconds.
    public static func threadCPUNanos() -> UInt64 { read(CLOCK_THREAD_CPUTIME_ID) }

    private static func read(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Parse a duration like `30s`, `5m`, `250ms`, `1h`, or a bare number of seconds.
public func parseDuration(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces)
    let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000001), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, mult) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v >= 0, v.isFinite { return v * mult }
        return nil
    }
    if let v = Double(t), v >= 0, v.isFinite { return v }
    return nil
}
