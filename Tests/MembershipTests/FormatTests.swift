import XCTest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Identity
import Support
@testable import Membership

/// The hand-written formatters and decoders on the heartbeat path agree with the general ones.
final class FormatTests: XCTestCase {
    /// What `rfc3339Nano` wrote with String(format:) before it was written by hand.
    func reference(_ t: Timestamp) -> String {
        var tt = time_t(t.seconds)
        var tmv = tm()
        gmtime_r(&tt, &tmv)
        var out = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
                         Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
        if t.nanos != 0 {
            var frac = String(format: "%09d", t.nanos)
            while frac.hasSuffix("0") { frac.removeLast() }
            out += "." + frac
        }
        return out + "Z"
    }

    func testRFC3339NanoMatchesPrintfFormatting() {
        var cases: [Timestamp] = [Timestamp(seconds: 0), Timestamp(seconds: 1_780_000_000, nanos: 123_000_000),
                                  Timestamp(seconds: 1_780_000_000, nanos: 1), Timestamp(seconds: 1_780_000_000, nanos: 999_999_999),
                                  Timestamp(seconds: 253_402_300_799, nanos: 100), Timestamp(seconds: -62_135_596_800)]
        var g = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            cases.append(Timestamp(seconds: Int64.random(in: -62_135_596_800...253_402_300_799, using: &g),
                                   nanos: Bool.random() ? 0 : Int32.random(in: 0..<1_000_000_000, using: &g)))
        }
        for t in cases {
            XCTAssertEqual(t.rfc3339Nano, reference(t))
            XCTAssertEqual(Timestamp(rfc3339: t.rfc3339Nano), t)
        }
    }

    func testHeartbeatDecodeMatchesCodable() throws {
        let key = PrivateKey.generate()
        let hb = Heartbeat.make(key: key, clusterID: "c1", at: Timestamp.now())
        let json = try JSONEncoder().encode(hb)
        XCTAssertEqual(try Heartbeat.decode(Array(json)), hb)
        XCTAssertEqual(try Heartbeat.decode(Array(#"{"x":1,"cluster_id":"c","peer_id":"p","ts":"t","sig":"s"}"#.utf8)),
                       Heartbeat(clusterID: "c", peerID: "p", ts: "t", sig: "s"))
        for bad in ["", "[]", "{", #"{"cluster_id":"c","peer_id":"p","ts":"t"}"#, #"{"cluster_id":1,"peer_id":"p","ts":"t","sig":"s"}"#,
                    #"{"cluster_id":"c","cluster_id":"d","peer_id":"p","ts":"t","sig":"s"}"#] {
            XCTAssertThrowsError(try Heartbeat.decode(Array(bad.utf8)), bad)
        }
        // Verification with the authenticated key gives the same answer as decoding it from peer_id.
        let t = try hb.verify(clusterID: "c1", expectedPeer: key.peerID.base58, isMember: true, now: Timestamp.now(), window: 30)
        XCTAssertEqual(try hb.verify(clusterID: "c1", expectedPeer: key.peerID.base58, isMember: true, now: Timestamp.now(), window: 30,
                                     senderKey: key.peerID.publicKey), t)
        var forged = hb
        forged.ts = Timestamp.now().adding(seconds: 1).rfc3339Nano
        XCTAssertThrowsError(try forged.verify(clusterID: "c1", expectedPeer: key.peerID.base58, isMember: true, now: Timestamp.now(), window: 30,
                                               senderKey: key.peerID.publicKey))
    }
}
