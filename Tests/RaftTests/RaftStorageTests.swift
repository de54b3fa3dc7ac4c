import Foundation
import Identity
import Raft
import RaftStorage
import Storage
import Support
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

    func snapshotFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("raft-snapshot-") }.sorted()
    }

    func logSegments() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path + "/raft-log").filter { $0.hasSuffix(".log") }.sorted()
    }

    /// Compaction keeps the data in its own file and deletes the log segments whose entries it
    /// covers (never the one being written); the state reads the same at every point and after a
    /// reopen.
    func testSnapshotFileAndSegmentDeletion() throws {
        let n = 3000
        let meta = SnapshotMetadata(index: UInt64(n - 50), term: 1, conf: ConfState(voters: ["a"]))
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        do {
            let s = try RaftStorage(db: SQLiteDB(path: path, exclusive: true), segmentBytes: 8192)
            for i in stride(from: 1, through: n, by: 100) {
                try s.save(hardState: HardState(term: 1, commit: UInt64(i)), entries: entries(UInt64(i)...UInt64(i + 99), term: 1))
            }
            let before = try logSegments().count
            XCTAssertGreaterThan(before, 5)
            let file = try s.writeSnapshotFile(index: meta.index, data: data)
            try s.compact(snapshot: meta, file: file)
            // The covered segments and older files are deleted off the caller's thread.
            s.waitForCleanup()
            XCTAssertEqual(try snapshotFiles(), [file.name])
            let after = try logSegments().count
            XCTAssertLessThan(after, before)
            XCTAssertGreaterThanOrEqual(after, 1)
            XCTAssertEqual(s.logSegmentCount, after)
            var st = try s.load()
            XCTAssertEqual(st.snapshot, Snapshot(metadata: meta, data: data))
            XCTAssertEqual(st.entries, entries(meta.index + 1...UInt64(n), term: 1))
            XCTAssertEqual(st.hardState, HardState(term: 1, commit: UInt64(n - 99)))
            XCTAssertEqual(try s.lastIndex(), UInt64(n))
            try s.save(hardState: nil, entries: entries(UInt64(n + 1)...UInt64(n + 1), term: 1))
            st = try s.load()
            XCTAssertEqual(st.entries, entries(meta.index + 1...UInt64(n + 1), term: 1))
            XCTAssertEqual(st.hardState, HardState(term: 1, commit: UInt64(n - 99)), "every segment starts with the hard state")
        }
        // Reopen: a stray temporary file and an unrecorded snapshot file (a crash before the row
        // was written) are removed at open.
        FileManager.default.createFile(atPath: dir.path + "/raft-snapshot-1-2.bin.tmp", contents: Data([1]))
        FileManager.default.createFile(atPath: dir.path + "/raft-snapshot-9-9.bin", contents: Data([2]))
        let s = try RaftStorage(db: SQLiteDB(path: path, exclusive: true), segmentBytes: 8192)
        XCTAssertEqual(try snapshotFiles().count, 1)
        XCTAssertEqual(try s.load().snapshot?.data.array, data)
        XCTAssertEqual(try s.load().entries, entries(meta.index + 1...UInt64(n + 1), term: 1))
        XCTAssertEqual(try s.load().hardState, HardState(term: 1, commit: UInt64(n - 99)))
        // A newer snapshot replaces the file. A file of a higher index (another thread may be
        // writing the next snapshot) is left alone; one of a lower index goes.
        FileManager.default.createFile(atPath: dir.path + "/raft-snapshot-\(n + 1)-1.bin", contents: Data([3]))
        FileManager.default.createFile(atPath: dir.path + "/raft-snapshot-\(n + 1)-2.bin.tmp", contents: Data([3]))
        FileManager.default.createFile(atPath: dir.path + "/raft-snapshot-3-1.bin", contents: Data([4]))
        let meta2 = SnapshotMetadata(index: UInt64(n + 1), term: 1, conf: ConfState(voters: ["a"]))
        try s.compact(snapshot: meta2, data: [7, 7])
        s.waitForCleanup()
        let files = try snapshotFiles()
        XCTAssertEqual(files.count, 3, "\(files)")
        XCTAssertTrue(files.contains("raft-snapshot-\(n + 1)-1.bin") && files.contains("raft-snapshot-\(n + 1)-2.bin.tmp"))
        XCTAssertFalse(files.contains("raft-snapshot-3-1.bin"))
        XCTAssertEqual(try s.load().snapshot, Snapshot(metadata: meta2, data: [7, 7]))
        XCTAssertEqual(try s.load().entries, [])
        XCTAssertEqual(try logSegments().count, 1, "only the segment being written remains")
        // Recording an older snapshot is refused (deletion trusts the recorded index).
        XCTAssertThrowsError(try s.compact(snapshot: meta, data: [1]))
        XCTAssertEqual(try s.load().snapshot, Snapshot(metadata: meta2, data: [7, 7]))
    }

    func testDamagedOrMissingSnapshotFileIsReported() throws {
        let meta = SnapshotMetadata(index: 5, term: 1, conf: ConfState(voters: ["a"]))
        do {
            let s = try RaftStorage(path: path)
            try s.save(hardState: HardState(term: 1, commit: 8), entries: entries(1...8, term: 1))
            try s.compact(snapshot: meta, data: Array("state".utf8))
        }
        let name = try XCTUnwrap(try snapshotFiles().first)
        let filePath = dir.path + "/" + name
        try Data("stale".utf8).write(to: URL(fileURLWithPath: filePath))
        XCTAssertThrowsError(try RaftStorage(path: path).load()) { e in
            XCTAssertEqual((e as? P2POSError)?.code, "RAFT_STORAGE_CORRUPT")
            XCTAssertTrue("\(e)".contains("checksum"), "\(e)")
        }
        try FileManager.default.removeItem(atPath: filePath)
        XCTAssertThrowsError(try RaftStorage(path: path).load()) { e in
            XCTAssertEqual((e as? P2POSError)?.code, "RAFT_STORAGE_CORRUPT")
            XCTAssertTrue("\(e)".contains("missing"), "\(e)")
        }
    }

    /// A raft.db written before snapshot files (data inline, no file columns) and before log
    /// files (hard state and entries in tables) still loads: the log moves to its directory, and
    /// the next compaction moves the snapshot to a file.
    func testDatabaseWithInlineSnapshotStillLoads() throws {
        do {
            let db = try SQLiteDB(path: path)
            try db.exec("""
                CREATE TABLE raft_hard_state (k INTEGER PRIMARY KEY CHECK (k = 1), term INTEGER NOT NULL, vote TEXT, commit_index INTEGER NOT NULL);
                CREATE TABLE raft_snapshot (k INTEGER PRIMARY KEY CHECK (k = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL, conf BLOB NOT NULL, data BLOB NOT NULL);
                CREATE TABLE raft_log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL);
                INSERT INTO raft_hard_state VALUES (1, 2, 'a', 6);
                """)
            try db.run("INSERT INTO raft_snapshot VALUES (1, 4, 2, ?, ?)", [.blob(ConfState(voters: ["a"]).encode()), .blob([4, 4])])
            for e in entries(5...6, term: 2) {
                try db.run("INSERT INTO raft_log VALUES (?, ?, 0, ?)", [.int(Int64(e.index)), .int(2), .blob(e.data)])
            }
        }
        let s = try RaftStorage(path: path)
        let st = try s.load()
        XCTAssertEqual(st.snapshot, Snapshot(metadata: SnapshotMetadata(index: 4, term: 2, conf: ConfState(voters: ["a"])), data: [4, 4]))
        XCTAssertEqual(st.entries, entries(5...6, term: 2))
        XCTAssertEqual(st.hardState, HardState(term: 2, vote: "a", commit: 6))
        // The hard state and entries moved to the log directory; the tables are empty.
        XCTAssertEqual(try s.db.query("SELECT (SELECT COUNT(*) FROM raft_log) + (SELECT COUNT(*) FROM raft_hard_state)").first?.first?.int, 0)
        XCTAssertEqual(try logSegments().count, 1)
        try s.compact(snapshot: SnapshotMetadata(index: 6, term: 2, conf: ConfState(voters: ["a"])), data: [6])
        XCTAssertEqual(try s.load().snapshot?.data, [6])
        s.waitForCleanup()
        XCTAssertEqual(try snapshotFiles().count, 1)
    }

    /// A snapshot file written a piece at a time hashes and reads back like one written whole;
    /// a loaded snapshot is mapped from its file, not copied onto the heap; an abandoned file
    /// leaves nothing behind.
    func testStreamedSnapshotFileIsMappedOnLoad() throws {
        let data = (0..<300_001).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let s = try RaftStorage(path: path)
        try s.save(hardState: HardState(term: 1, commit: 4), entries: entries(1...4, term: 1))
        let w = try s.createSnapshotFile(index: 3)
        var off = 0
        for piece in [1, 0, 4095, 65536, 100_000] {
            try data[off..<off + piece].withUnsafeBytes { try w.write($0) }
            off += piece
        }
        try data[off...].withUnsafeBytes { try w.write($0) }
        XCTAssertEqual(w.size, data.count)
        let file = try w.finish()
        XCTAssertEqual(file.digest, "blake2b-256:" + Blake2b256.hex(data))
        XCTAssertThrowsError(try w.write(UnsafeRawBufferPointer(start: nil, count: 0)), "a finished file takes no more bytes")
        let meta = SnapshotMetadata(index: 3, term: 1, conf: ConfState(voters: ["a"]))
        try s.compact(snapshot: meta, file: file)
        let mapped = try s.mapSnapshotFile(file.name, digest: file.digest)
        XCTAssertTrue(mapped.isMapped)
        XCTAssertEqual(mapped, SnapshotData(data), "mapped and heap bytes compare equal")
        XCTAssertNotEqual(mapped, SnapshotData(Array(data.dropLast())))
        XCTAssertEqual(mapped.bytes(299_990..<400_000), Array(data[299_990...]), "ranges are clamped to the data")
        XCTAssertEqual(mapped.bytes(-5..<2), Array(data[0..<2]))
        for wrong in [String(repeating: "0", count: 64), "blake2b-256:" + String(repeating: "0", count: 64), "blake2b-256:", ""] {
            XCTAssertThrowsError(try s.mapSnapshotFile(file.name, digest: wrong), wrong) { e in
                XCTAssertEqual((e as? P2POSError)?.code, "RAFT_STORAGE_CORRUPT")
            }
        }
        // A file written before BLAKE2b digests was recorded with its bare SHA-256: still accepted.
        XCTAssertEqual(try s.mapSnapshotFile(file.name, digest: SHA256.hex(data)).count, data.count)
        let loaded = try XCTUnwrap(try s.load().snapshot)
        XCTAssertTrue(loaded.data.isMapped)
        XCTAssertEqual(loaded, Snapshot(metadata: meta, data: data))
        // A data directory from before BLAKE2b digests: its row holds the bare SHA-256.
        try s.db.run("UPDATE raft_snapshot SET sha256 = ? WHERE k = 1", [.text(SHA256.hex(data))])
        XCTAssertEqual(try XCTUnwrap(try s.load().snapshot), Snapshot(metadata: meta, data: data))
        try s.db.run("UPDATE raft_snapshot SET sha256 = ? WHERE k = 1", [.text(SHA256.hex(Array(data.dropLast())))])
        XCTAssertThrowsError(try s.load()) { XCTAssertEqual(($0 as? P2POSError)?.code, "RAFT_STORAGE_CORRUPT") }
        try s.db.run("UPDATE raft_snapshot SET sha256 = ? WHERE k = 1", [.text(file.digest)])
        // An abandoned writer removes its temporary file; so does dropping it unfinished.
        let before = try snapshotFiles()
        let a = try s.createSnapshotFile(index: 9)
        try data.withUnsafeBytes { try a.write($0) }
        XCTAssertEqual(try snapshotFiles().count, before.count + 1)
        a.abandon()
        XCTAssertEqual(try snapshotFiles(), before)
        do {
            let b = try s.createSnapshotFile(index: 10)
            try data.withUnsafeBytes { try b.write($0) }
        }
        XCTAssertEqual(try snapshotFiles(), before)
        // An empty snapshot file maps to empty data.
        let e = try s.createSnapshotFile(index: 11).finish()
        XCTAssertEqual(try s.mapSnapshotFile(e.name, digest: e.digest).count, 0)
        s.discardSnapshotFile(e)
    }
}
