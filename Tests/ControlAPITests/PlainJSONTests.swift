import XCTest
import Foundation
@testable import ControlAPI

/// The fast response writer must produce exactly what JSONSerialization writes.
final class PlainJSONTests: XCTestCase {
    func reference(_ v: Any) -> [UInt8] {
        Array(try! JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]))
    }

    func testSameTextAsJSONSerialization() throws {
        var strings = ["", "plain", "a/b", "quote\"back\\slash", "tab\tnl\ncr\r", "\u{08}\u{0c}", "\u{01}\u{1f}\u{7f}", "é日本🙂", "\u{2028}\u{2029}"]
        for b: UInt8 in 0..<0x20 { strings.append(String(UnicodeScalar(b))) }
        let values: [Any] = [
            ["status": "applied", "raft_index": UInt64(42), "tx_id": "ab", "event_seq": Int64(7), "duplicate": true] as [String: Any],
            ["results": [["a": 1, "b": NSNull()] as [String: Any], ["z": false] as [String: Any]]] as [String: Any],
            ["nested": ["k": ["x", "y"]] as [String: Any], "empty": [String: Any](), "list": [Any]()] as [String: Any],
            ["n": Int.min, "m": Int.max, "u": UInt64.max, "i32": Int32(-5), "u32": UInt32(9)] as [String: Any],
            ["b": "second", "a": "first", "B": "upper", "_": "under", "a1": 1, "a10": 2, "a9": 3, "é": 4] as [String: Any],
            ["a_b": 1, "ab": 2, "a": 3, "_x": 4, "peer_id": 5, "peers": 6, "peer": 7, "x_": 8, "__": 9, "z": 10] as [String: Any],
            strings.map { $0 as Any },
            ["strings": strings] as [String: Any],
        ]
        for v in values {
            let fast = try XCTUnwrap(PlainJSON.encode(v), "\(v)")
            XCTAssertEqual(String(decoding: fast, as: UTF8.self), String(decoding: reference(v), as: UTF8.self))
        }
        for s in strings {
            XCTAssertEqual(PlainJSON.encode(s), reference(s), "string \(s.unicodeScalars.map { $0.value })")
        }
    }

    func testUnsupportedValuesFallBack() {
        XCTAssertNil(PlainJSON.encode(["x": 1.5] as [String: Any]))
        XCTAssertNil(PlainJSON.encode(["x": NSNumber(value: 3)] as [String: Any]))
        XCTAssertNil(PlainJSON.encode(["x": Data()] as [String: Any]))
        // Through the response builder the fallback still gives valid JSON.
        let r = HTTPResponse.jsonObject(["x": 1.5] as [String: Any])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "{\"x\":1.5}\n")
    }
}
