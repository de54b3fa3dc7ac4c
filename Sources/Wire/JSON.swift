// Strict JSON: a value type, a bounded parser and an RFC 8785 (JCS) canonical serializer.
//
// The value model is deliberately small: integers only (|n| <= 2^53), no floats. That is
// what signed transactions need (see docs/adr/0004-tx-canonical-form.md): with no floats,
// RFC 8785 number formatting reduces to plain decimal integers.

#if canImport(Glibc)
import Glibc
#endif

/// A JSON value with integers only and objects that keep their key order.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// An integer within ±2^53 (the range every JSON implementation represents exactly).
    case int(Int64)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// Structural equality; strings compare byte for byte (never Unicode-normalized),
    /// objects member by member in order.
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.string(let x), .string(let y)): return utf8Equal(x, y)
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x == y
        default: return false
        }
    }

    /// The largest magnitude an integer may have: 2^53.
    public static let maxSafeInteger: Int64 = 1 << 53

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int64? { if case .int(let v) = self { return v }; return nil }
    public var boolValue: Bool? { if case .bool(let v) = self { return v }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let v) = self { return v }; return nil }
    public var objectValue: JSONObject? { if case .object(let v) = self { return v }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }

    /// Member of an object by key (nil for non-objects and missing keys).
    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// Build an object from ordered pairs (later duplicates replace earlier values).
    public static func obj(_ pairs: [(String, JSONValue)]) -> JSONValue {
        var o = JSONObject()
        for (k, v) in pairs { o[k] = v }
        return .object(o)
    }

    /// A human-readable name of the value's type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int: return "integer"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// Byte-for-byte equality of two strings' UTF-8. Swift's `==` treats canonically equivalent
/// strings as equal ("\u{212A}" == "K"); JSON keys and signed fields must not. One `memcmp`
/// for native strings.
@inlinable
public func utf8Equal(_ a: String, _ b: String) -> Bool {
    let n = a.utf8.count
    guard n == b.utf8.count else { return false }
    if n == 0 { return true }
    let r = a.utf8.withContiguousStorageIfAvailable { pa in
        b.utf8.withContiguousStorageIfAvailable { pb in memcmp(pa.baseAddress!, pb.baseAddress!, n) == 0 }
    }
    if let r, let r { return r }
    return a.utf8.elementsEqual(b.utf8)
}

/// A JSON object: members in insertion order, keys unique (compared byte for byte, never Unicode-normalized).
public struct JSONObject: Equatable, Sendable, Sequence {
    /// The members in order.
    public private(set) var members: [(key: String, value: JSONValue)] = []

    public init() {}

