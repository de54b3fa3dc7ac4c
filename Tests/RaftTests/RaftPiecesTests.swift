// Unit tests of the core's small internal pieces (quorum arithmetic, inflight window,
// follower progress, the log). They need @testable, which only debug builds allow, so a
// release soak (`swift test -c release`) skips them.
#if DEBUG
@testable import Raft
import XCTest

final class RaftPiecesTests: XCTestCase {
    func testQuorumCommitted() {
        XCTAssertEqual(Quorum.committed([]), 0)
        XCTAssertEqual(Quorum.committed([5]), 5)
        XCTAssertEqual(Quorum.committed([5, 1]), 1)
        XCTAssertEqual(Quorum.committed([5, 1, 3]), 3)
        XCTAssertEqual(Quorum.committed([9, 9, 1, 1]), 1)
        XCTAssertEqual(Quorum.committed([9, 8, 7, 1, 1]), 7)
    }

    func testVoteResult() {
        let v = ["a", "b", "c"]
        XCTAssertEqual(Quorum.voteResult(voters: v, votes: ["a": true]), .pending)
        XCTAssertEqual(Quorum.voteResult(voters: v, votes: ["a": true, "b": true]), .won)
        XCTAssertEqual(Quorum.voteResult(voters: v, votes: ["a": true, "b": false]), .pending)
        XCTAssertEqual(Quorum.voteResult(voters: v, votes: ["a": true, "b": false, "c": false]), .lost)
        // Votes from non-voters do not count.
        XCTAssertEqual(Quorum.voteResult(voters: v, votes: ["a": true, "x": true, "y": true]), .pending)
        XCTAssertEqual(Quorum.voteResult(voters: [], votes: [:]), .lost)
    }

    func testInflights() {
        var f = Inflights(capacity: 3)
        f.add(5)
        f.add(7)
        f.add(9)
        XCTAssertTrue(f.isFull)
        f.free(upTo: 6)
        XCTAssertEqual(f.items, [7, 9])
        f.free(upTo: 100)
        XCTAssertEqual(f.count, 0)
    }

    func testProgressProbeReplicateAndBackoff() {
        var p = Progress(next: 11, maxInflight: 2)
        XCTAssertFalse(p.isPaused)
        p.sentEntries(last: 10, count: 0)
        XCTAssertTrue(p.isPaused, "probe: one message at a time")
        // Stale rejection (not for the probe we sent) is ignored.
        XCTAssertFalse(p.maybeDecrTo(rejected: 4, matchHint: 2))
        XCTAssertTrue(p.maybeDecrTo(rejected: 10, matchHint: 3))
        XCTAssertEqual(p.next, 4)
        XCTAssertTrue(p.maybeUpdate(3))
        p.becomeReplicate()
        XCTAssertEqual(p.next, 4)
        p.sentEntries(last: 6, count: 3)
        p.sentEntries(last: 8, count: 2)
        XCTAssertTrue(p.isPaused, "replicate: window of 2 full")
        XCTAssertEqual(p.next, 9)
        XCTAssertTrue(p.maybeUpdate(6))
        p.inflights.free(upTo: 6)
        XCTAssertFalse(p.isPaused)
        // A rejection above match in replicate state falls back to match + 1.
        XCTAssertTrue(p.maybeDecrTo(rejected: 8, matchHint: 0))
        XCTAssertEqual(p.next, 7)
        // A probe rejected by a follower that has less than `match` (it lost its log) backs
        // off below match, down to what the follower still has.
        p.becomeProbe()
        XCTAssertEqual(p.next, 7)
        XCTAssertTrue(p.maybeDecrTo(rejected: 6, matchHint: 0))
        XCTAssertEqual(p.next, 1)
        p.becomeSnapshot(20)
        XCTAssertTrue(p.isPaused)
        p.becomeProbe()
        XCTAssertEqual(p.next, 21)
    }

    func testLogAppendTruncateCompactRestore() {
        var l = RaftLog(snapshotIndex: 0, snapshotTerm: 0, entries: [], committed: 0, applied: 0)
        l.append((1...5).map { Entry(term: 1, index: $0) })
        XCTAssertEqual(l.lastIndex, 5)
        XCTAssertEqual(l.unstableEntries.count, 5)
        l.stable = 5
        // Conflicting suffix replaced; the stable mark moves back.
        l.append([Entry(term: 2, index: 4), Entry(term: 2, index: 5), Entry(term: 2, index: 6)])
        XCTAssertEqual(l.stable, 3)
        XCTAssertEqual(l.unstableEntries.map(\.index), [4, 5, 6])
        XCTAssertEqual(l.findConflict([Entry(term: 1, index: 3), Entry(term: 2, index: 4), Entry(term: 3, index: 5)]), 5)
        XCTAssertEqual(l.findConflictByTerm(6, 1), 3)
        XCTAssertEqual(l.findConflictByTerm(6, 2), 6)
        XCTAssertTrue(l.isUpToDate(lastIndex: 6, lastTerm: 2))
        XCTAssertFalse(l.isUpToDate(lastIndex: 9, lastTerm: 1))
        l.commit(to: 5)
        l.applied = 5
        l.stable = 6
        l.compact(to: 4)
        XCTAssertNil(l.term(3))
        XCTAssertEqual(l.term(4), 2)
        XCTAssertEqual(l.firstIndex, 5)
        XCTAssertEqual(l.slice(from: 5, to: 6, maxCount: 1, maxBytes: 1000).map(\.index), [5])
        XCTAssertEqual(l.slice(from: 3, to: 6, maxCount: 10, maxBytes: 1000), [])
        l.restore(index: 50, term: 7)
        XCTAssertEqual(l.lastIndex, 50)
        XCTAssertEqual(l.lastTerm, 7)
        XCTAssertEqual(l.committed, 50)
    }
}
#endif
