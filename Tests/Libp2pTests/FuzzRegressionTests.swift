import XCTest
import Libp2p
import Wire

/// Inputs that libFuzzer found (scripts/fuzz); each once crashed a decoder with an integer trap.
final class FuzzRegressionTests: XCTestCase {
    func testIdentifyStreamBodyWithHugeLengthPrefix() {
        // A 10-byte varint near 2^64 as the length prefix: Int(len) used to trap.
        let crash: [UInt8] = [0x89, 0x89, 0x89, 0x89, 0x89, 0x89, 0x89, 0x89, 0x89, 0x01, 0x00, 0x00]
        XCTAssertThrowsError(try IdentifyInfo.decodeStreamBody(crash))
    }

    func testMultiaddrP2PWithHugeMultihashLength() {
        // /p2p/ component whose multihash claims a length near 2^64.
        var b: [UInt8] = [0xa5, 0x03]            // p2p (421)
        let mh: [UInt8] = [0x00] + [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        b.append(UInt8(mh.count))
        b += mh
        XCTAssertThrowsError(try Multiaddr(bytes: b))
    }
}
