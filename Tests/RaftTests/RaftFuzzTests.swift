import Raft
import XCTest

/// Hostile input to live nodes: random messages with extreme field values, and decoded
/// mutations of real traffic, must never crash a node (they may be ignored).
final class RaftFuzzTests: XCTestCase {
    func value(_ rng: inout SimRNG) -> UInt64 {
        switch rng.below(6) {
        case 0: return 0
        case 1: return UInt64.max
        case 2: return UInt64.max - UInt64(rng.below(3))
        case 3: return 1 << 62
        default: return UInt64(rng.below(40))
        }
    }

    func randomMessage(_ rng: inout SimRNG, ids: [NodeID]) -> RaftMessage {
        let type = MessageType.allCases[rng.below(MessageType.allCases.count)]
        var m = RaftMessage(type: type, from: ids[rng.below(ids.count)], to: ids[rng.below(ids.count)],
                            term: value(&rng), logTerm: value(&rng), index: value(&rng), commit: value(&rng),
                            reject: rng.chance(0.3), rejectHint: value(&rng), context: value(&rng))
        if rng.chance(0.4) {
            let start = value(&rng)
            for k in 0..<rng.below(5) {
                let kind = EntryKind(rawValue: UInt8(rng.below(3)))!
                let data: [UInt8] = kind == .config && rng.chance(0.5)
                    ? ConfState(voters: ["a", "b"]).encode() : [UInt8(k)]
                m.entries.append(Entry(term: value(&rng), index: start &+ UInt64(k), kind: kind, data: data))
            }
        }
        if rng.chance(0.2) {
            let total = value(&rng) % 64
            m.snapshot = SnapshotChunk(metadata: SnapshotMetadata(index: value(&rng), term: value(&rng),
                                                                  conf: ConfState(voters: ["a", "b", "c"])),
                                       offset: value(&rng), totalSize: total,
                                       data: Array(repeating: 1, count: rng.below(8)))
        }
        return m
    }

    func testRandomMessagesNeverCrashNodes() throws {
        var rng = SimRNG(seed: 77)
        for round in 0..<40 {
            let c = TestCluster(voters: ["a", "b", "c"]) { $0.snapshotChunkBytes = 4 }
            c.elect("a")
            for k in 0..<5 { _ = try? c.nodes["a"]!.propose(data: [UInt8(k)]) }
            c.stabilize()
            if round % 2 == 0 {
                let applied = c.nodes["a"]!.appliedIndex
                if applied > c.nodes["a"]!.snapshotIndex { _ = try? c.nodes["a"]!.compact(upTo: applied, snapshotData: [1, 2, 3]) }
            }
            for _ in 0..<300 {
                let m = randomMessage(&rng, ids: ["a", "b", "c", "x"])
                c.nodes[m.to]?.step(m)
                if rng.chance(0.3) { c.tickAll() } else { c.stabilize() }
            }
            // The cluster still works afterwards when it can (hostile terms may have moved it on).
            c.tickAll(60)
        }
    }

    func testMutatedTrafficNeverCrashesNodes() throws {
        var rng = SimRNG(seed: 99)
        let c = TestCluster(voters: ["a", "b", "c"])
        c.elect("a")
        for k in 0..<20 { try c.propose("a", "v\(k)") }
        let traffic = c.deliveredLog.map { $0.encode() }
        for _ in 0..<5000 {
            var b = traffic[rng.below(traffic.count)]
            for _ in 0..<(1 + rng.below(3)) where !b.isEmpty {
                b[rng.below(b.count)] ^= UInt8(1 << rng.below(8))
            }
            if let m = try? RaftMessage.decode(b) {
                c.nodes[m.to]?.step(m)
                c.stabilize()
            }
        }
    }
}