    public init(_ pairs: [(String, JSONValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map { $0.key } }

    /// Get or set a member; setting nil removes it, setting an existing key keeps its position.
    public subscript(key: String) -> JSONValue? {
        get {
            for m in members where utf8Equal(m.key, key) { return m.value }
            return nil
        }
        set {
            if let i = members.firstIndex(where: { utf8Equal($0.key, key) }) {
                if let v = newValue { members[i].value = v } else { members.remove(at: i) }
            } else if let v = newValue {
                members.append((key, v))
            }
        }
    }

    /// Append without checking for an existing key (the parser checks duplicates itself).
    mutating func appendUnchecked(_ key: String, _ value: JSONValue) {
        members.append((key, value))
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> {
        members.makeIterator()
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.members.count == b.members.count else { return false }
        for (x, y) in zip(a.members, b.members) where !utf8Equal(x.key, y.key) || x.value != y.value { return false }
        return true
    }
}

/// Why a JSON text was rejected; `offset` is the byte position where the problem was found.
public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What kind of problem it is (stable, testable).
    public enum Kind: String, Sendable {
        case tooLarge = "too_large"
        case tooDeep = "too_deep"
        case unexpectedEnd = "unexpected_end"
        case unexpectedCharacter = "unexpected_character"
        case trailingData = "trailing_data"
        case duplicateKey = "duplicate_key"
        case floatNotAllowed = "float_not_allowed"
        case integerOutOfRange = "integer_out_of_range"
        case invalidNumber = "invalid_number"
        case invalidUTF8 = "invalid_utf8"
        case invalidEscape = "invalid_escape"
        case loneSurrogate = "lone_surrogate"
        case controlCharacter = "control_character"
    }

    public let kind: Kind
    public let offset: Int
    public let detail: String

    public init(_ kind: Kind, at offset: Int, _ detail: String) {
        self.kind = kind
        self.offset = offset
        self.detail = detail
    }

    public var description: String { "invalid JSON at byte \(offset): \(detail)" }
}

/// Limits applied while parsing untrusted JSON.
public struct JSONLimits: Sendable {
    /// Maximum input size in bytes.
    public var maxBytes: Int
    /// Maximum nesting depth of arrays and objects (the top-level value is depth 1).
    public var maxDepth: Int

    public init(maxBytes: Int = 1 << 20, maxDepth: Int = 64) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
    }
}

/// One parsed JSON text and what the parser learned about its bytes on the way: whether they
/// are exactly the canonical form (RFC 8785, as `canonicalBytes` writes it) of the value, and
/// where each member of a top-level object lies. Signed txs arrive canonical (every signer and
/// every leader writes them so): their signed bytes are then cut from the input instead of
/// being written again.
public struct JSONDocument: Sendable {
    /// The bytes parsed (kept with what was learned about them, so the two cannot be mixed up).
    public let bytes: [UInt8]
    public let value: JSONValue
    /// True only if the input bytes equal `value.canonicalBytes`. Decided conservatively while
    /// parsing: whitespace, an escape the canonical writer would not write, "-0", object keys
    /// out of order, and keys holding a byte from 0xEE up (where UTF-8 and UTF-16 order can
    /// differ) all make it false, and false only costs the caller an encoding.
    public let isCanonical: Bool
    /// For a canonical top-level object: each member's byte range in the input, from its key's
    /// opening quote to the end of its value, in order. Empty otherwise.
    public let memberRanges: [Range<Int>]

    /// Parse exactly one JSON value (surrounding whitespace allowed) under `limits`; the same
    /// rules and errors as `JSONValue.parse`.
    public init(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) throws(JSONError) {
        try self.init(bytes, limits: limits, recordMembers: true)
    }

    init(_ bytes: [UInt8], limits: JSONLimits, recordMembers: Bool) throws(JSONError) {
        self.bytes = bytes
        guard bytes.count <= limits.maxBytes else {
            throw JSONError(.tooLarge, at: 0, "input is \(bytes.count) bytes, limit is \(limits.maxBytes)")
        }
        (value, isCanonical, memberRanges) = try bytes.withUnsafeBufferPointer { (buf) throws(JSONError) -> (JSONValue, Bool, [Range<Int>]) in
            var p = JSONParser(buf: buf, maxDepth: limits.maxDepth)
            p.recordMembers = recordMembers
            p.skipWhitespace()
            let v = try p.parseValue(depth: 1)
            p.skipWhitespace()
            guard p.pos == buf.count else {
                throw JSONError(.trailingData, at: p.pos, "unexpected data after the JSON value")
            }
            return (v, p.canonical && recordMembers, p.canonical ? p.members : [])
        }
    }

    /// `prefix` followed by the canonical bytes of the value with the top-level member `key` left
    /// out — what `value.canonicalBytes(prefix:omitting:)` returns — cut from the input when it
    /// is canonical, else written.
    public func canonicalBytes(prefix: String, omitting key: String) -> [UInt8] {
        guard isCanonical, case .object(let o) = value, memberRanges.count == o.count,
              let k = o.members.firstIndex(where: { utf8Equal($0.key, key) }) else {
            return value.canonicalBytes(prefix: prefix, omitting: key)
        }
        // Without member k the rest is still sorted: drop it with one of its commas.
        let cut: Range<Int>
        if o.count == 1 {
            cut = memberRanges[0]
        } else if k > 0 {
            cut = memberRanges[k - 1].upperBound..<memberRanges[k].upperBound
        } else {
            cut = memberRanges[0].lowerBound..<memberRanges[1].lowerBound
        }
        var out: [UInt8] = []
        out.reserveCapacity(prefix.utf8.count + bytes.count - cut.count)
        out.append(contentsOf: prefix.utf8)
        out.append(contentsOf: bytes[..<cut.lowerBound])
        out.append(contentsOf: bytes[cut.upperBound...])
        return out
    }
}

extension JSONValue {
    /// Parse exactly one JSON value (surrounding whitespace allowed) under `limits`.
    ///
    /// Rejects: input over `maxBytes`, nesting over `maxDepth`, duplicate object keys,
    /// fractions and exponents, integers beyond ±2^53, invalid UTF-8 (including overlong
    /// forms and UTF-8-encoded surrogates), lone `\u` surrogates, raw control characters
    /// in strings, and anything after the value.
    public static func parse(_ bytes: [UInt8], limits: JSONLimits = JSONLimits()) throws(JSONError) -> JSONValue {
        try JSONDocument(bytes, limits: limits, recordMembers: false).value
    }

