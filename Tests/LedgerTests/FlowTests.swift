import Foundation
import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

final class FlowTests: XCTestCase {
    let owner = Keys.owner, alice = Keys.alice, bob = Keys.bob, mallory = Keys.mallory

    /// A whole collaboration, with some rejections mixed in, ending `completed`.
    func runFlow(_ h: Harness) throws {
        try h.ok(owner, .sessionCreate, "{\"session_id\":\"rel-1\",\"title\":\"Release 1 ✓\",\"steps\":[{\"step_id\":\"build\",\"title\":\"Build\"},{\"step_id\":\"test\",\"title\":\"Test\"},{\"step_id\":\"ship\",\"title\":\"Ship\"}]}")
        try h.ok(alice, .participantJoin, "{\"session_id\":\"rel-1\"}")
        try h.ok(bob, .participantJoin, "{\"session_id\":\"rel-1\"}")
        _ = try h.apply(mallory, .stepClaim, "{\"step_id\":\"build\"}")
        try h.ok(alice, .stepClaim, "{\"step_id\":\"build\"}")
        try h.ok(alice, .artifactAdd, "{\"step_id\":\"build\",\"artifact_id\":\"bin-1\",\"kind\":\"binary\",\"uri\":\"s3://b/p2pos\",\"sha256\":\"\(SHA256.hex(Array("bin".utf8)))\"}")
        try h.ok(alice, .stepResolve, "{\"step_id\":\"build\",\"outcome\":\"built\"}")
        try h.ok(bob, .stepClaim, "{\"step_id\":\"test\"}")
        try h.ok(bob, .stepHandoff, "{\"step_id\":\"test\",\"to\":\"\(alice.publicKey.base64)\"}")
        try h.ok(alice, .artifactAdd, "{\"step_id\":\"test\",\"artifact_id\":\"report-1\",\"kind\":\"report\",\"uri\":\"https://ci/1\"}")
        try h.ok(alice, .stepResolve, "{\"step_id\":\"test\",\"outcome\":\"green\"}")
        try h.ok(owner, .decisionOpen, "{\"step_id\":\"ship\",\"decision_id\":\"go\",\"question\":\"Ship now?\",\"options\":[\"ship\",\"wait\"],\"quorum\":2}")
        try h.ok(alice, .voteCast, "{\"decision_id\":\"go\",\"option\":\"ship\"}")
        _ = try h.apply(alice, .voteCast, "{\"decision_id\":\"go\",\"option\":\"wait\"}")
        try h.ok(bob, .voteCast, "{\"decision_id\":\"go\",\"option\":\"ship\"}")
        try h.ok(bob, .stepClaim, "{\"step_id\":\"ship\"}")
        try h.ok(bob, .stepResolve, "{\"step_id\":\"ship\",\"outcome\":\"ship\"}")
    }

    func testFullCollaborationFlow() throws {
        let h = try Harness()
        try runFlow(h)
        let s = try XCTUnwrap(h.ledger.session(id: "rel-1"))
        XCTAssertEqual(s["status"], .string("completed"))
        XCTAssertEqual(s["participant_count"], .int(3))
        XCTAssertEqual(s["steps"]?.arrayValue?.compactMap { $0["outcome"]?.stringValue }, ["built", "green", "ship"])
        let events = try XCTUnwrap(h.ledger.events(sessionID: "rel-1", after: 0, limit: 1000))["events"]?.arrayValue ?? []
        XCTAssertEqual(events.count, 15, "one event per applied tx, none for the 2 rejections")
        XCTAssertEqual(events.compactMap { $0["seq"]?.intValue }, Array(1...15))
        XCTAssertEqual(events.first?["op"], .string("SESSION_CREATE"))
        XCTAssertEqual(events.first?["actor"], .string(owner.publicKey.base64))
        XCTAssertEqual(events.first?["raft_index"], .int(1))
        XCTAssertEqual(events.first?["ts"], .string(Harness.now.rfc3339Nano))
        XCTAssertEqual(events.first?["tx_id"]?.stringValue?.count, 64)
        XCTAssertEqual(events.last?["op"], .string("STEP_RESOLVE"))
        // Paging.
        let page = try XCTUnwrap(h.ledger.events(sessionID: "rel-1", after: 10, limit: 2))
        XCTAssertEqual(page["events"]?.arrayValue?.compactMap { $0["seq"]?.intValue }, [11, 12])
        XCTAssertEqual(page["next_after"], .int(12))
        XCTAssertNil(try h.ledger.events(sessionID: "nope"))
        let stats = try h.ledger.stats()
        XCTAssertEqual(stats["sessions_completed"], .int(1))
        XCTAssertEqual(stats["steps_resolved"], .int(3))
        XCTAssertEqual(stats["txs_applied"], .int(15))
        XCTAssertEqual(stats["txs_rejected"], .int(2))
        XCTAssertEqual(stats["last_applied_index"], .int(17))
        XCTAssertEqual(stats["votes"], .int(2))
        let ship = try XCTUnwrap(h.ledger.step(id: "ship"))
        XCTAssertEqual(ship["decisions"]?.arrayValue?.first?["votes"], .obj([("ship", .int(2)), ("wait", .int(0))]))
        XCTAssertNil(try h.ledger.step(id: "nope"))
        XCTAssertNil(try h.ledger.session(id: "nope"))
        XCTAssertEqual(try h.ledger.artifacts(stepID: "build")?["artifacts"]?.arrayValue?.count, 1)
    }

