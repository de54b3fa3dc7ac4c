@testable import Raft
import XCTest

/// Scenario tests of the core: each sets up a situation and checks the outcome.
final class RaftScenarioTests: XCTestCase {
    let three = ["a", "b", "c"]
    let five = ["a", "b", "c", "d", "e"]

    func testElectionAndReplication() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        XCTAssertEqual(c.leader(), "a")
        for id in ["b", "c"] {
            XCTAssertEqual(c.nodes[id]!.role, .follower)
            XCTAssertEqual(c.nodes[id]!.leader, "a")
            XCTAssertEqual(c.nodes[id]!.term, c.nodes["a"]!.term)
        }
        try c.propose("a", "x")
        try c.propose("a", "y")
        c.tickAll(2)
        for id in three { XCTAssertEqual(c.appliedData(id), [Array("x".utf8), Array("y".utf8)], id) }
        XCTAssertEqual(Set(three.map { c.nodes[$0]!.commitIndex }).count, 1)
        let st = c.nodes["a"]!.status
        XCTAssertEqual(st.peers.map(\.id), three)
        XCTAssertEqual(st.peers.map(\.match), Array(repeating: st.lastIndex, count: 3))
        XCTAssertEqual(st.peers[1].state, "replicate")
        XCTAssertTrue(c.nodes["b"]!.status.peers.isEmpty)
    }

    func testFollowerRefusesProposalWithLeaderHint() {
        let c = TestCluster(voters: three)
        c.elect("a")
        XCTAssertThrowsError(try c.nodes["b"]!.propose(data: [1])) { e in
            XCTAssertEqual(e as? RaftError, .notLeader(leaderHint: "a"))
        }
    }

    func testSingleNodeCommitsAfterPersist() throws {
        let c = TestCluster(voters: ["solo"])
        c.elect("solo")
        XCTAssertEqual(c.leader(), "solo")
        try c.propose("solo", "v")
        XCTAssertEqual(c.appliedData("solo"), [Array("v".utf8)])
    }

    func testPreVotePreventsTermInflationByPartitionedNode() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        let term = c.nodes["a"]!.term
        c.isolate("c")
        c.tick("c", 200)
        XCTAssertEqual(c.nodes["c"]!.term, term, "pre-vote must keep the isolated node's term")
        XCTAssertEqual(c.nodes["c"]!.role, .preCandidate)
        c.heal()
        c.tickAll(30)
        XCTAssertEqual(c.leader(), "a", "rejoining node must not depose the leader")
        XCTAssertEqual(c.nodes["a"]!.term, term)
        XCTAssertEqual(c.nodes["c"]!.leader, "a")
    }

    func testWithoutPreVoteTermInflates() {
        let c = TestCluster(voters: three) { $0.preVote = false }
        c.elect("a")
        let term = c.nodes["a"]!.term
        c.isolate("c")
        c.tick("c", 100)
        XCTAssertGreaterThan(c.nodes["c"]!.term, term + 2)
    }

    func testCheckQuorumLeaderStepsDown() {
        let c = TestCluster(voters: three)
        c.elect("a")
        c.isolate("a")
        c.tick("a", c.nodes["a"]!.config.electionTick * 2 + 1)
        XCTAssertEqual(c.nodes["a"]!.role, .follower)
        XCTAssertNil(c.nodes["a"]!.leader)
    }

    func testMinorityOfFiveNeverCommits() throws {
        let c = TestCluster(voters: five)
        c.elect("a")
        let committed = c.nodes["a"]!.commitIndex
        c.partition(["a", "b"], ["c", "d", "e"])
        for k in 0..<5 { _ = try? c.nodes["a"]!.propose(data: [UInt8(k)]) }
        for _ in 0..<8 {
            c.tick("a")
            c.tick("b")
        }
        XCTAssertEqual(c.nodes["a"]!.commitIndex, committed)
        XCTAssertEqual(c.nodes["b"]!.commitIndex, committed)
        XCTAssertTrue(c.appliedData("a").isEmpty)
        // The majority side elects a new leader (once a's lease expired) and commits without them.
        for _ in 0..<40 where c.nodes["c"]!.role != .leader {
            for id in ["c", "d", "e"] { c.tick(id) }
        }
        c.elect("c")
        XCTAssertEqual(c.nodes["c"]!.role, .leader)
        try c.propose("c", "m")
        XCTAssertEqual(c.appliedData("d"), [Array("m".utf8)])
        // After healing, the old leader's uncommitted entries are replaced.
        c.heal()
        c.tickAll(30)
        XCTAssertEqual(c.appliedData("a"), [Array("m".utf8)])
    }

    func testConflictBackoffTakesFewRoundTrips() throws {
        // a and c hold 50 entries of term 2; b holds 50 different entries of term 3.
        let boot = Entry(term: 1, index: 1, kind: .config, data: ConfState(voters: three).encode())
        func log(_ t: UInt64) -> [Entry] { [boot] + (2...51).map { Entry(term: t, index: $0, data: [UInt8(t)]) } }
        let c = TestCluster(voters: three)
        c.load("a", RaftInitialState(hardState: HardState(term: 2, commit: 1), entries: log(2)))
        c.load("c", RaftInitialState(hardState: HardState(term: 2, commit: 1), entries: log(2)))
        c.load("b", RaftInitialState(hardState: HardState(term: 3, commit: 1), entries: log(3)))
        c.elect("b")
        XCTAssertEqual(c.leader(), "b")
        c.tickAll(3)
        let rejects = c.deliveredLog.filter { $0.type == .appendResponse && $0.reject && $0.from == "a" }
        XCTAssertLessThanOrEqual(rejects.count, 3, "fast back-off should skip the whole conflicting term")
        XCTAssertEqual(c.nodes["a"]!.commitIndex, c.nodes["b"]!.commitIndex)
        XCTAssertEqual(c.disks["a"]!.entries.map(\.term), c.disks["b"]!.entries.map(\.term))
    }

    func testOldTermEntriesAreNotCommittedByCounting() throws {
        // b has an entry of term 2 that a majority (a, b) holds, but the new leader a may commit it
        // only together with an entry of its own term.
        let boot = Entry(term: 1, index: 1, kind: .config, data: ConfState(voters: three).encode())
        let c = TestCluster(voters: three)
        let old = Entry(term: 2, index: 2, data: [7])
        c.load("a", RaftInitialState(hardState: HardState(term: 2, commit: 1), entries: [boot, old]))
        c.load("b", RaftInitialState(hardState: HardState(term: 2, commit: 1), entries: [boot, old]))
        c.load("c", RaftInitialState(hardState: HardState(term: 2, commit: 1), entries: [boot]))
        c.isolate("a")
        c.nodes["a"]!.tick()
        // a campaigns but cannot reach anyone; while isolated it must not commit index 2.
        c.tick("a", 40)
        XCTAssertEqual(c.nodes["a"]!.commitIndex, 1)
        c.heal()
        c.elect("a")
        XCTAssertEqual(c.leader(), "a")
        c.tickAll(2)
        // Committed through the leader's no-op of its own term.
        XCTAssertGreaterThanOrEqual(c.nodes["a"]!.commitIndex, 3)
        XCTAssertEqual(c.nodes["a"]!.entry(at: 3)?.kind, .noop)
    }

    func testSnapshotInstallInChunks() throws {
        let c = TestCluster(voters: three) { $0.snapshotChunkBytes = 7 }
        c.elect("a")
        c.isolate("c")
        for k in 0..<30 { try c.propose("a", "p\(k)") }
        let applied = c.nodes["a"]!.appliedIndex
        let snapData = Array("state-machine-image-\(applied)".utf8)
        let meta = try c.nodes["a"]!.compact(upTo: applied, snapshotData: snapData)
        XCTAssertEqual(meta.index, applied)
        XCTAssertEqual(meta.conf.voters, three)
        XCTAssertNil(c.nodes["a"]!.entry(at: applied))
        c.heal()
        c.tickAll(40)
        XCTAssertEqual(c.snapshotsInstalled["c"]?.last?.data.array, snapData)
        XCTAssertEqual(c.snapshotsInstalled["c"]?.last?.metadata.index, applied)
        let chunks = c.deliveredLog.filter { $0.type == .snapshot && $0.to == "c" }
        XCTAssertGreaterThanOrEqual(chunks.count, (snapData.count + 6) / 7)
        XCTAssertEqual(c.nodes["c"]!.commitIndex, c.nodes["a"]!.commitIndex)
        try c.propose("a", "after")
        XCTAssertEqual(c.appliedData("c").last, Array("after".utf8))
    }

    /// The host can swap the snapshot's heap bytes for the same bytes held elsewhere (the daemon
    /// maps its snapshot file); chunks are then cut from the new storage, which is released when
    /// a later compaction replaces the snapshot. A swap for another index or size is refused.
    func testSnapshotDataReplacedByMappedRegion() throws {
        let c = TestCluster(voters: three) { $0.snapshotChunkBytes = 5 }
        c.elect("a")
        c.isolate("c")
        for k in 0..<20 { try c.propose("a", "p\(k)") }
        let applied = c.nodes["a"]!.appliedIndex
        let image = Array("image-at-\(applied)-with-some-more-bytes".utf8)
        try c.nodes["a"]!.compact(upTo: applied, snapshotData: image)
        final class Flag: @unchecked Sendable { var released = 0 }
        let flag = Flag()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: image.count, alignment: 1)
        buffer.copyBytes(from: image)
        let addr = UInt(bitPattern: buffer.baseAddress!)
        var region: SnapshotData? = SnapshotData(mapping: UnsafeRawPointer(buffer.baseAddress!), count: image.count) {
            flag.released += 1
            UnsafeMutableRawPointer(bitPattern: addr)!.deallocate()
        }
        XCTAssertFalse(c.nodes["a"]!.replaceSnapshotData(index: applied - 1, with: region!), "other index")
        XCTAssertFalse(c.nodes["a"]!.replaceSnapshotData(index: applied, with: SnapshotData(image + [0])), "other size")
        XCTAssertTrue(c.nodes["a"]!.replaceSnapshotData(index: applied, with: region!))
        region = nil
        XCTAssertEqual(flag.released, 0, "the node keeps the region alive")
        c.heal()
        c.tickAll(40)
        XCTAssertEqual(c.snapshotsInstalled["c"]?.last?.data.array, image)
        XCTAssertEqual(c.nodes["c"]!.commitIndex, c.nodes["a"]!.commitIndex)
        // The next compaction drops the region.
        for k in 0..<3 { try c.propose("a", "q\(k)") }
        c.snapshotsInstalled = [:]
        c.deliveredLog = []
        try c.nodes["a"]!.compact(upTo: c.nodes["a"]!.appliedIndex, snapshotData: [1, 2, 3])
        XCTAssertEqual(flag.released, 1)
    }

    /// With `stageIncomingSnapshots`, a follower keeps no copy of an incoming snapshot: the
    /// chunks go to the host in Readys, the installed snapshot arrives without bytes, and the
    /// node serves nothing from it until the host hands the bytes back — then it can feed a
    /// third node from them.
    func testStagedSnapshotInstall() throws {
        let c = TestCluster(voters: three) {
            $0.snapshotChunkBytes = 6
            $0.stageIncomingSnapshots = true
        }
        c.elect("a")
        c.isolate("c")
        for k in 0..<25 { try c.propose("a", "p\(k)") }
        let applied = c.nodes["a"]!.appliedIndex
        let image = Array("staged-image-at-\(applied)-0123456789".utf8)
        try c.nodes["a"]!.compact(upTo: applied, snapshotData: image)
        c.heal()
        c.tickAll(40)
        XCTAssertEqual(c.snapshotsInstalled["c"]?.last?.data.array, image)
        XCTAssertEqual(c.stagedChunkCount["c"], (image.count + 5) / 6, "every chunk handed to the host once")
        XCTAssertEqual(c.nodes["c"]!.commitIndex, c.nodes["a"]!.commitIndex)
        XCTAssertTrue(c.nodes["c"]!.incoming == nil && c.nodes["c"]!.stagedChunks.isEmpty)
        try c.propose("a", "after")
        XCTAssertEqual(c.appliedData("c").last, Array("after".utf8))

        // c leads; b falls behind c's snapshot and is fed from the bytes c got back.
        try c.nodes["a"]!.transferLeadership(to: "c")
        c.tickAll(5)
        XCTAssertEqual(c.leader(), "c")
        c.isolate("b")
        for k in 0..<5 { try c.propose("c", "q\(k)") }
        let cApplied = c.nodes["c"]!.appliedIndex
        try c.nodes["c"]!.compact(upTo: cApplied, snapshotData: Array("c-image".utf8))
        c.heal()
        c.tickAll(40)
        XCTAssertEqual(c.snapshotsInstalled["b"]?.last?.data.array, Array("c-image".utf8))
        XCTAssertEqual(c.nodes["b"]!.commitIndex, c.nodes["c"]!.commitIndex)
    }

    /// A node whose staged snapshot bytes were not handed back sends no snapshot (it would
    /// have nothing to send); a hand-back of the wrong size is refused.
    func testStagedSnapshotNotServedUntilHandedBack() throws {
        var cfg = RaftConfig(id: "c", randomSeed: 3)
        cfg.stageIncomingSnapshots = true
        cfg.snapshotChunkBytes = 4
        var n = try RaftNode(config: cfg)
        let meta = SnapshotMetadata(index: 10, term: 2, conf: ConfState(voters: ["a", "b", "c"]))
        let bytes = Array("0123456789".utf8)
        for off in stride(from: 0, to: bytes.count, by: 4) {
            let chunk = SnapshotChunk(metadata: meta, offset: UInt64(off), totalSize: UInt64(bytes.count),
                                      data: Array(bytes[off..<min(bytes.count, off + 4)]))
            n.step(RaftMessage(type: .snapshot, from: "a", to: "c", term: 2, snapshot: chunk))
            if off == 4 {
                XCTAssertEqual(n.incoming?.received, 8)
                XCTAssertEqual(n.incoming?.buffer, [], "no bytes kept in the core")
            }
        }
        let rd = n.ready()
        XCTAssertEqual(rd.snapshotChunks.map { $0.offset }, [0, 4, 8])
        XCTAssertEqual(Array(rd.snapshotChunks.map { $0.data }.joined()), bytes)
        XCTAssertEqual(rd.snapshot?.metadata, meta)
        XCTAssertEqual(rd.snapshot?.data.count, 0)
        XCTAssertTrue(n.snapshotDataPending)
        XCTAssertFalse(n.replaceSnapshotData(index: 10, with: SnapshotData(bytes + [0])), "wrong size")
        XCTAssertFalse(n.replaceSnapshotData(index: 9, with: SnapshotData(bytes)), "wrong index")
        XCTAssertTrue(n.snapshotDataPending)
        n.advance(rd)
        XCTAssertTrue(n.replaceSnapshotData(index: 10, with: SnapshotData(bytes)))
        XCTAssertFalse(n.snapshotDataPending)
    }

    /// A follower whose disk was wiped (it rejects every append above what it has) is walked
    /// back and re-synced — through a snapshot once the leader compacted — instead of the leader
    /// re-sending the same append forever.
    func testFollowerThatLostItsLogIsResynced() throws {
        for compacted in [false, true] {
            let c = TestCluster(voters: three)
            c.elect("a")
            for k in 0..<30 { try c.propose("a", "p\(k)") }
            XCTAssertEqual(c.nodes["c"]!.commitIndex, c.nodes["a"]!.commitIndex)
            if compacted {
                try c.nodes["a"]!.compact(upTo: c.nodes["a"]!.appliedIndex, snapshotData: Array("img".utf8))
            }
            // c restarts with nothing; the leader still believes c holds everything.
            c.load("c", RaftInitialState())
            let before = c.deliveredLog.count
            try c.propose("a", "after")
            c.tickAll(10)
            XCTAssertEqual(c.nodes["c"]!.commitIndex, c.nodes["a"]!.commitIndex, "compacted: \(compacted)")
            XCTAssertEqual(c.appliedData("c").last, Array("after".utf8))
            if compacted { XCTAssertEqual(c.snapshotsInstalled["c"]?.last?.data.array, Array("img".utf8)) }
            let appends = c.deliveredLog[before...].filter { $0.type == .append && $0.to == "c" }.count
            XCTAssertLessThan(appends, 40, "no append ping-pong")
        }
    }

    func testCompactionErrors() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        let last = c.nodes["a"]!.lastIndex
        XCTAssertThrowsError(try c.nodes["a"]!.compact(upTo: last + 5, snapshotData: []))
        XCTAssertThrowsError(try c.nodes["a"]!.compact(upTo: 0, snapshotData: []))
    }

    func testReadIndexOnLeaderAndFollower() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        try c.propose("a", "w")
        try c.nodes["a"]!.readIndex(requestID: 42)
        c.stabilize()
        XCTAssertEqual(c.readStates["a"], [ReadState(requestID: 42, index: c.nodes["a"]!.commitIndex)])
        try c.nodes["b"]!.readIndex(requestID: 7)
        c.stabilize()
        XCTAssertEqual(c.readStates["b"]?.first?.requestID, 7)
        XCTAssertEqual(c.readStates["b"]?.first?.index, c.nodes["a"]!.commitIndex)
    }

    func testReadIndexNeedsQuorum() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        c.isolate("a")
        try c.nodes["a"]!.readIndex(requestID: 1)
        c.tick("a", 3)
        XCTAssertEqual(c.readStates["a"] ?? [], [], "a leader cut off from the quorum must not confirm reads")
    }

    func testReadIndexWaitsForCommitInTerm() throws {
        let c = TestCluster(voters: three)
        // Votes and heartbeats flow, but no append does: the new leader cannot commit its no-op.
        c.dropIf = { $0.type == .append }
        c.elect("a")
        XCTAssertEqual(c.nodes["a"]!.role, .leader)
        try c.nodes["a"]!.readIndex(requestID: 5)
        c.tick("a", 4)
        XCTAssertEqual(c.readStates["a"] ?? [], [])
        c.dropIf = nil
        c.tick("a", 2)
        XCTAssertEqual(c.readStates["a"]?.map(\.requestID), [5])
        XCTAssertEqual(c.readStates["a"]?.first?.index, c.nodes["a"]!.commitIndex)
    }

    func testLeaderTransfer() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        c.isolate("b")
        try c.propose("a", "x")
        c.heal()
        try c.nodes["a"]!.transferLeadership(to: "b")
        // While transferring, proposals are refused... unless the transfer already finished.
        if c.nodes["a"]!.role == .leader {
            XCTAssertThrowsError(try c.nodes["a"]!.propose(data: [1]))
        }
        c.stabilize()
        c.tickAll(3)
        XCTAssertEqual(c.leader(), "b")
        XCTAssertEqual(c.nodes["a"]!.leader, "b")
        XCTAssertThrowsError(try c.nodes["b"]!.transferLeadership(to: "zz"))
    }

    func testLearnerIsNotCountedAndDoesNotCampaign() throws {
        let c = TestCluster(voters: three, joiners: ["l"])
        c.elect("a")
        try c.nodes["a"]!.proposeConfChange(.addLearner("l"))
        c.tickAll(3)
        XCTAssertEqual(c.nodes["l"]!.conf.learners, ["l"])
        try c.propose("a", "x")
        c.tickAll(2)
        XCTAssertEqual(c.appliedData("l"), [Array("x".utf8)])
        // With both other voters gone, leader + learner are not a quorum.
        c.partition(["a", "l"], ["b", "c"])
        let commit = c.nodes["a"]!.commitIndex
        _ = try? c.nodes["a"]!.propose(data: [9])
        c.tick("a", 3)
        c.tick("l", 3)
        XCTAssertEqual(c.nodes["a"]!.commitIndex, commit)
        // The learner never campaigns.
        c.isolate("l")
        c.tick("l", 100)
        XCTAssertEqual(c.nodes["l"]!.role, .follower)
    }

    func testConfigurationChangesOneAtATime() throws {
        let c = TestCluster(voters: three, joiners: ["d"])
        c.elect("a")
        c.isolate("b")
        c.isolate("c")
        try c.nodes["a"]!.proposeConfChange(.addLearner("d"))
        XCTAssertTrue(c.nodes["a"]!.hasPendingConfChange)
        XCTAssertThrowsError(try c.nodes["a"]!.proposeConfChange(.removeNode("c"))) { e in
            XCTAssertEqual(e as? RaftError, .configChangeInProgress)
        }
        c.heal()
        c.tickAll(3)
        XCTAssertFalse(c.nodes["a"]!.hasPendingConfChange)
        XCTAssertThrowsError(try c.nodes["a"]!.proposeConfChange(.addLearner("d")))
        try c.nodes["a"]!.proposeConfChange(.promoteLearner("d"))
        c.tickAll(3)
        XCTAssertEqual(c.nodes["a"]!.conf.voters, ["a", "b", "c", "d"])
        XCTAssertEqual(c.nodes["d"]!.conf.voters, ["a", "b", "c", "d"])
        // Remove the leader itself: it steps down and the others elect a new leader.
        try c.nodes["a"]!.proposeConfChange(.removeNode("a"))
        c.tickAll(3)
        XCTAssertNotEqual(c.nodes["a"]!.role, .leader)
        c.tickAll(50)
        let l = try XCTUnwrap(c.leader())
        XCTAssertNotEqual(l, "a")
        XCTAssertEqual(c.nodes[l]!.conf.voters, ["b", "c", "d"])
        try c.propose(l, "after")
        XCTAssertEqual(c.appliedData("d").last, Array("after".utf8))
    }

    func testStaleAndMalformedMessagesAreIgnored() {
        let c = TestCluster(voters: three)
        c.elect("a")
        var b = c.nodes["b"]!
        let before = b.status
        // Entries not contiguous with the claimed previous index.
        b.step(RaftMessage(type: .append, from: "a", to: "b", term: before.term, logTerm: 1, index: 1,
                           entries: [Entry(term: before.term, index: 9)]))
        // Wrong recipient, self-sent, unsolicited responses.
        b.step(RaftMessage(type: .append, from: "a", to: "zz", term: before.term))
        b.step(RaftMessage(type: .append, from: "b", to: "b", term: before.term))
        b.step(RaftMessage(type: .appendResponse, from: "c", to: "b", term: before.term, index: 1_000_000))
        b.step(RaftMessage(type: .snapshot, from: "a", to: "b", term: before.term))
        b.step(RaftMessage(type: .readIndexResponse, from: "c", to: "b", term: before.term, index: 99))
        XCTAssertEqual(b.lastIndex, before.lastIndex)
        XCTAssertEqual(b.commitIndex, before.commitIndex)
        XCTAssertGreaterThan(b.droppedMessages, 0)
        // A leader ignores absurd acknowledgements.
        var a = c.nodes["a"]!
        let commit = a.commitIndex
        a.step(RaftMessage(type: .appendResponse, from: "b", to: "a", term: a.term, index: 1 << 40))
        a.step(RaftMessage(type: .appendResponse, from: "c", to: "a", term: a.term, index: 1 << 40))
        XCTAssertEqual(a.commitIndex, commit)
    }

    func testRestartKeepsTermVoteAndLog() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        try c.propose("a", "x")
        c.tickAll(2)
        let disk = c.disks["b"]!
        let b = try RaftNode(config: RaftConfig(id: "b"), state: disk)
        XCTAssertEqual(b.term, c.nodes["b"]!.term)
        XCTAssertEqual(b.lastIndex, c.nodes["b"]!.lastIndex)
        XCTAssertEqual(b.conf.voters, three)
        XCTAssertEqual(b.commitIndex, disk.hardState.commit)
    }

    func testInvalidConfigIsAnError() {
        var c = RaftConfig(id: "x")
        c.electionTick = 1
        XCTAssertThrowsError(try RaftNode(config: c)) { e in
            guard case .invalidConfig = e as? RaftError else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try RaftNode(config: RaftConfig(id: "")))
    }

    func testCorruptStateIsRejected() {
        let bad = RaftInitialState(hardState: HardState(term: 1), entries: [Entry(term: 1, index: 2)])
        XCTAssertThrowsError(try RaftNode(config: RaftConfig(id: "x"), state: bad))
        let badCommit = RaftInitialState(hardState: HardState(term: 1, commit: 5), entries: [Entry(term: 1, index: 1)])
        XCTAssertThrowsError(try RaftNode(config: RaftConfig(id: "x"), state: badCommit))
    }
    /// A new commit index goes to followers with entries, not in an empty append of its own: a
    /// follower that holds everything learns it from the next append, from the host's
    /// `flushCommit()`, or at the latest from the next tick.
    func testCommitIndexTravelsWithEntriesOrTheFlush() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        c.tickAll(2)
        c.hostFlushesCommits = false
        c.deliveredLog = []
        try c.propose("a", "x")
        let commit = c.nodes["a"]!.commitIndex
        XCTAssertEqual(c.appliedData("a").last, Array("x".utf8))
        // Only the appends that carried the entry, and their answers: no empty appends.
        XCTAssertTrue(c.deliveredLog.filter { $0.type == .append }.allSatisfy { !$0.entries.isEmpty })
        XCTAssertEqual(c.deliveredLog.filter { $0.type == .append }.count, 2)
        for f in ["b", "c"] {
            XCTAssertLessThan(c.nodes[f]!.commitIndex, commit, f)
            XCTAssertNotEqual(c.appliedData(f).last, Array("x".utf8), f)
        }
        XCTAssertTrue(c.nodes["a"]!.commitFlushDue)
        // The next entry carries the previous commit.
        c.deliveredLog = []
        try c.propose("a", "y")
        for f in ["b", "c"] {
            XCTAssertEqual(c.nodes[f]!.commitIndex, commit, f)
            XCTAssertEqual(c.appliedData(f).last, Array("x".utf8), f)
        }
        // The host's flush: one empty append per follower, then nothing more is due.
        c.deliveredLog = []
        XCTAssertTrue(c.nodes["a"]!.commitFlushDue)
        c.nodes["a"]!.flushCommit()
        c.stabilize()
        let empty = c.deliveredLog.filter { $0.type == .append }
        XCTAssertEqual(empty.map(\.to).sorted(), ["b", "c"])
        XCTAssertTrue(empty.allSatisfy { $0.entries.isEmpty })
        XCTAssertFalse(c.nodes["a"]!.commitFlushDue)
        for f in ["b", "c"] { XCTAssertEqual(c.appliedData(f).last, Array("y".utf8), f) }
        c.nodes["a"]!.flushCommit()
        XCTAssertFalse(c.nodes["a"]!.hasReady, "nothing left to flush")
        // Without the host, a tick tells them.
        try c.propose("a", "z")
        XCTAssertNotEqual(c.appliedData("b").last, Array("z".utf8))
        c.tick("a")
        for f in ["b", "c"] { XCTAssertEqual(c.appliedData(f).last, Array("z".utf8), f) }
    }

    func testPipeliningIsBoundedAndBatched() throws {
        let c = TestCluster(voters: three) {
            $0.maxInflightAppends = 4
            $0.maxEntriesPerAppend = 5
            $0.maxBytesPerAppend = 1000
        }
        c.elect("a")
        c.tickAll(2)
        c.deliveredLog = []
        // b acknowledges nothing: the leader may have at most 4 appends with entries in flight to it.
        c.dropIf = { $0.from == "b" && $0.type == .appendResponse }
        for k in 0..<100 { _ = try c.nodes["a"]!.propose(data: Array(repeating: UInt8(k), count: 10)) }
        c.stabilize()
        let toB = c.deliveredLog.filter { $0.to == "b" && $0.type == .append && !$0.entries.isEmpty }
        XCTAssertEqual(toB.count, 4)
        XCTAssertTrue(toB.allSatisfy { $0.entries.count <= 5 })
        // c acknowledges, so it receives everything, in batches.
        let toC = c.deliveredLog.filter { $0.to == "c" && $0.type == .append && !$0.entries.isEmpty }
        XCTAssertEqual(toC.reduce(0) { $0 + $1.entries.count }, 100)
        XCTAssertTrue(toC.allSatisfy { $0.entries.count <= 5 })
        XCTAssertEqual(c.appliedData("c").count, 100)
        // Byte limit: big entries go one per message.
        c.dropIf = nil
        c.deliveredLog = []
        for _ in 0..<3 { _ = try c.nodes["a"]!.propose(data: Array(repeating: 1, count: 900)) }
        c.stabilize()
        let big = c.deliveredLog.filter { $0.to == "c" && $0.type == .append && !$0.entries.isEmpty }
        XCTAssertTrue(big.allSatisfy { $0.entries.count == 1 })
        c.tickAll(3)
        XCTAssertEqual(c.appliedData("b").count, 103)
    }

    func testTransferToLaggingFollowerCatchesItUpFirst() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        c.isolate("c")
        for k in 0..<10 { try c.propose("a", "v\(k)") }
        c.heal()
        try c.nodes["a"]!.transferLeadership(to: "c")
        XCTAssertEqual(c.nodes["a"]!.leadTransferee, "c")
        c.stabilize()
        XCTAssertEqual(c.leader(), "c")
        XCTAssertEqual(c.appliedData("c").count, 10)
        try c.propose("c", "new")
        XCTAssertEqual(c.appliedData("a").last, Array("new".utf8))
    }

    func testTransferAbortsAfterElectionTimeout() throws {
        let c = TestCluster(voters: three)
        c.elect("a")
        c.isolate("c")
        try c.nodes["a"]!.transferLeadership(to: "c")
        XCTAssertThrowsError(try c.nodes["a"]!.propose(data: [1])) { e in
            XCTAssertEqual(e as? RaftError, .leadershipTransferInProgress)
        }
        c.tick("a", c.nodes["a"]!.config.electionTick)
        XCTAssertEqual(c.nodes["a"]!.role, .leader)
        XCTAssertNil(c.nodes["a"]!.leadTransferee)
        XCTAssertNoThrow(try c.nodes["a"]!.propose(data: [1]))
    }

    func testSnapshotTransferSurvivesFollowerRestart() throws {
        let c = TestCluster(voters: three) { $0.snapshotChunkBytes = 3 }
        c.elect("a")
        c.isolate("c")
        for k in 0..<10 { try c.propose("a", "p\(k)") }
        let applied = c.nodes["a"]!.appliedIndex
        let data = Array("0123456789abcdefghij".utf8)
        try c.nodes["a"]!.compact(upTo: applied, snapshotData: data)
        c.heal()
        // Let a few chunks through, then restart c from its disk (losing the partial transfer).
        var chunks = 0
        c.dropIf = { m in
            if m.type == .snapshot && m.to == "c" { chunks += 1; return chunks > 3 }
            return false
        }
        c.tickAll(3)
        c.load("c", c.disks["c"]!)
        c.dropIf = nil
        c.tickAll(40)
        XCTAssertEqual(c.snapshotsInstalled["c"]?.last?.data.array, data)
        XCTAssertEqual(c.nodes["c"]!.commitIndex, c.nodes["a"]!.commitIndex)
    }
}
