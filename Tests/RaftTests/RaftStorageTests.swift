import Foundation
import Raft
import RaftStorage
import Storage
import XCTest

final class RaftStorageTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("raftstorage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    var path: String { dir.appendingPathComponent("raft.db").path }

    func entries(_ r: ClosedRange<UInt64>, term: UInt64) -> [Entry] {
        r.map { Entry(term: term, index: $0, data: Array("e\($0)t\(term)".utf8)) }
    }

    func testEmptyLoad() throws {
        let s = try RaftStorage(path: path)
        let st = try s.load()
        XCTAssertEqual(st.hardState, HardState())
        XCTAssertNil(st.snapshot)
        XCTAssertTrue(st.entries.isEmpty)
        XCTAssertEqual(try s.lastIndex(), 0)
    }

    func testRoundTripAndReopen() throws {
        do {
            let s = try RaftStorage(path: path)
            try s.save(hardState: HardState(term: 3, vote: "12D3KooWX", commit: 2), entries: entries(1...5, term: 3))
        }
        let s = try RaftStorage(path: path)
        let st = try s.load()
        XCTAssertEqual(st.hardState, HardState(term: 3, vote: "12D3KooWX", commit: 2))
        XCTAssertEqual(st.entries, entries(1...5, term: 3))
        XCTAssertEqual(try s.lastIndex(), 5)
        // A nil vote round-trips as nil.
        try s.save(hardState: HardState(term: 4, vote: nil, commit: 3), entries: [])
        XCTAssertEqual(try s.load().hardState, HardState(term: 4, vote: nil, commit: 3))
    }

    func testConflictingSuffixIsTruncated() throws {
        let s = try RaftStorage(path: path)
        try s.save(hardState: nil, entries: entries(1...10, term: 1))
        try s.save(hardState: nil, entries: entries(6...7, term: 2))
        let st = try s.load()
        XCTAssertEqual(st.entries, entries(1...5, term: 1) + entries(6...7, term: 2))
    }

    func testCompactionAndSnapshot() throws {
        let s = try RaftStorage(path: path)
        try s.save(hardState: HardState(term: 2, commit: 8), entries: entries(1...10, term: 2))
        let meta = SnapshotMetadata(index: 8, term: 2, conf: ConfState(voters: ["a", "b"], learners: ["c"]))
        try s.compact(snapshot: meta, data: [1, 2, 3])
        var st = try s.load()
        XCTAssertEqual(st.snapshot, Snapshot(metadata: meta, data: [1, 2, 3]))
        XCTAssertEqual(st.entries, entries(9...10, term: 2))
        // A received snapshot replaces the whole log, then new entries follow it.
        let meta2 = SnapshotMetadata(index: 20, term: 4, conf: ConfState(voters: ["a"]))
        try s.save(hardState: HardState(term: 4, commit: 20), entries: entries(21...22, term: 4),
                   snapshot: Snapshot(metadata: meta2, data: [9]))
        st = try s.load()
        XCTAssertEqual(st.snapshot?.metadata, meta2)
        XCTAssertEqual(st.entries, entries(21...22, term: 4))
        XCTAssertEqual(try s.lastIndex(), 22)
    }

    func testManyEntriesInOneTransaction() throws {
        let s = try RaftStorage(path: path)
        try s.save(hardState: HardState(term: 1, commit: 0), entries: entries(1...2000, term: 1))
        XCTAssertEqual(try s.load().entries.count, 2000)
    }

    /// A node driven through RaftStorage restarts with the same term, vote, log and configuration.
    func testNodeRestartFromStorage() throws {
        // The first "process" closes its database (exclusive lock) before the restart opens it.
        let (before, meta): (RaftStatus, SnapshotMetadata) = try {
            let s = try RaftStorage(path: path)
            var n = try RaftNode(config: RaftConfig(id: "solo"), state: try s.load(), bootstrapVoters: ["solo"])
            func drive() throws {
                while n.hasReady {
                    let rd = n.ready()
                    try s.save(rd)
                    n.advance(rd)
                }
            }
            try drive()
            for _ in 0..<25 { n.tick() }
            try drive()
            XCTAssertEqual(n.role, .leader)
            for k in 0..<10 { try n.propose(data: [UInt8(k)]) }
            try drive()
            let applied = n.appliedIndex
            let meta = try n.compact(upTo: applied - 2, snapshotData: [42])
            try s.compact(snapshot: meta, data: [42])
            return (n.status, meta)
        }()
        let r = try RaftNode(config: RaftConfig(id: "solo"), state: try RaftStorage(path: path).load())
        XCTAssertEqual(r.term, before.term)
        XCTAssertEqual(r.vote, "solo")
        XCTAssertEqual(r.lastIndex, before.lastIndex)
        XCTAssertEqual(r.commitIndex, before.commitIndex)
        XCTAssertEqual(r.snapshotIndex, meta.index)
        XCTAssertEqual(r.conf.voters, ["solo"])
    }

    func testSecondOpenWhileOpenIsRefused() throws {
        let s = try RaftStorage(path: path)
        try s.save(hardState: HardState(term: 1, vote: nil, commit: 0), entries: [])
        XCTAssertThrowsError(try RaftStorage(path: path).load(), "the file is locked by its one owner")
        withExtendedLifetime(s) {}
    }
}