    /// Two nodes applying the same entries (one by one, or grouped) end byte-identical.
    func testDeterminism() throws {
        let a = try Harness()
        try runFlow(a)
        let b = try Harness()
        var results: [TxResult] = []
        for chunk in stride(from: 0, to: a.entries.count, by: 5) {
            results += try b.ledger.applyBatch(Array(a.entries[chunk..<min(chunk + 5, a.entries.count)]))
        }
        XCTAssertEqual(results.filter(\.isApplied).count, 15)
        let snapA = try a.ledger.snapshot()
        XCTAssertEqual(snapA, try b.ledger.snapshot())
        for q in [{ (l: Ledger) in try l.stats() }, { try $0.session(id: "rel-1")! }, { try $0.events(sessionID: nil, after: 0, limit: 1000)! },
                  { try $0.step(id: "ship")! }, { try $0.participants(sessionID: "rel-1")! }, { try $0.artifacts(stepID: "build")! }] {
            XCTAssertEqual(try q(a.ledger).canonicalBytes, try q(b.ledger).canonicalBytes)
        }
        // The snapshot is canonical JSON of every ledger table.
        let parsed = try JSONValue.parse(snapA, limits: JSONLimits(maxBytes: Int.max))
        XCTAssertEqual(parsed.canonicalBytes, snapA)
        XCTAssertEqual(parsed["tables"]?.objectValue?.count, Ledger.tables.count)
    }

    /// The snapshot is streamed from the rows; it must be byte-for-byte the canonical encoding of
    /// the same tables built as a value tree — including strings that need escaping.
    func testStreamedSnapshotMatchesValueTree() throws {
        let a = try Harness()
        try runFlow(a)
        let odd = "q\"b\\s/\n\t\r\u{1}\u{1f}\u{7f} é ✓ 🙂 \u{2028}"
        try a.ok(mallory, .sessionCreate, "{\"session_id\":\"odd\",\"title\":\(JSONValue.string(odd).canonicalString),\"steps\":[{\"step_id\":\"odd-1\",\"title\":\"\\u0002x\"}]}")
        let reference = try Harness.snapshotJSON { name in try a.db.query(Harness.v2Form.first { $0.name == name }!.select) }
        let streamed = try a.ledger.snapshot()
        XCTAssertEqual(String(decoding: streamed, as: UTF8.self), String(decoding: reference, as: UTF8.self))
        XCTAssertEqual(streamed, reference)
        XCTAssertTrue(String(decoding: streamed, as: UTF8.self).contains("\\u0001"), "control characters are escaped")
        // Handed out in pieces (as the daemon writes it to its snapshot file): the same bytes,
        // in pieces of about the chunk size.
        for chunk in [1, 64, 1 << 20] {
            var pieces: [[UInt8]] = []
            try a.ledger.snapshot(chunk: chunk) { pieces.append(Array($0)) }
            XCTAssertEqual(Array(pieces.joined()), reference, "chunk \(chunk)")
            XCTAssertFalse(pieces.contains { $0.isEmpty })
            if chunk == 64 { XCTAssertGreaterThan(pieces.count, reference.count / 256, "flushed as it goes") }
        }
        // And it restores to the same state.
        let b = try Harness()
        try b.ledger.restore(streamed)
        XCTAssertEqual(try b.ledger.snapshot(), streamed)
        XCTAssertEqual(try b.ledger.session(id: "odd")?["title"], .string(odd))
    }