    /// Parse a string's UTF-8 bytes.
    public static func parse(_ text: String, limits: JSONLimits = JSONLimits()) throws(JSONError) -> JSONValue {
        try parse(Array(text.utf8), limits: limits)
    }
}

/// Reads one large JSON document a piece at a time (e.g. a snapshot of many rows), so the
/// document never becomes one value tree in memory. The same rules as `JSONValue.parse` apply to
/// every value it returns; the caller walks the structure around them. The buffer must stay
/// valid while the cursor is used.
public struct JSONCursor {
    private var p: JSONParser

    public init(_ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int = 64) {
        p = JSONParser(buf: buf, maxDepth: maxDepth)
    }

    /// Byte offset of the next unread byte.
    public var offset: Int { p.pos }

    /// The next byte after whitespace, without consuming it (nil at the end).
    public mutating func peek() -> UInt8? {
        p.skipWhitespace()
        return p.pos < p.buf.count ? p.buf[p.pos] : nil
    }

    /// Consume `c` (after whitespace) or throw.
    public mutating func expect(_ c: UInt8) throws(JSONError) {
        guard let n = peek() else {
            throw JSONError(.unexpectedEnd, at: p.pos, "expected '\(Character(Unicode.Scalar(c)))', input ends")
        }
        guard n == c else {
            throw JSONError(.unexpectedCharacter, at: p.pos, "expected '\(Character(Unicode.Scalar(c)))', found \(p.describe(n))")
        }
        p.pos += 1
    }

    /// Inside an array or object whose opening bracket was consumed: true when another element
    /// follows (consuming the ',' before it), false after consuming `close`. Pass the same
    /// `first` variable (initially true) for every element of one container.
    public mutating func next(close: UInt8, first: inout Bool) throws(JSONError) -> Bool {
        guard let n = peek() else { throw JSONError(.unexpectedEnd, at: p.pos, "input ends inside a container") }
        if n == close { p.pos += 1; return false }
        if first { first = false; return true }
        guard n == UInt8(ascii: ",") else {
            throw JSONError(.unexpectedCharacter, at: p.pos, "expected ',' or '\(Character(Unicode.Scalar(close)))', found \(p.describe(n))")
        }
        p.pos += 1
        return true
    }

    /// A string value (e.g. an object key).
    public mutating func string() throws(JSONError) -> String {
        guard let n = peek() else { throw JSONError(.unexpectedEnd, at: p.pos, "expected a string, input ends") }
        guard n == UInt8(ascii: "\"") else { throw JSONError(.unexpectedCharacter, at: p.pos, "expected a string, found \(p.describe(n))") }
        return try p.parseString()
    }

    /// One complete value, nested at most `maxDepth` levels below `depth`.
    public mutating func value(depth: Int = 1) throws(JSONError) -> JSONValue {
        p.skipWhitespace()
        return try p.parseValue(depth: depth)
    }

    /// Only whitespace may remain.
    public mutating func expectEnd() throws(JSONError) {
        if peek() != nil { throw JSONError(.trailingData, at: p.pos, "unexpected data after the JSON value") }
    }
}

struct JSONParser {
    let buf: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var pos = 0
    /// Still exactly the canonical form so far (see `JSONDocument.isCanonical`).
    var canonical = true
    /// Record the member ranges of a top-level object in `members` (while `canonical`).
    var recordMembers = false
    var members: [Range<Int>] = []
    /// The last string parsed was printable ASCII without escapes.
    var lastStringASCII = false

    init(buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.maxDepth = maxDepth
    }

