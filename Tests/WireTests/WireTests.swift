import XCTest
@testable import Wire
import Support


final class VarintTests: XCTestCase {
    func testKnownAnswers() throws {
        XCTAssertEqual(Varint.encode(0), [0])
        XCTAssertEqual(Varint.encode(1), [1])
        XCTAssertEqual(Varint.encode(127), [0x7f])
        XCTAssertEqual(Varint.encode(128), [0x80, 0x01])
        XCTAssertEqual(Varint.encode(300), [0xac, 0x02])
        XCTAssertEqual(Varint.encode(UInt64.max), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        XCTAssertEqual(try Varint.decode([0xac, 0x02], at: 0).value, 300)
    }

    func testRoundTrip() throws {
        var rng = SplitMix64(seed: 1)
        for _ in 0..<10_000 {
            let v = UInt64.random(in: 0...UInt64.max, using: &rng) >> UInt64.random(in: 0...63, using: &rng)
            let e = Varint.encode(v)
            let (d, n) = try Varint.decode(e, at: 0)
            XCTAssertEqual(d, v)
            XCTAssertEqual(n, e.count)
        }
    }

    func testRejectsMalformed() {
        XCTAssertThrowsError(try Varint.decode([], at: 0))
        XCTAssertThrowsError(try Varint.decode([0x80], at: 0))
        XCTAssertThrowsError(try Varint.decode([0x80, 0x00], at: 0))  // not minimal
        XCTAssertThrowsError(try Varint.decode([UInt8](repeating: 0xff, count: 11), at: 0))
        XCTAssertThrowsError(try Varint.decode([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], at: 0))
    }
}

final class ProtobufTests: XCTestCase {
    func testRoundTrip() throws {
        var w = ProtobufWriter()
        w.varint(field: 1, 1)
        w.bytes(field: 2, [1, 2, 3])
        w.string(field: 7, "hi")
        var r = try ProtobufReader(w.bytes)
        var got: [(Int, ProtobufValue)] = []
        while let f = try r.next() { got.append(f) }
        XCTAssertEqual(got.count, 3)
        XCTAssertEqual(got[0].1, .varint(1))
        XCTAssertEqual(got[1].1, .bytes([1, 2, 3]))
        XCTAssertEqual(got[2].0, 7)
    }

    func testRejectsTruncatedAndOversized() {
        XCTAssertThrowsError(try { var r = try ProtobufReader([0x12, 0x05, 0x01]); _ = try r.next() }())
        XCTAssertThrowsError(try ProtobufReader([UInt8](repeating: 0, count: 100), maxSize: 10))
        XCTAssertThrowsError(try { var r = try ProtobufReader([0x0b]); _ = try r.next() }())  // wire type 3
    }

    func testFuzzNeverCrashes() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<20_000 {
            let n = Int.random(in: 0..<40, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if var r = try? ProtobufReader(bytes) {
                var count = 0
                while let _ = try? r.next(), count < 100 { count += 1 }
            }
        }
    }
}

final class MultibaseTests: XCTestCase {
    func testBase58KnownAnswers() {
        XCTAssertEqual(Base58.encode(Array("Hello World!".utf8)), "2NEpo7TZRRrLZSi2U")
        XCTAssertEqual(Base58.encode([0, 0, 1]), "112")
        XCTAssertEqual(Base58.decode("2NEpo7TZRRrLZSi2U"), Array("Hello World!".utf8))
        XCTAssertNil(Base58.decode("0OIl"))
    }

    func testBaseNRoundTrip() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let n = Int.random(in: 0..<50, using: &rng)
            var b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 3 && Bool.random(using: &rng) { b[0] = 0; b[1] = 0 }
            XCTAssertEqual(Base58.decode(Base58.encode(b)), b)
            XCTAssertEqual(Base36.decode(Base36.encode(b)), b)
            XCTAssertEqual(Base64.decode(Base64.encode(b)), b)
            XCTAssertEqual(Hex.decode(Hex.encode(b)), b)
        }
    }

    func testBase64Strict() {
        XCTAssertNil(Base64.decode("abc"))          // not padded
        XCTAssertNil(Base64.decode("ab$d"))
        XCTAssertNil(Base64.decode("QR=="))         // non-zero padding bits
        XCTAssertEqual(Base64.decode("QQ=="), [0x41])
        XCTAssertEqual(Base64.decode(" QQ==\n"), [0x41])
    }
}

/// The hand-written base64 codec gives exactly the old Foundation-based answers.
final class Base64EquivalenceTests: XCTestCase {
    static func referenceDecode(_ text: String) -> [UInt8]? {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.isEmpty, t.utf8.count % 4 == 0 else { return t.isEmpty ? [] : nil }
        guard let d = Data(base64Encoded: t) else { return nil }
        let bytes = [UInt8](d)
        guard Data(bytes).base64EncodedString() == t else { return nil }
        return bytes
    }

    func testMatchesFoundation() {
        var g = SystemRandomNumberGenerator()
        let chars = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\t.".utf8)
        for n in 0..<300 {
            let bytes = (0..<(n % 70)).map { _ in UInt8.random(in: 0...255, using: &g) }
            let enc = Base64.encode(bytes)
            XCTAssertEqual(enc, Data(bytes).base64EncodedString())
            XCTAssertEqual(Base64.decode(enc), bytes)
            XCTAssertEqual(Base64.decode(" \n" + enc + "\t "), bytes)
        }
        var cases = ["", " ", "=", "==", "A===", "AA==", "AB==", "AAA=", "AAB=", "AAAA", "A=AA", "AA=A", "QQ", "QQ=", "QQ==\n",
                     "Zm9v", "Zm9vYg==", "Zm9vYh==", "Zm9vYmE=", "Zm9vYmF=", "Zm9v YmFy", "Zm9v-_==", "\u{00a0}Zm9v\u{00a0}", "Zm9vé==="]
        for _ in 0..<20000 {
            cases.append(String(decoding: (0..<Int.random(in: 0...12, using: &g)).map { _ in chars.randomElement(using: &g)! }, as: UTF8.self))
        }
        for c in cases {
            XCTAssertEqual(Base64.decode(c), Base64EquivalenceTests.referenceDecode(c), "input \(Array(c.utf8))")
        }
    }
}