    func testSnapshotRestore() throws {
        let a = try Harness()
        try runFlow(a)
        let snap = try a.ledger.snapshot()
        let c = try Harness()
        try c.ok(mallory, .sessionCreate, "{\"session_id\":\"junk\",\"title\":\"x\",\"steps\":[{\"step_id\":\"j\",\"title\":\"J\"}]}")
        try c.ledger.restore(snap)
        XCTAssertEqual(try c.ledger.snapshot(), snap)
        XCTAssertNil(try c.ledger.session(id: "junk"))
        XCTAssertEqual(try c.ledger.lastAppliedIndex(), a.index)
        // Restored state keeps working and keeps idempotency/nonces.
        let replay = try c.ledger.apply(txBytes: a.entries[0].txBytes, raftIndex: a.index + 1)
        XCTAssertTrue(replay.duplicate)
        XCTAssertEqual(replay.raftIndex, 1)
        // The applied index and event sequence continue from the snapshot, not from what c had
        // applied before the restore (the ledger remembers both between batches).
        let eventsInSnapshot = try a.ledger.nextEventSeq() - 1
        let fresh = try c.sign(mallory, .sessionCreate, "{\"session_id\":\"after\",\"title\":\"x\",\"steps\":[{\"step_id\":\"a1\",\"title\":\"A\"}]}")
        let applied = try c.ledger.apply(txBytes: fresh.encoded, raftIndex: a.index + 2)
        XCTAssertEqual(applied.status, .applied)
        XCTAssertEqual(applied.eventSeq, eventsInSnapshot + 1)
        XCTAssertEqual(try c.ledger.lastAppliedIndex(), a.index + 2)
        // Bad snapshots are refused and change nothing.
        XCTAssertThrowsError(try c.ledger.restore(Array("{}".utf8)))
        XCTAssertThrowsError(try c.ledger.restore(Array("{\"format\":\"p2pos-ledger-snapshot/2\",\"tables\":{}}".utf8)))
        XCTAssertThrowsError(try c.ledger.restore(Array("{\"format\":\"p2pos-ledger-snapshot/1\",\"tables\":{}}".utf8)))
        XCTAssertThrowsError(try c.ledger.restore(Array(snap.dropLast())))
        XCTAssertEqual(try c.ledger.lastAppliedIndex(), a.index + 2)
        XCTAssertEqual(try c.ledger.session(id: "rel-1")?["status"], .string("completed"))
    }

