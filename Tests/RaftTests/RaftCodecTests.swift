import Raft
import XCTest

/// Round trips, known bytes, and fuzzing of the Raft message codec.
final class RaftCodecTests: XCTestCase {
    static func samples() -> [RaftMessage] {
        let conf = ConfState(voters: ["12D3KooWA", "12D3KooWB", "12D3KooWC"], learners: ["12D3KooWL"])
        return [
            RaftMessage(type: .preVote, from: "a", to: "b", term: 5, logTerm: 4, index: 100),
            RaftMessage(type: .vote, from: "a", to: "b", term: 5, logTerm: 4, index: 100, context: 1),
            RaftMessage(type: .voteResponse, from: "b", to: "a", term: 5, reject: true),
            RaftMessage(type: .append, from: "a", to: "b", term: 7, logTerm: 6, index: 1 << 40, commit: 99,
                        entries: [Entry(term: 7, index: (1 << 40) + 1, kind: .normal, data: Array("hello".utf8)),
                                  Entry(term: 7, index: (1 << 40) + 2, kind: .config, data: conf.encode()),
                                  Entry(term: 7, index: (1 << 40) + 3, kind: .noop, data: [])]),
            RaftMessage(type: .appendResponse, from: "b", to: "a", term: 7, logTerm: 3, index: 55,
                        reject: true, rejectHint: 40),
            RaftMessage(type: .heartbeat, from: "a", to: "b", term: .max, commit: .max, context: 77),
            RaftMessage(type: .snapshot, from: "a", to: "b", term: 9,
                        snapshot: SnapshotChunk(metadata: SnapshotMetadata(index: 500, term: 8, conf: conf),
                                                offset: 10, totalSize: 30, data: Array(repeating: 0xAB, count: 20))),
            RaftMessage(type: .snapshotResponse, from: "b", to: "a", term: 9, index: 500, context: 30),
            RaftMessage(type: .timeoutNow, from: "a", to: "b", term: 9),
            RaftMessage(type: .readIndex, from: "b", to: "a", term: 9, context: 12345),
            RaftMessage(type: .readIndexResponse, from: "a", to: "b", term: 9, index: 600, context: 12345),
        ]
    }

    func testRoundTrip() throws {
        for m in Self.samples() {
            XCTAssertEqual(try RaftMessage.decode(m.encode()), m)
        }
    }

    func testKnownEncoding() {
        let m = RaftMessage(type: .vote, from: "a", to: "b", term: 300, logTerm: 2, index: 1, context: 1)
        // version, type, "a", "b", term 300 (varint ac 02), logTerm, index, commit, hint, context, flags, count
        XCTAssertEqual(m.encode(), [1, 3, 1, 0x61, 1, 0x62, 0xAC, 0x02, 2, 1, 0, 0, 1, 0, 0])
    }

    func testConfStateRoundTripAndRejects() throws {
        let c = ConfState(voters: ["x", "y"], learners: ["z"])
        XCTAssertEqual(try ConfState.decode(c.encode()), c)
        XCTAssertThrowsError(try ConfState.decode(c.encode() + [0]))
        // Duplicate voter.
        XCTAssertThrowsError(try ConfState.decode([2, 1, 0x78, 1, 0x78, 0]))
        XCTAssertThrowsError(try ConfState.decode([]))
    }

    func testRejectsMalformed() {
        let good = Self.samples()[3].encode()
        XCTAssertThrowsError(try RaftMessage.decode([]))
        XCTAssertThrowsError(try RaftMessage.decode([2] + good.dropFirst())) // version
        XCTAssertThrowsError(try RaftMessage.decode([1, 99] + good.dropFirst(2))) // type
        XCTAssertThrowsError(try RaftMessage.decode(good + [0])) // trailing
        XCTAssertThrowsError(try RaftMessage.decode(Array(good.dropLast()))) // truncated
        XCTAssertThrowsError(try RaftMessage.decode(good, maxSize: good.count - 1)) { e in
            XCTAssertEqual(e as? RaftCodecError, .tooLarge(good.count))
        }
        // Non-minimal varint for the term (0x80 0x00).
        XCTAssertThrowsError(try RaftMessage.decode([1, 7, 1, 0x61, 1, 0x62, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0]))
        // Overlong varint.
        XCTAssertThrowsError(try RaftMessage.decode([1, 7, 1, 0x61, 1, 0x62] + Array(repeating: 0xFF, count: 11) + [1]))
        // Invalid UTF-8 in a node ID.
        XCTAssertThrowsError(try RaftMessage.decode([1, 7, 1, 0xFF, 1, 0x62, 1, 0, 0, 0, 0, 0, 0, 0]))
        // Huge entry count with no bytes behind it.
        XCTAssertThrowsError(try RaftMessage.decode([1, 5, 1, 0x61, 1, 0x62, 1, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F]))
        // Unknown flag bits.
        XCTAssertThrowsError(try RaftMessage.decode([1, 7, 1, 0x61, 1, 0x62, 1, 0, 0, 0, 0, 0, 4, 0]))
    }

    /// Random bytes and mutations of valid encodings must never crash the decoder, and whatever
    /// decodes must re-encode to the same bytes (one encoding per value).
    func testFuzzDecoder() {
        var rng = SimRNG(seed: 0xF00D)
        let seeds = Self.samples().map { $0.encode() }
        var decoded = 0
        for round in 0..<20_000 {
            var b: [UInt8]
            if round % 4 == 0 {
                b = (0..<rng.below(64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if !b.isEmpty && rng.chance(0.5) { b[0] = 1 }
            } else {
                b = seeds[rng.below(seeds.count)]
                for _ in 0..<(1 + rng.below(4)) {
                    guard !b.isEmpty else { break }
                    switch rng.below(5) {
                    case 0: b[rng.below(b.count)] ^= UInt8(1 << rng.below(8))
                    case 1: b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next())
                    case 2: b.removeSubrange(rng.below(b.count)...)
                    case 3: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(b.count))
                    default: b.remove(at: rng.below(b.count))
                    }
                }
            }
            if let m = try? RaftMessage.decode(b) {
                decoded += 1
                XCTAssertEqual(m.encode(), b, "non-canonical encoding accepted")
            }
        }
        XCTAssertGreaterThan(decoded, 0)
    }
}