    mutating func skipWhitespace() {
        let start = pos
        while pos < buf.count {
            let c = buf[pos]
            if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { pos += 1 } else { break }
        }
        if pos != start { canonical = false }
    }

    func describe(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x" + String(c, radix: 16)
    }

    mutating func expectLiteral(_ word: StaticString, _ value: JSONValue) throws(JSONError) -> JSONValue {
        let start = pos
        let w = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        for c in w {
            guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside a literal") }
            guard buf[pos] == c else { throw JSONError(.unexpectedCharacter, at: pos, "invalid literal starting at byte \(start)") }
            pos += 1
        }
        return value
    }

    mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "expected a value, input ends") }
        let c = buf[pos]
        switch c {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expectLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try expectLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try expectLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw JSONError(.unexpectedCharacter, at: pos, "expected a value, found \(describe(c))")
        }
    }

    mutating func parseObject(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= maxDepth else { throw JSONError(.tooDeep, at: pos, "nesting deeper than \(maxDepth)") }
        pos += 1
        var obj = JSONObject()
        // Duplicate keys, byte-exact (Swift String equality would merge canonically equivalent
        // keys): a linear scan while the object is small, a set of the keys' bytes beyond that.
        var seen: Set<[UInt8]>? = nil
        // While the keys come strictly increasing (canonical order), none can repeat an earlier
        // one and the duplicate scan is skipped.
        var increasing = true
        if depth == 1 && recordMembers { members.reserveCapacity(8) }
        skipWhitespace()
        if pos < buf.count && buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(obj) }
        while true {
            skipWhitespace()
            guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside an object") }
            guard buf[pos] == UInt8(ascii: "\"") else {
                throw JSONError(.unexpectedCharacter, at: pos, "expected an object key string, found \(describe(buf[pos]))")
            }
            let keyAt = pos
            let key = try parseString()
            // Canonical order: strictly increasing UTF-16 code units, which is UTF-8 byte order
            // for keys without bytes from 0xEE up (for others, assume not canonical).
            if increasing && !((lastStringASCII || JSONWriter.utf8Below0xEE(key))
                               && (obj.count == 0 || JSONWriter.utf8Precedes(obj.members[obj.count - 1].key, key))) {
                increasing = false
                canonical = false
            }
            let duplicate: Bool
            if increasing {
                duplicate = false
            } else if obj.count < 16 {
                duplicate = obj.members.contains { utf8Equal($0.key, key) }
            } else {
                if seen == nil { seen = Set(obj.members.map { Array($0.key.utf8) }) }
                duplicate = !seen!.insert(Array(key.utf8)).inserted
            }
            guard !duplicate else {
                throw JSONError(.duplicateKey, at: keyAt, "duplicate object key \"\(key)\"")
            }
            skipWhitespace()
            guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside an object") }
            guard buf[pos] == UInt8(ascii: ":") else {
                throw JSONError(.unexpectedCharacter, at: pos, "expected ':' after an object key, found \(describe(buf[pos]))")
            }
            pos += 1
            skipWhitespace()
            let v = try parseValue(depth: depth + 1)
            obj.appendUnchecked(key, v)
            if depth == 1 && recordMembers && canonical { members.append(keyAt..<pos) }
            skipWhitespace()
            guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside an object") }
            if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if buf[pos] == UInt8(ascii: "}") { pos += 1; return .object(obj) }
            throw JSONError(.unexpectedCharacter, at: pos, "expected ',' or '}' in an object, found \(describe(buf[pos]))")
        }
    }

    mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= maxDepth else { throw JSONError(.tooDeep, at: pos, "nesting deeper than \(maxDepth)") }
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < buf.count && buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside an array") }
            if buf[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if buf[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw JSONError(.unexpectedCharacter, at: pos, "expected ',' or ']' in an array, found \(describe(buf[pos]))")
        }
    }

    mutating func parseNumber() throws(JSONError) -> JSONValue {
        let start = pos
        var negative = false
        if buf[pos] == UInt8(ascii: "-") {
            negative = true
            pos += 1
        }
        guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside a number") }
        let first = buf[pos]
        guard first >= 0x30 && first <= 0x39 else {
            throw JSONError(.invalidNumber, at: pos, "expected a digit, found \(describe(first))")
        }
        var magnitude: UInt64 = 0
        var overflow = false
        if first == 0x30 {
            pos += 1
            if pos < buf.count, buf[pos] >= 0x30, buf[pos] <= 0x39 {
                throw JSONError(.invalidNumber, at: start, "numbers must not have leading zeros")
            }
        } else {
            while pos < buf.count, buf[pos] >= 0x30, buf[pos] <= 0x39 {
                if !overflow {
                    magnitude = magnitude * 10 + UInt64(buf[pos] - 0x30)
                    if magnitude > UInt64(JSONValue.maxSafeInteger) { overflow = true }
                }
                pos += 1
            }
        }
        if pos < buf.count, buf[pos] == UInt8(ascii: ".") || buf[pos] == UInt8(ascii: "e") || buf[pos] == UInt8(ascii: "E") {
            throw JSONError(.floatNotAllowed, at: start, "fractions and exponents are not allowed; use an integer")
        }
        guard !overflow else {
            throw JSONError(.integerOutOfRange, at: start, "integer beyond ±2^53 (9007199254740992)")
        }
        let v = Int64(magnitude)
        if negative && v == 0 { canonical = false }    // "-0" is written "0"
        return .int(negative ? -v : v)
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
        guard pos + 4 <= buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside a \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[pos]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            default: throw JSONError(.invalidEscape, at: pos, "\\u must be followed by 4 hex digits")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    /// The four bytes at `i` are "00" and two lowercase hex digits naming a control character
    /// that has no short escape (what `JSONWriter.writeString` writes as \u00XX).
    static func isCanonicalUnicodeEscape(_ buf: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        guard i + 4 <= buf.count, buf[i] == 0x30, buf[i + 1] == 0x30, buf[i + 2] == 0x30 || buf[i + 2] == 0x31 else { return false }
        let d = buf[i + 3]
        let low: UInt8
        switch d {
        case 0x30...0x39: low = d - 0x30
        case 0x61...0x66: low = d - 0x61 + 10
        default: return false
        }
        let c = (buf[i + 2] - 0x30) << 4 | low
        return c != 0x08 && c != 0x09 && c != 0x0A && c != 0x0C && c != 0x0D
    }

    mutating func parseString() throws(JSONError) -> String {
        pos += 1  // opening quote
        // Fast path: printable ASCII without escapes up to the closing quote becomes the String
        // directly. Anything else continues below with what was scanned so far.
        let start = pos
        var i = pos
        while i < buf.count {
            let c = buf[i]
            guard c >= 0x20, c < 0x80, c != UInt8(ascii: "\\") else { break }
            if c == UInt8(ascii: "\"") {
                pos = i + 1
                lastStringASCII = true
                return String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
            }
            i += 1
        }
        lastStringASCII = false
        var out: [UInt8] = Array(buf[start..<i])
        pos = i
        while true {
            guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside a string") }
            let c = buf[pos]
            if c == UInt8(ascii: "\"") {
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c == UInt8(ascii: "\\") {
                let escAt = pos
                pos += 1
                guard pos < buf.count else { throw JSONError(.unexpectedEnd, at: pos, "input ends inside an escape") }
                let e = buf[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F); canonical = false
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    // The canonical writer uses \u only for control characters without a short
                    // escape, as "\u00" and two lowercase hex digits.
                    if canonical && !JSONParser.isCanonicalUnicodeEscape(buf, at: pos) { canonical = false }
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        guard pos + 1 < buf.count, buf[pos] == UInt8(ascii: "\\"), buf[pos + 1] == UInt8(ascii: "u") else {
                            throw JSONError(.loneSurrogate, at: escAt, "high surrogate \\u\(String(scalar, radix: 16)) not followed by a low surrogate")
                        }
                        pos += 2
                        let low = try hex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw JSONError(.loneSurrogate, at: escAt, "high surrogate followed by \\u\(String(low, radix: 16)), not a low surrogate")
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw JSONError(.loneSurrogate, at: escAt, "lone low surrogate \\u\(String(scalar, radix: 16))")
                    }
                    // Always a valid scalar here: surrogates were combined or rejected.
                    guard let u = Unicode.Scalar(scalar) else {
                        throw JSONError(.loneSurrogate, at: escAt, "invalid code point")
                    }
                    out.append(contentsOf: UTF8.encode(u)!)
                default:
                    throw JSONError(.invalidEscape, at: escAt, "invalid escape \\\(describe(e))")
                }
                continue
            }
            if c < 0x20 {
                throw JSONError(.controlCharacter, at: pos, "raw control character 0x\(String(c, radix: 16)) in a string; escape it")
            }
            if c < 0x80 {
                out.append(c)
                pos += 1
                continue
            }
            // Multi-byte UTF-8: validate strictly (no overlongs, no surrogates, <= U+10FFFF).
            let start = pos
            let need: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: throw JSONError(.invalidUTF8, at: pos, "invalid UTF-8 lead byte 0x\(String(c, radix: 16))")
            }
            guard pos + need < buf.count else { throw JSONError(.invalidUTF8, at: pos, "truncated UTF-8 sequence") }
            let b1 = buf[pos + 1]
            guard b1 >= lo && b1 <= hi else { throw JSONError(.invalidUTF8, at: pos, "invalid UTF-8 sequence") }
            if need >= 2 { guard buf[pos + 2] & 0xC0 == 0x80 else { throw JSONError(.invalidUTF8, at: pos, "invalid UTF-8 sequence") } }
            if need >= 3 { guard buf[pos + 3] & 0xC0 == 0x80 else { throw JSONError(.invalidUTF8, at: pos, "invalid UTF-8 sequence") } }
            out.append(contentsOf: buf[start...(start + need)])
            pos += need + 1
        }
    }
}

