import Foundation
import Raft
@testable import RaftStorage
import Storage
import Support
import XCTest

/// The Raft log's segment files: what a crash can leave, what damage looks like, the move out of
/// raft.db's tables.
final class SegmentLogTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("segmentlog-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    var path: String { dir + "/raft.db" }
    var logDir: String { dir + "/raft-log" }

    func entries(_ r: ClosedRange<UInt64>, term: UInt64) -> [Entry] {
        r.map { Entry(term: term, index: $0, data: Array("e\($0)t\(term)".utf8)) }
    }

    func open(segmentBytes: Int = 64 << 20) throws -> RaftStorage {
        try RaftStorage(db: SQLiteDB(path: path, exclusive: true), segmentBytes: segmentBytes)
    }

    func segments() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: logDir).filter { $0.hasSuffix(".log") }.sorted().map { logDir + "/" + $0 }
    }

    /// Writes `bytes` at `offset` of `file` (the end of the file when nil).
    func write(_ bytes: [UInt8], to file: String, at offset: Int? = nil) throws {
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: file))
        if let offset { h.seek(toFileOffset: UInt64(offset)) } else { h.seekToEndOfFile() }
        h.write(Data(bytes))
        h.closeFile()
    }

    /// A record with a correct checksum.
    func record(_ body: [UInt8]) -> [UInt8] {
        var rec: [UInt8] = []
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { rec.append(contentsOf: $0) }
        let crc = rec.withUnsafeBytes { l in body.withUnsafeBytes { SegmentLog.recordCRC(length: l, body: $0) } }
        withUnsafeBytes(of: crc.littleEndian) { rec.append(contentsOf: $0) }
        return rec + body
    }

    /// An entry record's body.
    func entryBody(index: UInt64, term: UInt64, data: [UInt8]) -> [UInt8] {
        var b: [UInt8] = [1]
        withUnsafeBytes(of: index.littleEndian) { b.append(contentsOf: $0) }
        withUnsafeBytes(of: term.littleEndian) { b.append(contentsOf: $0) }
        return b + [0] + data
    }

    func size(_ file: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? -1
    }

    func assertCorrupt(_ body: @autoclosure () throws -> Any, _ text: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? P2POSError)?.code, "RAFT_STORAGE_CORRUPT", "\(e)", line: line)
            XCTAssertTrue(text.isEmpty || "\(e)".contains(text), "\(e)", line: line)
        }
    }

    func testCRC32CKnownAnswer() {
        // The check value of CRC-32C (RFC 3720 appendix B.4 lists it too).
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CRC32C.update(0, $0) }, 0xE306_9283)
        XCTAssertEqual([UInt8](repeating: 0, count: 32).withUnsafeBytes { CRC32C.update(0, $0) }, 0x8A91_36AA)
        // Piecewise equals whole, across the 8-byte steps.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let whole = data.withUnsafeBytes { CRC32C.update(0, $0) }
        for cut in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let a = data[..<cut].withUnsafeBytes { CRC32C.update(0, $0) }
            XCTAssertEqual(data[cut...].withUnsafeBytes { CRC32C.update(a, $0) }, whole, "cut at \(cut)")
        }
    }

    /// What a crash in the middle of a save leaves at the end of the newest segment — part of a
    /// record, a record with a sector that never reached the disk, bytes past the end of a file
    /// that could not be reserved — is cut off at the next open; what was durable before stays,
    /// and writing continues after it.
    func testTornTailIsCutOff() throws {
        var end: Int
        do {
            let s = try open()
            try s.save(hardState: HardState(term: 2, vote: "a", commit: 3), entries: entries(1...5, term: 2))
            end = s.log.activeSize
        }
        let seg = try XCTUnwrap(try segments().last)
        // The first sector of a 1,000-byte record: the rest of it is still zeros.
        try write([0xE8, 0x03, 0, 0, 1, 2, 3, 4, 1] + [UInt8](repeating: 9, count: 512 - end % 512 - 9), to: seg, at: end)
        do {
            let s = try open()
            XCTAssertEqual(try s.load().entries, entries(1...5, term: 2))
            XCTAssertEqual(try s.load().hardState, HardState(term: 2, vote: "a", commit: 3))
            XCTAssertEqual(s.log.activeSize, end)
            try s.save(hardState: HardState(term: 2, vote: "a", commit: 5), entries: entries(6...6, term: 2))
            end = s.log.activeSize
        }
        XCTAssertEqual(try open().load().entries, entries(1...6, term: 2), "nothing of the torn record is left after the new one")
        // A long record of which one sector is missing (zeros), followed by a complete record of
        // the same write.
        var long = record(entryBody(index: 7, term: 2, data: [UInt8](repeating: 7, count: 3000)))
        let sectorStart = ((end + 1500) / 512) * 512 - end
        for i in sectorStart..<sectorStart + 512 { long[i] = 0 }
        try write(long + record(entryBody(index: 8, term: 2, data: [8])), to: seg, at: end)
        do {
            let s = try open()
            XCTAssertEqual(try s.load().entries, entries(1...6, term: 2))
            XCTAssertEqual(s.log.activeSize, end)
        }
        // Bytes past the reserved size, after zeros: a write that grew the file.
        try write([1, 2, 3], to: seg)
        let s = try open()
        XCTAssertEqual(try s.load().entries, entries(1...6, term: 2))
        XCTAssertEqual(try s.lastIndex(), 6)
        try s.save(hardState: nil, entries: entries(7...7, term: 2))
        XCTAssertEqual(try s.load().entries, entries(1...7, term: 2))
    }

    /// A damaged record with data after it is not a torn write: refusing to start is better than
    /// dropping acknowledged entries. So is any damage in an older segment, a segment that is not
    /// one, and a gap in the indexes above the snapshot.
    func testDamageIsReported() throws {
        do {
            let s = try open(segmentBytes: 400)
            for i in stride(from: 1, through: 60, by: 5) {
                try s.save(hardState: HardState(term: 1, commit: UInt64(i)), entries: entries(UInt64(i)...UInt64(i + 4), term: 1))
            }
        }
        let segs = try segments()
        XCTAssertGreaterThanOrEqual(segs.count, 4)
        let last = try XCTUnwrap(segs.last)
        let original = try Data(contentsOf: URL(fileURLWithPath: last))
        // One flipped byte inside the newest segment's first record (after its header).
        var flipped = original
        flipped[16 + 12] ^= 0x40
        try flipped.write(to: URL(fileURLWithPath: last))
        assertCorrupt(try open(), "damaged record")
        try original.write(to: URL(fileURLWithPath: last))
        XCTAssertEqual(try open().load().entries.count, 60)
        // A flipped byte in an older segment, in a record and after the records.
        let older = segs[1]
        let olderData = try Data(contentsOf: URL(fileURLWithPath: older))
        var o = olderData
        o[30] ^= 1
        try o.write(to: URL(fileURLWithPath: older))
        assertCorrupt(try open(), "damaged record")
        o = olderData + Data([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        try o.write(to: URL(fileURLWithPath: older))
        assertCorrupt(try open(), "damaged record")
        // A torn end is only forgiven in the newest segment.
        try olderData.prefix(olderData.count / 2 + 3).write(to: URL(fileURLWithPath: older))
        assertCorrupt(try open(), "")
        try olderData.write(to: URL(fileURLWithPath: older))
        // A bad header.
        try Data("not a segment at all, really".utf8).write(to: URL(fileURLWithPath: older))
        assertCorrupt(try open(), "bad header")
        try olderData.write(to: URL(fileURLWithPath: older))
        // A missing segment in the middle: entries were lost.
        try FileManager.default.removeItem(atPath: older)
        assertCorrupt(try open(), "jump")
        try olderData.write(to: URL(fileURLWithPath: older))
        let s = try open(segmentBytes: 400)
        XCTAssertEqual(try s.load().entries, entries(1...60, term: 1))
    }

    /// Segments deleted after a compaction can come back after a machine crash (the unlinks are
    /// not synced) while a later one stays deleted; a gap the snapshot covers is harmless.
    func testGapBelowSnapshotIsHarmless() throws {
        let kept: [(String, Data)]
        let expected: RaftInitialState
        do {
            let s = try open(segmentBytes: 400)
            for i in stride(from: 1, through: 60, by: 5) {
                try s.save(hardState: HardState(term: 1, commit: UInt64(i)), entries: entries(UInt64(i)...UInt64(i + 4), term: 1))
            }
            let segs = try segments()
            kept = try segs.prefix(3).map { ($0, try Data(contentsOf: URL(fileURLWithPath: $0))) }
            try s.compact(snapshot: SnapshotMetadata(index: 50, term: 1, conf: ConfState(voters: ["a"])), data: [5])
            s.waitForCleanup()
            XCTAssertLessThan(try segments().count, segs.count)
            expected = try s.load()
        }
        // Bring back the first segment only.
        try kept[0].1.write(to: URL(fileURLWithPath: kept[0].0))
        let state = try open(segmentBytes: 400).load()
        XCTAssertEqual(state.entries, expected.entries)
        XCTAssertEqual(state.entries.first?.index, 51)
        XCTAssertEqual(state.hardState, expected.hardState)
    }

    /// A received snapshot is recorded in raft.db before the log restarts; a crash in between
    /// leaves the old log with the new row. Entries after the snapshot stay only where the log
    /// agrees with it at its index.
    func testSnapshotRowNewerThanLog() throws {
        for (term, keeps) in [(UInt64(1), true), (UInt64(2), false)] {
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            do {
                let s = try open()
                try s.save(hardState: HardState(term: 1, commit: 6), entries: entries(1...10, term: 1))
                // What `save(snapshot:)` commits first, without the log's reset that follows it.
                let file = try s.writeSnapshotFile(index: 8, data: SnapshotData([8]))
                try s.db.run("INSERT INTO raft_snapshot (k, idx, term, conf, data, file, sha256) VALUES (1, 8, ?, ?, x'', ?, ?)",
                             [.int(Int64(term)), .blob(ConfState(voters: ["a"]).encode()), .text(file.name), .text(file.digest)])
            }
            let st = try open().load()
            XCTAssertEqual(st.snapshot?.metadata.index, 8)
            XCTAssertEqual(st.entries, keeps ? entries(9...10, term: 1) : [], "snapshot term \(term)")
        }
    }

    /// A received snapshot restarts the log in a new segment and deletes the old ones; entries
    /// and the hard state after it survive a reopen, and an index gap after the reset is damage.
    func testReceivedSnapshotRestartsTheLog() throws {
        do {
            let s = try open()
            try s.save(hardState: HardState(term: 1, vote: "b", commit: 4), entries: entries(1...10, term: 1))
            let meta = SnapshotMetadata(index: 30, term: 3, conf: ConfState(voters: ["a", "b"]))
            try s.save(hardState: HardState(term: 3, vote: nil, commit: 30), entries: entries(31...32, term: 3),
                       snapshot: Snapshot(metadata: meta, data: [1, 2]))
            XCTAssertEqual(try segments().count, 1)
            try s.save(hardState: nil, entries: entries(33...33, term: 3))
        }
        let st = try open().load()
        XCTAssertEqual(st.snapshot?.metadata.index, 30)
        XCTAssertEqual(st.entries, entries(31...33, term: 3))
        XCTAssertEqual(st.hardState, HardState(term: 3, vote: nil, commit: 30))
    }

    /// Moving the log out of raft.db's tables: a crash while the new directory is written leaves
    /// the tables in charge (the unfinished directory is written again); a crash after the
    /// rename and before the tables are emptied leaves the directory in charge.
    func testMoveFromTablesSurvivesCrashes() throws {
        func oldDatabase() throws {
            let db = try SQLiteDB(path: path)
            try db.exec("""
                CREATE TABLE raft_hard_state (k INTEGER PRIMARY KEY CHECK (k = 1), term INTEGER NOT NULL, vote TEXT, commit_index INTEGER NOT NULL);
                CREATE TABLE raft_snapshot (k INTEGER PRIMARY KEY CHECK (k = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL, conf BLOB NOT NULL, data BLOB NOT NULL, file TEXT, sha256 TEXT);
                CREATE TABLE raft_log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL);
                INSERT INTO raft_hard_state VALUES (1, 7, 'peer-b', 3);
                """)
            for e in entries(1...4, term: 7) {
                try db.run("INSERT INTO raft_log VALUES (?, ?, 0, ?)", [.int(Int64(e.index)), .int(7), .blob(e.data)])
            }
        }
        try oldDatabase()
        // An unfinished directory from a crash during the move.
        try FileManager.default.createDirectory(atPath: logDir + ".tmp", withIntermediateDirectories: false)
        FileManager.default.createFile(atPath: logDir + ".tmp/0000000000000001.log", contents: Data([1, 2, 3]))
        do {
            let s = try open()
            XCTAssertEqual(try s.load().entries, entries(1...4, term: 7))
            XCTAssertEqual(try s.load().hardState, HardState(term: 7, vote: "peer-b", commit: 3))
            XCTAssertFalse(FileManager.default.fileExists(atPath: logDir + ".tmp"))
            try s.save(hardState: HardState(term: 8, vote: nil, commit: 4), entries: entries(5...5, term: 8))
        }
        // Stale rows next to a finished directory (a crash after the rename): the directory wins.
        do {
            let db = try SQLiteDB(path: path)
            try db.exec("INSERT INTO raft_hard_state VALUES (1, 7, 'peer-b', 3)")
            try db.run("INSERT INTO raft_log VALUES (1, 7, 0, ?)", [.blob([9])])
        }
        let s = try open()
        XCTAssertEqual(try s.load().entries, entries(1...4, term: 7) + entries(5...5, term: 8))
        XCTAssertEqual(try s.load().hardState, HardState(term: 8, vote: nil, commit: 4))
        XCTAssertEqual(try s.db.query("SELECT (SELECT COUNT(*) FROM raft_log) + (SELECT COUNT(*) FROM raft_hard_state)").first?.first?.int, 0)
    }

    /// A record of an unknown type, or an entry too short to hold its index and term, with a
    /// correct checksum: damage (not torn), even at the end of the newest segment.
    func testImplausibleRecordsAreDamage() throws {
        let end: Int
        do {
            let s = try open()
            try s.save(hardState: HardState(term: 1, commit: 1), entries: entries(1...3, term: 1))
            end = s.log.activeSize
        }
        let seg = try XCTUnwrap(try segments().last)
        let original = try Data(contentsOf: URL(fileURLWithPath: seg))
        try write(record([9, 1, 2, 3]), to: seg, at: end)
        assertCorrupt(try open(), "damaged record")
        try original.write(to: URL(fileURLWithPath: seg))
        try write(record([1, 0, 0]), to: seg, at: end)
        assertCorrupt(try open(), "malformed log entry")
        try original.write(to: URL(fileURLWithPath: seg))
        // An entry that skips an index.
        try write(record(entryBody(index: 5, term: 1, data: [5])), to: seg, at: end)
        assertCorrupt(try open(), "jump")
        try original.write(to: URL(fileURLWithPath: seg))
        XCTAssertEqual(try open().load().entries, entries(1...3, term: 1))
    }
}