    /// Restore reads the snapshot a row at a time; every malformed or truncated snapshot is
    /// refused with a clear error and leaves the state exactly as it was.
    func testRestoreRefusesMalformedSnapshotsAndChangesNothing() throws {
        let a = try Harness()
        try runFlow(a)
        let snap = try a.ledger.snapshot()
        let c = try Harness()
        try c.ok(mallory, .sessionCreate, "{\"session_id\":\"keep\",\"title\":\"x\",\"steps\":[{\"step_id\":\"k\",\"title\":\"K\"}]}")
        let before = try c.ledger.snapshot()
        func refused(_ bytes: [UInt8], _ why: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try c.ledger.restore(bytes), why, file: file, line: line) { e in
                XCTAssertTrue(e is LedgerError, "\(why): \(e)", file: file, line: line)
            }
            XCTAssertEqual(try c.ledger.snapshot(), before, "\(why): state changed", file: file, line: line)
        }
        let text = String(decoding: snap, as: UTF8.self)
        // Every truncation point (sampled) fails.
        for cut in stride(from: 0, to: snap.count, by: max(1, snap.count / 97)) { refused(Array(snap[..<cut]), "cut at \(cut)") }
        refused(snap + Array(" x".utf8), "trailing data")
        refused(Array(text.replacingOccurrences(of: "{\"format\":", with: "{\"format\":\"x\",\"format\":").utf8), "duplicate member")
        refused(Array(text.replacingOccurrences(of: "\"ledger_votes\":[", with: "\"ledger_votes\":[],\"ledger_votes\":[").utf8), "duplicate table")
        refused(Array(text.replacingOccurrences(of: "p2pos-ledger-snapshot/2", with: "p2pos-ledger-snapshot/9").utf8), "other format")
        refused(Array(text.replacingOccurrences(of: "\"ledger_votes\":[", with: "\"ledger_vote\":[").utf8), "a table missing")
        refused(Array(text.replacingOccurrences(of: "\"ledger_meta\":[[", with: "\"ledger_meta\":[[\"extra\",").utf8), "row with too many columns")
        refused(Array(text.replacingOccurrences(of: "\"ledger_meta\":[[", with: "\"ledger_meta\":[[true,").utf8), "a boolean cell")
        refused(Array(text.replacingOccurrences(of: "\"ledger_meta\":[", with: "\"ledger_meta\":[1,").utf8), "a row that is not an array")
        // Nesting is limited (the parser recurses): 8 levels in an ignored member pass, 9 do not.
        refused(Array(text.replacingOccurrences(of: "\"tables\":{", with: "\"note\":[[[[[[[[1]]]]]]]],\"tables\":{").utf8), "nested too deep")
        refused(Array(text.replacingOccurrences(of: "\"tables\":{", with: "\"n\\u00e9\":1,\"ne\\u0301\":1,\"n\\u00e9\":1,\"tables\":{").utf8), "duplicate member")
        // Rows converted on the way in: a signer must be base64 text and a tx_id 64 lowercase
        // hex digits.
        refused(Array(text.replacingOccurrences(of: alice.publicKey.base64, with: "alice's key").utf8), "a signer that is not base64")
        let txID = try Tx.decodeUnverified(a.entries[0].txBytes).txID
        refused(Array(text.replacingOccurrences(of: txID, with: txID.uppercased()).utf8), "a tx_id in capitals")
        refused(Array(text.replacingOccurrences(of: txID, with: String(txID.dropLast(2))).utf8), "a short tx_id")
        refused(Array("[]".utf8), "not an object")
        refused([], "empty")
        // Unknown members and unknown tables are ignored, as before; keys that differ only in
        // their Unicode form are different keys (compared byte for byte, as the parser does).
        let extra = Array(text.replacingOccurrences(of: "\"tables\":{", with: "\"note\":[[[[[[[1]]]]]]],\"n\\u00e9\":1,\"ne\\u0301\":1,\"tables\":{\"ledger_future\":[[1,2]],").utf8)
        try c.ledger.restore(extra)
        XCTAssertEqual(try c.ledger.snapshot(), snap)
    }

    func testRestartResumesAndStaleIndexes() throws {
        let path = try temporaryDBPath("state.db")
        var entries: [LedgerEntry] = []
        do {
            let h = try Harness(path: path)
            try h.ok(owner, .sessionCreate, "{\"session_id\":\"s\",\"title\":\"t\",\"steps\":[{\"step_id\":\"x\",\"title\":\"X\"}]}")
            try h.ok(alice, .participantJoin, "{\"session_id\":\"s\"}")
            try h.ledger.markApplied(raftIndex: 5)
            try h.ledger.markApplied(raftIndex: 4)
            entries = h.entries
        }
        let h2 = try Harness(path: path)
        XCTAssertEqual(try h2.ledger.lastAppliedIndex(), 5)
        XCTAssertEqual(h2.index, 5)
        // Re-delivered entries at or below the applied index change nothing and report the original.
        let again = try h2.ledger.apply(txBytes: entries[1].txBytes, raftIndex: 2)
        XCTAssertTrue(again.duplicate)
        XCTAssertEqual(again.raftIndex, 2)
        XCTAssertEqual(try h2.ledger.lastAppliedIndex(), 5)
        let fresh = try h2.sign(bob, .participantJoin, "{\"session_id\":\"s\"}")
        let stale = try h2.ledger.apply(txBytes: fresh.encoded, raftIndex: 3)
        XCTAssertEqual(stale.status, .rejected)
        XCTAssertNil(try h2.ledger.result(of: fresh), "a stale entry is not applied")
        XCTAssertEqual(try h2.applyBytes(fresh.encoded).status, .applied)
        XCTAssertEqual(try h2.ledger.lastAppliedIndex(), 6)
    }
}

