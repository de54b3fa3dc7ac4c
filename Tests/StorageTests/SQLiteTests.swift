import Foundation
import XCTest
@testable import Storage

final class SQLiteTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Texts are bound from the string's own bytes: an empty string is '' (not NULL), and
    /// non-ASCII text and embedded NUL bytes arrive whole.
    func testTextBinding() throws {
        let db = try SQLiteDB(path: ":memory:")
        try db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        let values = ["", "a", "grüße 💥", "nul\u{0}inside", String(repeating: "x", count: 10_000)]
        for (i, v) in values.enumerated() { try db.run("INSERT INTO t(k, v) VALUES (?, ?)", [.int(Int64(i)), .text(v)]) }
        XCTAssertEqual(try db.query("SELECT v IS NULL, length(CAST(v AS BLOB)) FROM t WHERE k = 0").first?.map { $0.int }, [0, 0])
        for (i, v) in values.enumerated() {
            let bytes = try db.query("SELECT CAST(v AS BLOB) FROM t WHERE k = ?", [.int(Int64(i))]).first?.first
            guard case .blob(let b)? = bytes else { return XCTFail("row \(i): \(String(describing: bytes))") }
            XCTAssertEqual(b, Array(v.utf8), "row \(i)")
        }
    }

    /// Statements are found by the address of their SQL text; a different text that later sits
    /// at a freed text's address must still get its own statement.
    func testStatementLookupByAddressNeverConfusesTexts() throws {
        let db = try SQLiteDB(path: ":memory:")
        func address(_ s: String) -> UInt { s.utf8.withContiguousStorageIfAvailable { UInt(bitPattern: $0.baseAddress!) } ?? 0 }
        // The same text in storage of its own (and no other allocation on the way).
        func fresh(_ t: String) -> String {
            var s = String()
            s.reserveCapacity(t.utf8.count)
            s.append(contentsOf: t)
            return s
        }
        let one = "SELECT 1 AS n, 'padding past the small-string size' AS pad"
        let two = "SELECT 2 AS n, 'padding past the small-string size' AS pad"
        XCTAssertEqual(try db.query(one).first?.first?.int, 1)
        var reused = 0
        for _ in 0..<200 {
            // A copy of `one` in fresh heap storage: its address is remembered for `one`'s
            // statement, then the copy is freed...
            var copyAddress: UInt = 0
            do {
                let copy = fresh(one)
                copyAddress = address(copy)
                XCTAssertEqual(try db.query(copy).first?.first?.int, 1)
            }
            // ... and a text of the same length, allocated next, usually lands at that address.
            let other = fresh(two)
            if address(other) == copyAddress { reused += 1 }
            XCTAssertEqual(try db.query(other).first?.first?.int, 2)
        }
        XCTAssertGreaterThan(reused, 0, "the allocator never reused an address: this test checked nothing")
    }

    /// A page size given at open applies to a file the call creates; an existing file keeps its own.
    func testPageSizeOfNewFilesOnly() throws {
        let path = dir.appendingPathComponent("p.db").path
        do {
            let db = try SQLiteDB(path: path, pageSize: 8192)
            try db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY)")
            XCTAssertEqual(try db.query("PRAGMA page_size").first?.first?.int, 8192)
        }
        XCTAssertEqual(try SQLiteDB(path: path).query("PRAGMA page_size").first?.first?.int, 8192)
        let old = dir.appendingPathComponent("o.db").path
        try SQLiteDB(path: old).exec("CREATE TABLE t(k INTEGER PRIMARY KEY)")
        let db = try SQLiteDB(path: old, pageSize: 8192)
        XCTAssertEqual(try db.query("PRAGMA page_size").first?.first?.int, 4096)
        try db.exec("INSERT INTO t VALUES (1)")
        XCTAssertEqual(try db.query("SELECT k FROM t").first?.first?.int, 1)
    }

    /// The WAL hook reports the log's frames after every commit; the connection checkpoints by
    /// itself at `autocheckpoint` frames (so the next write restarts the log), as SQLite's own
    /// wal_autocheckpoint did.
    func testWALFrameCounter() throws {
        let db = try SQLiteDB(path: dir.appendingPathComponent("a.db").path, synchronous: "NORMAL")
        let wal = db.observeWAL(autocheckpoint: 0)
        XCTAssertEqual(wal.frames, 0)
        try db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)")
        let afterCreate = wal.frames
        XCTAssertGreaterThan(afterCreate, 0)
        var last = afterCreate
        for i in 0..<20 {
            try db.run("INSERT INTO t VALUES (?, ?)", [.int(Int64(i)), .blob([UInt8](repeating: 7, count: 3000))])
            XCTAssertGreaterThan(wal.frames, last, "each commit adds frames")
            last = wal.frames
        }
        // With a limit, the committing connection checkpoints and the log starts over.
        let db2 = try SQLiteDB(path: dir.appendingPathComponent("b.db").path, synchronous: "NORMAL")
        let wal2 = db2.observeWAL(autocheckpoint: 8)
        try db2.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)")
        var peak = 0
        var restarted = false
        for i in 0..<40 {
            try db2.run("INSERT INTO t VALUES (?, ?)", [.int(Int64(i)), .blob([UInt8](repeating: 7, count: 3000))])
            if wal2.frames < peak { restarted = true }
            peak = max(peak, wal2.frames)
        }
        XCTAssertTrue(restarted, "the log restarted after a checkpoint")
        XCTAssertLessThan(peak, 8 + 4, "never far past the limit (peak \(peak))")
        XCTAssertEqual(try db2.query("SELECT COUNT(*) FROM t").first?.first?.int, 40)
    }

    /// What the ledger's apply connection relies on (Consensus.ledgerWALRewindFrames): a WAL
    /// rewinds only at the commit of a write transaction that began with every frame already
    /// copied into the database. Checkpointed from another connection after the next write
    /// transaction has begun, the log keeps growing; checkpointed by the writer between its
    /// commit and its next BEGIN, it starts over.
    func testWALRewindsOnlyAfterACheckpointBeforeTheNextWriteTransaction() throws {
        let path = dir.appendingPathComponent("r.db").path
        let db = try SQLiteDB(path: path, synchronous: "OFF")
        let other = try SQLiteDB(path: path, synchronous: "OFF")
        let wal = db.observeWAL(autocheckpoint: 0)
        try db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)")
        let blob = [UInt8](repeating: 7, count: 3000)
        var k: Int64 = 0
        func group() throws {
            for _ in 0..<20 {
                try db.run("INSERT INTO t VALUES (?, ?)", [.int(k), .blob(blob)])
                k += 1
            }
        }
        // As under load: the next write transaction begins, then the background checkpoint runs.
        var last = wal.frames
        for _ in 0..<5 {
            try db.exec("BEGIN IMMEDIATE")
            try other.exec("PRAGMA wal_checkpoint(PASSIVE)")
            try group()
            try db.exec("COMMIT")
            XCTAssertGreaterThan(wal.frames, last, "appended, not rewound")
            last = wal.frames
        }
        // The writer checkpoints between its commit and its next BEGIN: the next commit rewinds.
        try db.exec("PRAGMA wal_checkpoint(PASSIVE)")
        try db.exec("BEGIN IMMEDIATE")
        try group()
        try db.exec("COMMIT")
        XCTAssertLessThan(wal.frames, last / 2, "the log started over (\(wal.frames) frames after \(last))")
        XCTAssertEqual(try other.query("SELECT COUNT(*) FROM t").first?.first?.int, k, "nothing lost")
    }

    /// A burst that grew the WAL past `walSizeLimit` (a long read held back its restart) does not
    /// leave the file at that size: once checkpointed, the next write restarts the log and
    /// truncates the file to the limit.
    func testWALFileShrinksAfterABurst() throws {
        let path = dir.appendingPathComponent("w.db").path
        let db = try SQLiteDB(path: path, synchronous: "NORMAL")
        let reader = try SQLiteDB(path: path, synchronous: "NORMAL")
        try db.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)")
        try db.run("INSERT INTO t VALUES (0, x'00')")
        func walSize() throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? NSNumber)?.intValue ?? -1
        }
        // A reader holds its snapshot while many commits go by: the log cannot restart.
        try reader.exec("BEGIN")
        _ = try reader.query("SELECT COUNT(*) FROM t")
        let blob = [UInt8](repeating: 7, count: 4000)
        var k: Int64 = 1
        while try walSize() <= SQLiteDB.walSizeLimit + (4 << 20) {
            try db.transaction {
                for _ in 0..<200 {
                    try db.run("INSERT INTO t VALUES (?, ?)", [.int(k), .blob(blob)])
                    k += 1
                }
            }
        }
        try reader.exec("COMMIT")
        try db.exec("PRAGMA wal_checkpoint(PASSIVE)")
        try db.run("INSERT INTO t VALUES (?, ?)", [.int(k), .blob(blob)])
        XCTAssertLessThanOrEqual(try walSize(), SQLiteDB.walSizeLimit)
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM t").first?.first?.int, k + 1, "nothing lost")
    }
}
