import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

/// What the applying instance remembers between batches (the applied index, the next event
/// sequence, the row counts) stays equal to what the tables say: after failed writes, mixed
/// batches and restores.
final class CacheTests: XCTestCase {
    func setup(_ h: Harness) throws {
        try h.ok(Keys.owner, .sessionCreate, "{\"session_id\":\"s\",\"title\":\"t\",\"steps\":[{\"step_id\":\"x\",\"title\":\"X\"}]}")
        try h.ok(Keys.owner, .stepClaim, "{\"step_id\":\"x\"}")
    }

    /// A trigger makes the artifact insert fail: a storage error, not a rejection.
    func breakArtifacts(_ h: Harness) throws {
        try h.db.exec("CREATE TEMP TRIGGER boom BEFORE INSERT ON ledger_artifacts BEGIN SELECT RAISE(ABORT, 'boom'); END")
    }

    func testFailedWriteForgetsWhatItRemembered() throws {
        let h = try Harness()
        try setup(h)
        try breakArtifacts(h)
        let t = try h.sign(Keys.owner, .artifactAdd, "{\"step_id\":\"x\",\"artifact_id\":\"a\",\"kind\":\"k\",\"uri\":\"u\"}")
        XCTAssertThrowsError(try h.ledger.apply(txBytes: t.encoded, raftIndex: 3))
        XCTAssertNil(h.ledger.counters)
        XCTAssertEqual(try h.ledger.lastAppliedIndex(), 2)
        try h.db.exec("DROP TRIGGER boom")
        let r = try h.ledger.apply(txBytes: t.encoded, raftIndex: 3)
        XCTAssertEqual(r.status, .applied)
        XCTAssertEqual(r.eventSeq, 3)
        XCTAssertEqual(try h.ledger.currentCounters(), try LedgerCounters.count(h.db))
    }

    func testFailedDeferredBatchRollsBackEarlierBatchesAndForgets() throws {
        let h = try Harness()
        try setup(h)
        try breakArtifacts(h)
        h.ledger.deferCommits = true
        let j = try h.sign(Keys.alice, .participantJoin, "{\"session_id\":\"s\"}")
        _ = try h.ledger.applyBatch([LedgerEntry(raftIndex: 3, txBytes: j.encoded)])
        XCTAssertNotNil(h.ledger.counters)
        let t = try h.sign(Keys.owner, .artifactAdd, "{\"step_id\":\"x\",\"artifact_id\":\"a\",\"kind\":\"k\",\"uri\":\"u\"}")
        XCTAssertThrowsError(try h.ledger.applyBatch([LedgerEntry(raftIndex: 4, txBytes: t.encoded)]))
        XCTAssertNil(h.ledger.counters)
        XCTAssertNil(h.ledger.pendingSince)
        XCTAssertEqual(try h.ledger.lastAppliedIndex(), 2, "the uncommitted batch at 3 is rolled back too")
        try h.db.exec("DROP TRIGGER boom")
        _ = try h.ledger.currentCounters()
        let rs = try h.ledger.applyBatch([LedgerEntry(raftIndex: 3, txBytes: j.encoded), LedgerEntry(raftIndex: 4, txBytes: t.encoded)])
        XCTAssertEqual(rs.map(\.eventSeq), [3, 4])
        XCTAssertEqual(try h.ledger.currentCounters(), try LedgerCounters.count(h.db))
        try h.ledger.commitPending()
    }

    /// One deferred batch with applied, rejected, REPLAYED and duplicate txs, `appliedThrough`
    /// and `markApplied`: the same counts as applying one by one.
    func testMixedBatchKeepsCounts() throws {
        let a = try Harness()
        try setup(a)
        let b = try Harness()
        _ = try b.ledger.applyBatch(a.entries)
        try a.ok(Keys.owner, .artifactAdd, "{\"step_id\":\"x\",\"artifact_id\":\"a\",\"kind\":\"k\",\"uri\":\"u\"}")
        try a.reject(.notParticipant, Keys.alice, .stepClaim, "{\"step_id\":\"x\"}")
        try a.ok(Keys.owner, .stepResolve, "{\"step_id\":\"x\",\"outcome\":\"o\"}")
        try a.apply(Keys.owner, .stepResolve, "{\"step_id\":\"x\",\"outcome\":\"o\"}")
        try a.apply(Keys.owner, .stepResolve, "{\"step_id\":\"x\",\"outcome\":\"o\"}", nonce: "n1")
        let rest = Array(a.entries[2...]) + [a.entries[3]]
        b.ledger.deferCommits = true
        _ = try b.ledger.applyBatch(rest, appliedThrough: 10)
        try b.ledger.markApplied(raftIndex: 11)
        XCTAssertEqual(try b.ledger.currentCounters(), try LedgerCounters.count(b.db))
        XCTAssertEqual(try b.ledger.currentCounters(), try LedgerCounters.count(a.db))
        XCTAssertEqual(try b.ledger.currentCounters().txsRejected, 3)
        try b.ledger.commitPending()
        XCTAssertEqual(try b.ledger.lastAppliedIndex(), 11)
    }