extension FlowTests {
    /// Deferred commits: results come from the open transaction; a crash before the commit
    /// loses that part, and replaying the same entries (as Raft does after a restart) gives the
    /// same results and the same state.
    func testDeferredCommitCrashReplaysToTheSameState() throws {
        let path = try temporaryDBPath("state.db")
        // Reference: the whole flow applied with a commit per entry.
        let ref = try Harness()
        try runFlow(ref)
        let entries = ref.entries
        let split = entries.count / 2
        var firstResults: [TxResult] = []
        do {
            let db = try SQLiteDB(path: path, synchronous: "NORMAL")
            let l = try Ledger(db: db, clusterID: Harness.cluster)
            // A second connection (opened first: opening writes the schema) sees only commits.
            let other = try Ledger(db: try SQLiteDB(path: path, synchronous: "NORMAL"), clusterID: Harness.cluster)
            l.deferCommits = true
            _ = try l.currentCounters()
            firstResults += try l.applyBatch(Array(entries[..<split]))
            XCTAssertNotNil(l.pendingSince)
            try l.commitPending()
            XCTAssertNil(l.pendingSince)
            firstResults += try l.applyBatch(Array(entries[split...]))
            XCTAssertEqual(l.pendingEntries, entries.count - split)
            XCTAssertEqual(try l.lastAppliedIndex(), UInt64(entries.count), "this connection sees its own applied state")
            XCTAssertEqual(try other.lastAppliedIndex(), UInt64(split))
            XCTAssertEqual(try l.currentCounters(), try LedgerCounters.count(l.db), "counts kept through batches match the tables")
            XCTAssertEqual(try l.currentCounters(), try LedgerCounters.count(ref.db))
            // "Crash": the connection goes away without COMMIT.
        }
        let db = try SQLiteDB(path: path, synchronous: "NORMAL")
        let l = try Ledger(db: db, clusterID: Harness.cluster)
        XCTAssertEqual(try l.lastAppliedIndex(), UInt64(split), "the uncommitted part is gone")
        let replay = try l.applyBatch(Array(entries[split...]))
        XCTAssertEqual(replay.map(\.status), Array(firstResults[split...]).map(\.status))
        XCTAssertEqual(replay.map(\.code), Array(firstResults[split...]).map(\.code))
        XCTAssertEqual(replay.map(\.eventSeq), Array(firstResults[split...]).map(\.eventSeq))
        XCTAssertEqual(try l.snapshot(), try ref.ledger.snapshot(), "same state as applying everything once")
        // markApplied and restore work with a transaction open.
        l.deferCommits = true
        try l.markApplied(raftIndex: UInt64(entries.count + 1))
        try l.restore(try ref.ledger.snapshot())
        XCTAssertNil(l.pendingSince)
        XCTAssertEqual(try l.snapshot(), try ref.ledger.snapshot())
    }
}

final class LedgerFuzzTests: XCTestCase {
    /// Mutated txs never crash decode or apply; anything applied is the original tx.
    func testMutatedTxsNeverCrashOrForge() throws {
        let h = try Harness()
        try h.ok(Keys.owner, .sessionCreate, "{\"session_id\":\"s\",\"title\":\"t\",\"steps\":[{\"step_id\":\"x\",\"title\":\"X\"}]}")
        let tx = try h.sign(Keys.owner, .stepClaim, "{\"step_id\":\"x\"}")
        let base = Array(tx.envelope.prettyString.utf8)
        var rng = SplitMix64(seed: 99)
        var applied = 0
        for _ in 0..<1500 {
            var b = base
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let pos = Int(rng.next() % UInt64(b.count))
                switch rng.next() % 3 {
                case 0: b[pos] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: pos)
                default: b.remove(at: pos)
                }
            }
            let r = try h.applyBytes(b)
            if r.status == .applied || r.duplicate {
                applied += 1
                XCTAssertEqual(r.txID, tx.txID, "only the original tx can be applied")
            }
        }
        XCTAssertEqual(try h.ledger.stats()["events"], .int(applied > 0 ? 2 : 1))
    }
}
