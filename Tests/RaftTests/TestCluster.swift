// A small synchronous cluster harness for scenario tests: messages are delivered in rounds,
// each Ready is persisted to an in-memory disk before its messages go out.
import Raft
import XCTest

final class TestCluster {
    var nodes: [NodeID: RaftNode] = [:]
    var disks: [NodeID: RaftInitialState] = [:]
    var applied: [NodeID: [Entry]] = [:]
    var snapshotsInstalled: [NodeID: [Snapshot]] = [:]
    /// Snapshot bytes staged per node (`stageIncomingSnapshots`), as a host would keep them.
    var staging: [NodeID: [UInt8]] = [:]
    /// Chunks handed out in Readys per node, for assertions.
    var stagedChunkCount: [NodeID: Int] = [:]
    var readStates: [NodeID: [ReadState]] = [:]
    /// Links that drop messages (from, to).
    var cut: Set<[NodeID]> = []
    /// Messages matching this are dropped.
    var dropIf: ((RaftMessage) -> Bool)?
    /// Every message delivered, for assertions.
    var deliveredLog: [RaftMessage] = []
    var ids: [NodeID]
    var tweak: (inout RaftConfig) -> Void

    init(voters: [NodeID], joiners: [NodeID] = [], tweak: @escaping (inout RaftConfig) -> Void = { _ in }) {
        ids = voters + joiners
        self.tweak = tweak
        for (k, id) in ids.enumerated() {
            var c = RaftConfig(id: id, randomSeed: UInt64(k + 1))
            tweak(&c)
            nodes[id] = try! RaftNode(config: c, bootstrapVoters: voters.contains(id) ? voters : [])
            disks[id] = RaftInitialState()
            applied[id] = []
        }
    }

    /// Starts a node from custom persisted state.
    func load(_ id: NodeID, _ state: RaftInitialState) {
        var c = RaftConfig(id: id, randomSeed: 99)
        tweak(&c)
        nodes[id] = try! RaftNode(config: c, state: state)
        disks[id] = state
        applied[id] = []
    }

    func isolate(_ id: NodeID) {
        for o in ids where o != id {
            cut.insert([id, o])
            cut.insert([o, id])
        }
    }

    func partition(_ a: [NodeID], _ b: [NodeID]) {
        for x in a {
            for y in b {
                cut.insert([x, y])
                cut.insert([y, x])
            }
        }
    }

    func heal() { cut = [] }

    /// Persist, collect messages, apply, advance — for one node.
    func drain(_ id: NodeID) -> [RaftMessage] {
        guard var n = nodes[id], n.hasReady else { return [] }
        let rd = n.ready()
        var d = disks[id]!
        for c in rd.snapshotChunks {
            if c.offset == 0 { staging[id] = [] }
            XCTAssertEqual(UInt64(staging[id]?.count ?? -1), c.offset, "chunks arrive in order")
            staging[id, default: []].append(contentsOf: c.data)
            stagedChunkCount[id, default: 0] += 1
        }
        if var s = rd.snapshot {
            if n.config.stageIncomingSnapshots {
                XCTAssertTrue(s.data.isEmpty && n.snapshotDataPending)
                s.data = SnapshotData(staging[id] ?? [])
                XCTAssertTrue(n.replaceSnapshotData(index: s.metadata.index, with: s.data))
                XCTAssertFalse(n.snapshotDataPending)
                staging[id] = nil
            }
            d.snapshot = s
            d.entries = []
            snapshotsInstalled[id, default: []].append(s)
        }
        if let first = rd.entries.first {
            let base = d.snapshot?.metadata.index ?? 0
            d.entries.removeSubrange(Int(first.index - base - 1)...)
            d.entries.append(contentsOf: rd.entries)
        }
        if let hs = rd.hardState { d.hardState = hs }
        disks[id] = d
        applied[id]!.append(contentsOf: rd.committedEntries)
        readStates[id, default: []].append(contentsOf: rd.readStates)
        n.advance(rd)
        nodes[id] = n
        return rd.messages
    }

    /// Whether `stabilize` plays the host's part of calling `flushCommit()` on a leader once
    /// nothing else is left to do (the daemon does it a few milliseconds after a commit).
    var hostFlushesCommits = true

    /// Delivers messages until nothing is left to do (bounded).
    func stabilize(maxRounds: Int = 200) {
        for _ in 0..<maxRounds {
            var msgs: [RaftMessage] = []
            for id in ids { msgs += drain(id) }
            if msgs.isEmpty && !ids.contains(where: { nodes[$0]!.hasReady }) {
                guard hostFlushesCommits, let l = ids.first(where: { nodes[$0]!.commitFlushDue }) else { return }
                nodes[l]!.flushCommit()
                continue
            }
            for m in msgs where !cut.contains([m.from, m.to]) && dropIf?(m) != true {
                deliveredLog.append(m)
                nodes[m.to]?.step(m)
            }
        }
    }

    func tick(_ id: NodeID, _ n: Int = 1) {
        for _ in 0..<n {
            nodes[id]!.tick()
            stabilize()
        }
    }

    func tickAll(_ n: Int = 1) {
        for _ in 0..<n {
            for id in ids { nodes[id]!.tick() }
            stabilize()
        }
    }

    /// Makes `id` campaign by ticking only it past any election timeout.
    func elect(_ id: NodeID) {
        let limit = 2 * (nodes[id]!.config.electionTick) + 1
        for _ in 0..<limit where nodes[id]!.role != .leader {
            nodes[id]!.tick()
            stabilize()
        }
    }

    func leader() -> NodeID? { ids.first { nodes[$0]!.role == .leader } }

    func appliedData(_ id: NodeID) -> [[UInt8]] {
        applied[id]!.filter { $0.kind == .normal }.map(\.data)
    }

    @discardableResult
    func propose(_ id: NodeID, _ s: String) throws -> UInt64 {
        let r = try nodes[id]!.propose(data: Array(s.utf8))
        stabilize()
        return r.index
    }
}