    func testRestoreRecountsWithATransactionOpen() throws {
        let a = try Harness()
        try setup(a)
        try a.ok(Keys.owner, .stepResolve, "{\"step_id\":\"x\",\"outcome\":\"o\"}")
        let snap = try a.ledger.snapshot()
        let b = try Harness()
        b.ledger.deferCommits = true
        try b.ok(Keys.mallory, .sessionCreate, "{\"session_id\":\"junk\",\"title\":\"x\",\"steps\":[{\"step_id\":\"j\",\"title\":\"J\"}]}")
        XCTAssertNotNil(b.ledger.pendingSince)
        try b.ledger.restore(snap)
        XCTAssertNotNil(b.ledger.counters, "counted during the restore, not at the next stats request")
        XCTAssertEqual(try b.ledger.currentCounters(), try LedgerCounters.count(a.db))
        XCTAssertEqual(try b.ledger.currentCounters().sessionsCompleted, 1)
    }

    /// `add` (written out field by field for speed) covers every counted column.
    func testAddCoversEveryColumn() {
        var d = LedgerCounters()
        for (i, c) in LedgerCounters.columns.enumerated() { d[keyPath: c.field] = Int64(i + 1) }
        var sum = d
        sum.add(d)
        for (i, c) in LedgerCounters.columns.enumerated() { XCTAssertEqual(sum[keyPath: c.field], 2 * Int64(i + 1), c.name) }
        XCTAssertEqual(LedgerCounters.columns.count, 14)
    }

    /// An instance that does not apply (another connection) counts on every request, so it
    /// never answers from counts that the applying connection has moved past.
    func testNonApplyingInstanceCountsEveryTime() throws {
        let path = try temporaryDBPath("state.db")
        let h = try Harness(path: path)
        let reader = try Ledger(db: try SQLiteDB(path: path, synchronous: "NORMAL"), clusterID: Harness.cluster)
        XCTAssertEqual(try reader.currentCounters().sessions, 0)
        try setup(h)
        XCTAssertEqual(try reader.currentCounters().sessions, 1)
        XCTAssertEqual(try reader.currentCounters().stepsClaimed, 1)
        XCTAssertNil(reader.counters)
    }
}

/// The signature memo answers only for the exact (tx_id, signature) pair it verified.
final class SignatureMemoTests: XCTestCase {
    func testForgedSignatureWithSameTxIDAndSameHashBytesIsNotAHit() throws {
        let h = try Harness()
        let good = try h.sign(Keys.owner, .sessionCreate, "{\"session_id\":\"memo\",\"title\":\"t\",\"steps\":[{\"step_id\":\"m\",\"title\":\"M\"}]}")
        let memo = SignatureMemo()
        XCTAssertNoThrow(try memo.verify(good))
        // Same envelope and tx_id; the signature keeps its first 8 bytes (the memo's hash input)
        // and differs only after them.
        var sig = good.signature
        sig[40] ^= 0x01
        var o = good.envelope.objectValue!
        o["signature"] = .string(Base64.encode(sig))
        let forged = try Tx.decodeUnverified(JSONValue.object(o).canonicalBytes)
        XCTAssertEqual(forged.txID, good.txID)
        XCTAssertEqual(SignatureMemo.key(forged).hashValue, SignatureMemo.key(good).hashValue)
        XCTAssertThrowsError(try memo.verify(forged)) { XCTAssertEqual(($0 as? TxRejection)?.code, .badSignature) }
        XCTAssertEqual(memo.count, 1)
        // The good pair is still known, and forgetting it forgets only it.
        XCTAssertNoThrow(try memo.verify(good))
        memo.forget(good)
        XCTAssertEqual(memo.count, 0)
    }

    /// A cached statement run again with fewer parameters reads NULL for the missing ones, not
    /// the previous call's values (bindings are cleared only in that case).
    func testStatementReuseWithFewerParametersBindsNull() throws {
        let db = try SQLiteDB(path: ":memory:")
        let sql = "SELECT ? IS NULL, ? IS NULL"
        XCTAssertEqual(try db.query(sql, [.int(1), .int(2)]).first, [.int(0), .int(0)])
        XCTAssertEqual(try db.query(sql, [.int(1)]).first, [.int(0), .int(1)])
        XCTAssertEqual(try db.queryText("SELECT 'x' WHERE ?", [.int(1)]), "x")
        XCTAssertNil(try db.queryText("SELECT 'x' WHERE ?", [.int(0)]))
        XCTAssertTrue(try db.queryExists("SELECT 1 WHERE ?", [.int(1)]))
        XCTAssertFalse(try db.queryExists("SELECT 1 WHERE ?", [.int(0)]))
    }
}