// MARK: - Serializers

extension JSONValue {
    /// RFC 8785 canonical form: keys sorted by UTF-16 code units, no whitespace, minimal escaping.
    /// Objects are assumed to have unique keys (the parser and `JSONObject` guarantee it).
    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        JSONWriter.write(self, into: &out, canonical: true)
        return out
    }

    /// `prefix`, then the canonical bytes of this value with the top-level object member
    /// `omitting` left out (a non-object is written whole) — what a signer signs, written in one
    /// buffer without copying the object first.
    public func canonicalBytes(prefix: String, omitting key: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(prefix.utf8.count + 384)
        out.append(contentsOf: prefix.utf8)
        if case .object(let o) = self {
            JSONWriter.writeObject(o, into: &out, canonical: true, omitting: key)
        } else {
            JSONWriter.write(self, into: &out, canonical: true)
        }
        return out
    }

    /// The canonical form as a String.
    public var canonicalString: String { String(decoding: canonicalBytes, as: UTF8.self) }

    /// Compact form keeping the objects' own key order (for NDJSON output and logs).
    public var compactString: String {
        var out: [UInt8] = []
        JSONWriter.write(self, into: &out, canonical: false)
        return String(decoding: out, as: UTF8.self)
    }

    /// Indented (two spaces) form keeping key order, for humans and API output.
    public var prettyString: String {
        var out: [UInt8] = []
        JSONWriter.pretty(self, into: &out, indent: 0)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Pieces of the canonical serializer for code that writes JSON incrementally (e.g. a large
/// snapshot streamed from database rows) and must produce the same bytes as `canonicalBytes`.
public enum CanonicalJSON {
    /// Append `"…"` with the escaping `canonicalBytes` uses; `utf8` must be valid UTF-8.
    public static func appendString(utf8: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        JSONWriter.writeString(utf8: utf8, into: &out)
    }

    public static func appendString(_ s: String, to out: inout [UInt8]) {
        JSONWriter.writeString(s, into: &out)
    }

    /// Append an integer the way `canonicalBytes` writes `.int`.
    public static func appendInt(_ n: Int64, to out: inout [UInt8]) {
        JSONWriter.writeInt(n, into: &out)
    }
}

enum JSONWriter {
    static let hexDigits = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        var s = s
        s.withUTF8 { writeString(utf8: $0, into: &out) }
    }

    /// A string given as its UTF-8 bytes (assumed valid), escaped the same way.
    static func writeString(utf8: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        out.append(0x22)
        // Runs of bytes that need no escape are copied in one append each (most strings are one run).
        var start = 0
        var i = 0
        let n = utf8.count
        while i < n {
            let c = utf8[i]
            if c >= 0x20 && c != 0x22 && c != 0x5C { i += 1; continue }
            if i > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i])) }
            switch c {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            default:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hexDigits[Int(c >> 4)], hexDigits[Int(c & 15)]])
            }
            i += 1
            start = i
        }
        if n > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<n])) }
        out.append(0x22)
    }

    /// Decimal digits of `n`, without a String in between.
    static func writeInt(_ n: Int64, into out: inout [UInt8]) {
        if n < 0 { out.append(UInt8(ascii: "-")) }
        var m = n.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)    // 20 digits at most, filled from the end
        withUnsafeMutableBytes(of: &digits) { buf in
            var i = 20
            repeat {
                i -= 1
                buf[i] = UInt8(ascii: "0") + UInt8(m % 10)
                m /= 10
            } while m > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[i..<20]))
        }
    }

    /// RFC 8785 §3.2.3: sort by the UTF-16 code units of the keys.
    static func sortedMembers(_ o: JSONObject) -> [(key: String, value: JSONValue)] {
        // Byte order of UTF-8 equals UTF-16 code-unit order except where a key holds a character
        // above U+FFFF or between U+E000 and U+FFFF; keys made only of bytes below 0xEE (every
        // key this project writes) sort directly on their UTF-8 bytes, without copies. Objects
        // parsed from canonical JSON (log entries, signed txs) are already in that order: one
        // pass confirms it and the members are used as they are.
        let m = o.members
        var byteOrder = true
        var inOrder = true
        for i in m.indices {
            if !utf8Below0xEE(m[i].key) { byteOrder = false; break }
            if inOrder && i > 0 && !utf8Precedes(m[i - 1].key, m[i].key) { inOrder = false }
        }
        if byteOrder {
            return inOrder ? m : m.sorted { utf8Precedes($0.key, $1.key) }
        }
        let withUnits = m.map { (Array($0.key.utf16), $0) }
        return withUnits.sorted { $0.0.lexicographicallyPrecedes($1.0) }.map { $0.1 }
    }

    /// Whether `a`'s UTF-8 bytes sort strictly before `b`'s (memcmp, then length).
    @inline(__always) static func utf8Precedes(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let n = Swift.min(pa.count, pb.count)
                if n > 0 {
                    let c = memcmp(pa.baseAddress!, pb.baseAddress!, n)
                    if c != 0 { return c < 0 }
                }
                return pa.count < pb.count
            }
        }
    }

    @inline(__always) static func utf8Below0xEE(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { $0.allSatisfy { $0 < 0xEE } }
    }

    static func write(_ v: JSONValue, into out: inout [UInt8], canonical: Bool) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let n): writeInt(n, into: &out)
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out, canonical: canonical)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            writeObject(o, into: &out, canonical: canonical)
        }
    }

    /// An object's members; with `omitting`, the member of that key is left out.
    static func writeObject(_ o: JSONObject, into out: inout [UInt8], canonical: Bool, omitting: String? = nil) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for m in canonical ? sortedMembers(o) : o.members {
            if let omitting, utf8Equal(m.key, omitting) { continue }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            writeString(m.key, into: &out)
            out.append(UInt8(ascii: ":"))
            write(m.value, into: &out, canonical: canonical)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func newline(_ out: inout [UInt8], _ indent: Int) {
        out.append(0x0A)
        out.append(contentsOf: [UInt8](repeating: 0x20, count: indent * 2))
    }

    static func pretty(_ v: JSONValue, into out: inout [UInt8], indent: Int) {
        switch v {
        case .array(let items) where !items.isEmpty:
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(&out, indent + 1)
                pretty(item, into: &out, indent: indent + 1)
            }
            newline(&out, indent)
            out.append(UInt8(ascii: "]"))
        case .object(let o) where !o.isEmpty:
            out.append(UInt8(ascii: "{"))
            for (i, m) in o.members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(&out, indent + 1)
                writeString(m.key, into: &out)
                out.append(contentsOf: [UInt8(ascii: ":"), 0x20])
                pretty(m.value, into: &out, indent: indent + 1)
            }
            newline(&out, indent)
            out.append(UInt8(ascii: "}"))
        default:
            write(v, into: &out, canonical: false)
        }
    }
}
