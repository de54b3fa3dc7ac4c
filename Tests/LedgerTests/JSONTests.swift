import XCTest
@testable import Wire
import Support

final class JSONTests: XCTestCase {
    func parse(_ s: String) throws -> JSONValue { try JSONValue.parse(s) }

    func kind(_ s: String, limits: JSONLimits = JSONLimits()) -> JSONError.Kind? {
        kind(Array(s.utf8), limits: limits)
    }

    func kind(_ b: [UInt8], limits: JSONLimits = JSONLimits()) -> JSONError.Kind? {
        do { _ = try JSONValue.parse(b, limits: limits); return nil } catch { return error.kind }
    }

    func testParsesValues() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse(" true "), .bool(true))
        XCTAssertEqual(try parse("false"), .bool(false))
        XCTAssertEqual(try parse("0"), .int(0))
        XCTAssertEqual(try parse("-0"), .int(0))
        XCTAssertEqual(try parse("-42"), .int(-42))
        XCTAssertEqual(try parse("9007199254740992"), .int(9007199254740992))
        XCTAssertEqual(try parse("-9007199254740992"), .int(-9007199254740992))
        XCTAssertEqual(try parse("\"a\\u00e9\\ud83d\\ude00\\n\\/\""), .string("aé😀\n/"))
        XCTAssertEqual(try parse("[1, [2], {}]"), .array([.int(1), .array([.int(2)]), .object(JSONObject())]))
        let o = try parse("{\"b\":1,\"a\":{\"c\":[]}}")
        XCTAssertEqual(o.objectValue?.keys, ["b", "a"], "key order kept")
        XCTAssertEqual(o["a"]?["c"], .array([]))
    }

    func testRejections() {
        XCTAssertEqual(kind("1.5"), .floatNotAllowed)
        XCTAssertEqual(kind("1e3"), .floatNotAllowed)
        XCTAssertEqual(kind("{\"a\":1E3}"), .floatNotAllowed)
        XCTAssertEqual(kind("9007199254740993"), .integerOutOfRange)
        XCTAssertEqual(kind("-99999999999999999999999"), .integerOutOfRange)
        XCTAssertEqual(kind("01"), .invalidNumber)
        XCTAssertEqual(kind("-"), .unexpectedEnd)
        XCTAssertEqual(kind("-a"), .invalidNumber)
        XCTAssertEqual(kind("+1"), .unexpectedCharacter)
        XCTAssertEqual(kind("{\"a\":1,\"a\":2}"), .duplicateKey)
        XCTAssertEqual(kind("{\"a\":1} x"), .trailingData)
        XCTAssertEqual(kind("1 2"), .trailingData)
        XCTAssertEqual(kind(""), .unexpectedEnd)
        XCTAssertEqual(kind("[1,"), .unexpectedEnd)
        XCTAssertEqual(kind("[1,]"), .unexpectedCharacter)
        XCTAssertEqual(kind("{\"a\" 1}"), .unexpectedCharacter)
        XCTAssertEqual(kind("{a:1}"), .unexpectedCharacter)
        XCTAssertEqual(kind("tru"), .unexpectedEnd)
        XCTAssertEqual(kind("nul1"), .unexpectedCharacter)
        XCTAssertEqual(kind("\"\\ud800\""), .loneSurrogate)
        XCTAssertEqual(kind("\"\\ud800\\u0041\""), .loneSurrogate)
        XCTAssertEqual(kind("\"\\udc00\""), .loneSurrogate)
        XCTAssertEqual(kind("\"\\x\""), .invalidEscape)
        XCTAssertEqual(kind("\"\\u12G4\""), .invalidEscape)
        XCTAssertEqual(kind("\"a\nb\""), .controlCharacter)
        XCTAssertEqual(kind([0x22, 0xC0, 0xAF, 0x22]), .invalidUTF8, "overlong")
        XCTAssertEqual(kind([0x22, 0xED, 0xA0, 0x80, 0x22]), .invalidUTF8, "UTF-8 encoded surrogate")
        XCTAssertEqual(kind([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22]), .invalidUTF8, "beyond U+10FFFF")
        XCTAssertEqual(kind([0x22, 0xE2, 0x82, 0x22]), .invalidUTF8, "truncated")
        XCTAssertEqual(kind([0x22, 0xFF, 0x22]), .invalidUTF8)
        XCTAssertEqual(kind([0xEF, 0xBB, 0xBF, 0x31]), .unexpectedCharacter, "BOM")
        XCTAssertEqual(kind("[[[1]]]", limits: JSONLimits(maxDepth: 2)), .tooDeep)
        XCTAssertNil(kind("[[1]]", limits: JSONLimits(maxDepth: 2)))
        XCTAssertEqual(kind("[1,2,3]", limits: JSONLimits(maxBytes: 6)), .tooLarge)
        XCTAssertEqual(kind(String(repeating: "[", count: 100_000)), .tooDeep, "deep input fails without stack overflow")
    }

    func testKeysAreComparedByteForByte() throws {
        // U+00E9 and U+0065 U+0301 are canonically equivalent but different JSON keys.
        let v = try parse("{\"\\u00e9\":1,\"e\\u0301\":2}")
        XCTAssertEqual(v.objectValue?.count, 2)
        XCTAssertEqual(v["\u{e9}"], .int(1))
        XCTAssertEqual(v["e\u{301}"], .int(2))
        XCTAssertEqual(try parse(v.canonicalString).canonicalString, v.canonicalString)
        XCTAssertEqual(v.canonicalString, "{\"e\u{301}\":2,\"\u{e9}\":1}")
    }

    /// Duplicate keys are found byte for byte in small objects (a scan) and in large ones (a set).
    func testDuplicateKeysInSmallAndLargeObjects() throws {
        for size in [2, 15, 16, 17, 40] {
            var members = (0..<size).map { "\"k\($0)\":\($0)" }
            XCTAssertEqual(try parse("{" + members.joined(separator: ",") + "}").objectValue?.count, size)
            members.append("\"k\(size - 1)\":0")
            let text = "{" + members.joined(separator: ",") + "}"
            do { _ = try JSONValue.parse(text); XCTFail("duplicate in \(size) keys not found") } catch {
                XCTAssertEqual(error.kind, .duplicateKey)
                XCTAssertEqual(error.offset, text.utf8.count - "\"k\(size - 1)\":0}".utf8.count, "offset of the repeated key")
            }
            // Canonically equivalent but different bytes: not duplicates, at any size.
            let equivalent = (0..<size).map { "\"k\($0)\":\($0)" } + ["\"\\u212a\":1", "\"K\":2"]
            let v = try parse("{" + equivalent.joined(separator: ",") + "}")
            XCTAssertEqual(v.objectValue?.count, size + 2)
            XCTAssertEqual(v["\u{212A}"], .int(1))
            XCTAssertEqual(v["K"], .int(2))
        }
        XCTAssertFalse(utf8Equal("\u{212A}", "K"))
        XCTAssertTrue("\u{212A}" == "K", "Swift's own == merges them, which is why keys do not use it")
        XCTAssertTrue(utf8Equal("", ""))
        XCTAssertTrue(utf8Equal(String(repeating: "ab", count: 100), String(repeating: "ab", count: 100)))
        XCTAssertFalse(utf8Equal(String(repeating: "ab", count: 100), String(repeating: "ab", count: 99) + "ac"))
    }

    /// Strings switch from the plain-ASCII fast path to the full decoder at any point.
    func testStringsAcrossTheFastPath() throws {
        XCTAssertEqual(try parse("\"plain ascii\""), .string("plain ascii"))
        XCTAssertEqual(try parse("\"abc\\ndef\""), .string("abc\ndef"))
        XCTAssertEqual(try parse("\"abc\\u00e9\\\"x\""), .string("abcé\"x"))
        XCTAssertEqual(try parse("\"abcé€😀z\""), .string("abcé€😀z"))
        XCTAssertEqual(try parse("\"\""), .string(""))
        XCTAssertEqual(kind([0x22, 0x61, 0x62, 0x01, 0x22]), .controlCharacter)
        XCTAssertEqual(kind([0x22, 0x61, 0x62, 0xC0, 0xAF, 0x22]), .invalidUTF8, "overlong after an ASCII prefix")
        XCTAssertEqual(kind([0x22, 0x61, 0x62]), .unexpectedEnd)
        do { _ = try JSONValue.parse([0x22, 0x61, 0x62, 0x63, 0x01, 0x22]); XCTFail() } catch {
            XCTAssertEqual(error.offset, 4, "the control character's own offset")
        }
        // Escapes at the start, middle and end of what the writer copies in runs.
        for s in ["\"", "a\"", "\"a", "a\\b", "ab\ncd\u{1}", "\u{1f}", "long " + String(repeating: "x", count: 300) + "\t"] {
            XCTAssertEqual(try JSONValue.parse(JSONValue.string(s).canonicalBytes), .string(s), s)
        }
        for n: Int64 in [0, 7, -7, 10, -10, 9_007_199_254_740_992, -9_007_199_254_740_992, .max, .min] {
            XCTAssertEqual(JSONValue.int(n).canonicalString, String(n))
        }
    }

    func testErrorsAreDescriptive() {
        do { _ = try JSONValue.parse("{\"a\":1,\"a\":2}"); XCTFail() } catch {
            XCTAssertEqual(error.offset, 7)
            XCTAssertTrue(error.description.contains("duplicate object key \"a\""), error.description)
        }
    }

    /// `canonicalBytes(prefix:omitting:)` is the prefix and the canonical bytes of the value
    /// without that top-level member — present, absent, or on a non-object.
    func testCanonicalBytesOmittingAMember() throws {
        let inputs = ["{\"z\":1,\"signature\":\"x\",\"a\":{\"signature\":2,\"b\":[1]}}", "{\"a\":1}", "{\"signature\":1}", "{}", "[1,{\"signature\":1}]", "\"s\""]
        for text in inputs {
            let v = try parse(text)
            var without = v
            if case .object(var o) = v {
                o["signature"] = nil
                without = .object(o)
            }
            XCTAssertEqual(v.canonicalBytes(prefix: "pre\n", omitting: "signature"), Array("pre\n".utf8) + without.canonicalBytes, text)
        }
    }

    /// Known answers from RFC 8785 and its reference test data (integers only).
    func testCanonicalKnownAnswers() throws {
        XCTAssertEqual(try parse("{ \"b\" : [ 1 , true , null ] , \"a\" : \"x\" }").canonicalString, "{\"a\":\"x\",\"b\":[1,true,null]}")
        // A key that is a prefix of another sorts first; input already in order stays in order,
        // input out of order only at its end is still sorted.
        XCTAssertEqual(try parse("{\"ab\":1,\"a\":2,\"\":3}").canonicalString, "{\"\":3,\"a\":2,\"ab\":1}")
        XCTAssertEqual(try parse("{\"a\":1,\"ab\":2,\"b\":3}").canonicalString, "{\"a\":1,\"ab\":2,\"b\":3}")
        XCTAssertEqual(try parse("{\"a\":1,\"b\":2,\"c\":3,\"ba\":4}").canonicalString, "{\"a\":1,\"b\":2,\"ba\":4,\"c\":3}")
        // RFC 8785 §3.2.3 sorting example: keys sorted by UTF-16 code units.
        let sorting = "{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Hebrew Letter Dalet With Dagesh\",\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji: Grinning Face\",\"\\u0080\":\"Control\",\"\\u00f6\":\"Latin Small Letter O With Diaeresis\"}"
        XCTAssertEqual(try parse(sorting).canonicalString,
                       "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"דּ\":\"Hebrew Letter Dalet With Dagesh\"}")
        // Escaping: only " \ and control characters; \u00xx lowercase; / and non-ASCII literal.
        XCTAssertEqual(JSONValue.string("\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\"\\/\u{7f}\u{2028}é").canonicalString,
                       "\"\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\\\"\\\\/\u{7f}\u{2028}é\"")
        XCTAssertEqual(JSONValue.int(-9007199254740992).canonicalString, "-9007199254740992")
        XCTAssertEqual(JSONValue.obj([]).canonicalString, "{}")
        XCTAssertEqual(JSONValue.array([]).canonicalString, "[]")
        // Nested objects sorted at every level; arrays keep order.
        XCTAssertEqual(try parse("{\"z\":{\"y\":1,\"x\":2},\"a\":[{\"d\":1,\"c\":2}]}").canonicalString,
                       "{\"a\":[{\"c\":2,\"d\":1}],\"z\":{\"x\":2,\"y\":1}}")
    }

    /// `JSONDocument.isCanonical` is true only for the exact canonical bytes; canonical input whose
    /// keys hold no byte from 0xEE up is recognised.
    func testDocumentKnowsCanonicalInput() throws {
        func canonical(_ s: String) throws -> Bool { try JSONDocument(Array(s.utf8)).isCanonical }
        for s in ["{\"a\":1,\"b\":[true,false,null,\"x\\n\\u001f\\\"\\\\\"]}", "-1", "0", "[]", "{}", "\"\\u0000\\b\\t\\f\\r\\u000b\u{7f}\"",
                  "{\"\":1,\"a\":{\"c\":2,\"d\":[{}]},\"ab\":\"é€😀/\u{7f}\"}", "{\"é\":1,\"€\":2}", "\"\u{7f}\""] {
            XCTAssertTrue(try canonical(s), s)
            XCTAssertEqual(try parse(s).canonicalBytes, Array(s.utf8), s)
        }
        for s in [" {}", "{} ", "{\"a\": 1}", "[1, 2]", "{\"b\":1,\"a\":2}", "{\"a\":{\"d\":1,\"c\":2}}", "{\"ab\":1,\"a\":2}",
                  "-0", "[1,-0]", "\"\\/\"", "\"\\u0041\"", "\"\\u001F\"", "\"\\u000a\"", "\"\\u0008\"", "\"\\u00e9\"", "\"\\u007f\"",
                  "\"\\ud83d\\ude00\"", "{\"\u{fb33}\":1}", "{\"😀\":1}", "\n1"] {
            XCTAssertFalse(try canonical(s), s)
        }
    }

    /// Property and mutation test of the canonical shortcut: whenever a document says its input is
    /// canonical, the input is byte for byte `canonicalBytes`, and cutting a top-level member out
    /// of it gives what `canonicalBytes(prefix:omitting:)` writes.
    func testCanonicalShortcutMatchesTheWriter() throws {
        var rng = SplitMix64(seed: 8785)
        func hasHighKey(_ v: JSONValue) -> Bool {
            switch v {
            case .array(let a): return a.contains(where: hasHighKey)
            case .object(let o): return o.members.contains { m in m.key.utf8.contains { $0 >= 0xEE } || hasHighKey(m.value) }
            default: return false
            }
        }
        func check(_ bytes: [UInt8]) -> Bool {
            guard let doc = try? JSONDocument(bytes) else { return false }
            guard doc.isCanonical else { return false }
            XCTAssertEqual(doc.value.canonicalBytes, bytes, String(decoding: bytes, as: UTF8.self))
            for key in (doc.value.objectValue?.keys ?? []) + ["absent"] {
                XCTAssertEqual(doc.canonicalBytes(prefix: "p\n", omitting: key),
                               doc.value.canonicalBytes(prefix: "p\n", omitting: key), key)
            }
            return true
        }
        var recognised = 0, mutantsCanonical = 0
        for i in 0..<4000 {
            var v = randomValue(&rng, depth: 0)
            if i % 2 == 0 {   // objects at the top, as txs are
                var o = JSONObject()
                for k in ["cluster_id", "nonce", "op", "payload", "signature", "ts", "v"] where rng.next() % 4 != 0 { o[k] = randomValue(&rng, depth: 1) }
                v = .object(o)
            }
            let canon = v.canonicalBytes
            let ok = check(canon)
            XCTAssertEqual(ok, !hasHighKey(v), String(decoding: canon, as: UTF8.self))
            if ok { recognised += 1 }
            // Other spellings of the same value: never taken for canonical unless identical.
            for other in [Array(v.compactString.utf8), Array(v.prettyString.utf8)] where other != canon {
                XCTAssertFalse(check(other), String(decoding: other, as: UTF8.self))
            }
            // Byte mutations of the canonical form.
            var b = canon
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let pos = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
                let byte = [UInt8(ascii: " "), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "-"), UInt8(ascii: "0"), UInt8(ascii: "u"),
                            UInt8(ascii: "a"), UInt8(ascii: "\""), UInt8(ascii: ","), 0xEF, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 11)]
                switch rng.next() % 3 {
                case 0: if !b.isEmpty { b[pos] = byte }
                case 1: b.insert(byte, at: pos)
                default: if !b.isEmpty { b.remove(at: pos) }
                }
            }
            if b != canon && check(b) { mutantsCanonical += 1 }
        }
        XCTAssertGreaterThan(recognised, 2000)
        XCTAssertGreaterThan(mutantsCanonical, 10)   // the mutation loop reaches the shortcut
    }

    func testPrettyAndCompact() throws {
        let v = try parse("{\"b\":[1,{}],\"a\":\"x\"}")
        XCTAssertEqual(v.compactString, "{\"b\":[1,{}],\"a\":\"x\"}")
        XCTAssertEqual(v.prettyString, "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": \"x\"\n}")
        XCTAssertEqual(try parse(v.prettyString), v)
    }

    func randomValue(_ rng: inout SplitMix64, depth: Int) -> JSONValue {
        switch rng.next() % (depth > 3 ? 4 : 6) {
        case 0: return .null
        case 1: return .bool(rng.next() % 2 == 0)
        case 2: return .int(Int64(rng.next() % (1 << 54)) - (1 << 53))
        case 3:
            let pool: [Character] = ["a", "Z", "\"", "\\", "\n", "\u{0}", "\u{1f}", "é", "€", "😀", "/", " ", "\u{7f}"]
            return .string(String((0..<Int(rng.next() % 8)).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }))
        case 4: return .array((0..<Int(rng.next() % 4)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            var o = JSONObject()
            for _ in 0..<Int(rng.next() % 4) {
                let k = ["a", "b", "é", "😀", "€", "A", "", "ab"][Int(rng.next() % 8)]
                o[k] = randomValue(&rng, depth: depth + 1)
            }
            return .object(o)
        }
    }

    func testRoundTripsRandomValues() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2000 {
            let v = randomValue(&rng, depth: 0)
            let canon = v.canonicalBytes
            let back = try JSONValue.parse(canon)
            XCTAssertEqual(back.canonicalBytes, canon, "canonical form is a fixed point")
            XCTAssertEqual(try JSONValue.parse(v.compactString), v)
            XCTAssertEqual(try JSONValue.parse(v.prettyString), v)
        }
    }

    /// Mutation fuzz: random bytes and mutated valid documents never crash the parser; whatever
    /// parses re-serializes to a canonical fixed point.
    func testFuzzNeverCrashes() {
        var rng = SplitMix64(seed: 7)
        let seeds = ["{\"a\":[1,2,{\"b\":\"\\u00e9\\ud83d\\ude00\"}],\"c\":null,\"d\":true}", "[-0,123,\"x\\n\"]", "\"é€😀\""].map { Array($0.utf8) }
        var parsed = 0
        for i in 0..<20000 {
            var b: [UInt8]
            if i % 4 == 0 {
                b = (0..<Int(rng.next() % 32)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                b = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let pos = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
                    switch rng.next() % 3 {
                    case 0: if !b.isEmpty { b[pos] = UInt8(truncatingIfNeeded: rng.next()) }
                    case 1: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: pos)
                    default: if !b.isEmpty { b.remove(at: pos) }
                    }
                }
            }
            if let v = try? JSONValue.parse(b, limits: JSONLimits(maxBytes: 1024, maxDepth: 8)) {
                parsed += 1
                let c = v.canonicalBytes
                XCTAssertEqual((try? JSONValue.parse(c))?.canonicalBytes, c)
            }
        }
        XCTAssertGreaterThan(parsed, 10)
    }
}

