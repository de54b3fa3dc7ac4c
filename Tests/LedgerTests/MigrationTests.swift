import Foundation
import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

/// Older ledgers are upgraded to the current schema version 3 — a ledger file of version 1
/// (records keyed by tx_id, nonces in their own table) or 2 (tx_ids and signers as text) when it
/// is opened, a version-1 snapshot when it is restored — and come out exactly as if version 3 had
/// applied the same entries. Snapshots keep the version-2 form either way.
final class MigrationTests: XCTestCase {
    let owner = Keys.owner, alice = Keys.alice, bob = Keys.bob, mallory = Keys.mallory

    /// The version-2 schema (as p2pos wrote it before version 3), for building version-2 files.
    static let v2Schema = """
    CREATE TABLE IF NOT EXISTS ledger_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_sessions(
        session_id TEXT PRIMARY KEY, title TEXT NOT NULL, owner TEXT NOT NULL, status TEXT NOT NULL,
        step_count INTEGER NOT NULL, resolved_count INTEGER NOT NULL,
        created_index INTEGER NOT NULL, completed_index INTEGER, created_tx TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_participants(
        session_id TEXT NOT NULL, actor TEXT NOT NULL, joined_index INTEGER NOT NULL,
        PRIMARY KEY(session_id, actor)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_steps(
        step_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, position INTEGER NOT NULL, title TEXT NOT NULL,
        status TEXT NOT NULL, claimant TEXT, outcome TEXT, updated_index INTEGER NOT NULL,
        resolved_index INTEGER) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_steps_by_session ON ledger_steps(session_id, position);
    CREATE TABLE IF NOT EXISTS ledger_artifacts(
        artifact_id TEXT PRIMARY KEY, step_id TEXT NOT NULL, kind TEXT NOT NULL, uri TEXT NOT NULL,
        sha256 TEXT, added_by TEXT NOT NULL, added_index INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_artifacts_by_step ON ledger_artifacts(step_id, added_index);
    CREATE TABLE IF NOT EXISTS ledger_decisions(
        decision_id TEXT PRIMARY KEY, step_id TEXT NOT NULL, question TEXT NOT NULL, options TEXT NOT NULL,
        quorum INTEGER NOT NULL, status TEXT NOT NULL, outcome TEXT, opened_by TEXT NOT NULL,
        opened_index INTEGER NOT NULL, decided_index INTEGER) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_decisions_by_step ON ledger_decisions(step_id, opened_index);
    CREATE TABLE IF NOT EXISTS ledger_votes(
        decision_id TEXT NOT NULL, voter TEXT NOT NULL, option TEXT NOT NULL, cast_index INTEGER NOT NULL,
        PRIMARY KEY(decision_id, voter)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_events(
        seq INTEGER PRIMARY KEY, raft_index INTEGER NOT NULL, op TEXT NOT NULL, actor TEXT NOT NULL,
        tx_id TEXT NOT NULL, session_id TEXT NOT NULL, ts TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ledger_events_by_session ON ledger_events(session_id, seq);
    CREATE TABLE IF NOT EXISTS ledger_applied(
        seq INTEGER PRIMARY KEY, tx_key INTEGER NOT NULL, tx_id TEXT NOT NULL, raft_index INTEGER NOT NULL,
        signer TEXT NOT NULL, nonce_key INTEGER, nonce TEXT, status TEXT NOT NULL, code TEXT,
        message TEXT NOT NULL, event_seq INTEGER);
    DROP INDEX IF EXISTS ledger_applied_by_tx;
    CREATE INDEX IF NOT EXISTS ledger_applied_replayed_by_tx ON ledger_applied(tx_key) WHERE nonce_key IS NULL;
    CREATE INDEX IF NOT EXISTS ledger_applied_by_nonce ON ledger_applied(nonce_key) WHERE nonce_key IS NOT NULL;
    """

    /// Records of every kind: applied, rejected by a rule (it holds its nonce), REPLAYED (it does
    /// not), and one signer's nonce reused by another signer.
    func fill(_ h: Harness) throws {
        try h.ok(owner, .sessionCreate, "{\"session_id\":\"s1\",\"title\":\"t\",\"steps\":[{\"step_id\":\"a\",\"title\":\"A\"},{\"step_id\":\"b\",\"title\":\"B\"}]}")
        try h.ok(alice, .participantJoin, "{\"session_id\":\"s1\"}")
        XCTAssertEqual(try h.apply(alice, .participantJoin, "{\"session_id\":\"s1\"}", nonce: "j2").code, .alreadyExists)
        XCTAssertEqual(try h.apply(alice, .stepClaim, "{\"step_id\":\"a\"}", nonce: "j2").code, .replayed)
        try h.ok(bob, .participantJoin, "{\"session_id\":\"s1\"}")
        XCTAssertEqual(try h.apply(mallory, .stepClaim, "{\"step_id\":\"a\"}", nonce: "m1").code, .notParticipant)
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
    }

    /// Rewrite the current ledger file into the version-2 layout (what p2pos wrote before version
    /// 3): the tables of `v2Schema`, filled with the rows read in the version-2 form by
    /// `Harness.v2Form` (joins, not the code under test).
    func downgradeToV2(_ db: SQLiteDB) throws {
        var rows: [String: [[SQLValue]]] = [:]
        for t in Harness.v2Form { rows[t.name] = try db.query(t.select) }
        try db.exec("BEGIN")
        for t in Ledger.storedTables { try db.exec("DROP TABLE \(t)") }
        try db.exec(MigrationTests.v2Schema)
        for (t, rs) in rows {
            for r in rs { try db.run(Ledger.insertSQL(t, columns: r.count), r) }
        }
        try db.exec("COMMIT")
        XCTAssertEqual(try db.queryText("SELECT value FROM ledger_meta WHERE key = 'schema_version'"), "2")
    }

    /// The snapshot version 2 made of a version-2 file: every table in primary-key order.
    func v2Snapshot(_ db: SQLiteDB) throws -> [UInt8] {
        let orderBy = ["ledger_meta": "key", "ledger_sessions": "session_id", "ledger_participants": "session_id, actor",
                       "ledger_steps": "step_id", "ledger_artifacts": "artifact_id", "ledger_decisions": "decision_id",
                       "ledger_votes": "decision_id, voter", "ledger_events": "seq", "ledger_applied": "seq"]
        return try Harness.snapshotJSON { name in try db.query("SELECT * FROM \(name) ORDER BY \(orderBy[name]!)") }
    }

    /// Rewrite the current ledger file into the version-1 layout.
    func downgradeToV1(_ db: SQLiteDB) throws {
        try downgradeToV2(db)
        try db.exec("""
            BEGIN;
            CREATE TABLE old_applied(tx_id TEXT PRIMARY KEY, raft_index INTEGER NOT NULL, signer TEXT NOT NULL, status TEXT NOT NULL,
                code TEXT, message TEXT NOT NULL, event_seq INTEGER) WITHOUT ROWID;
            INSERT INTO old_applied SELECT tx_id, raft_index, signer, status, code, message, event_seq FROM ledger_applied;
            CREATE TABLE ledger_nonces(signer TEXT NOT NULL, nonce TEXT NOT NULL, tx_id TEXT NOT NULL, PRIMARY KEY(signer, nonce)) WITHOUT ROWID;
            INSERT INTO ledger_nonces SELECT signer, nonce, tx_id FROM ledger_applied WHERE nonce IS NOT NULL;
            DROP TABLE ledger_applied;
            ALTER TABLE old_applied RENAME TO ledger_applied;
            UPDATE ledger_meta SET value = '1' WHERE key = 'schema_version';
            COMMIT;
            """)
    }

    /// A version-2 snapshot rewritten as a version-1 snapshot of the same state.
    func v1Snapshot(of snap: [UInt8]) throws -> [UInt8] {
        let v = try JSONValue.parse(snap, limits: JSONLimits(maxBytes: Int.max))
        var tables = try XCTUnwrap(v["tables"]?.objectValue)
        let rows = try XCTUnwrap(tables["ledger_applied"]?.arrayValue).map { try XCTUnwrap($0.arrayValue) }
        // v2 columns: seq, tx_key, tx_id, raft_index, signer, nonce_key, nonce, status, code, message, event_seq
        tables["ledger_applied"] = .array(rows.map { r in .array([r[2], r[3], r[4], r[7], r[8], r[9], r[10]]) }
            .sorted { Array($0.arrayValue![0].stringValue!.utf8).lexicographicallyPrecedes(Array($1.arrayValue![0].stringValue!.utf8)) })
        tables["ledger_nonces"] = .array(rows.filter { $0[6] != .null }.map { r in .array([r[4], r[6], r[2]]) }
            .sorted { a, b in
                let x = a.arrayValue!.map { $0.stringValue! }, y = b.arrayValue!.map { $0.stringValue! }
                return Array(x[0].utf8).lexicographicallyPrecedes(Array(y[0].utf8))
                    || (x[0] == y[0] && Array(x[1].utf8).lexicographicallyPrecedes(Array(y[1].utf8)))
            })
        tables["ledger_meta"] = .array(try XCTUnwrap(tables["ledger_meta"]?.arrayValue).map { r in
            r.arrayValue?.first == .string("schema_version") ? .array([.string("schema_version"), .string("1")]) : r
        })
        return JSONValue.obj([("format", .string("p2pos-ledger-snapshot/1")), ("tables", .object(tables))]).canonicalBytes
    }

    /// The replay protections work on a ledger: the first entry answers with its original result,
    /// and new txs reusing a held nonce are refused (another signer may use the same nonce).
    func checkProtections(_ h: Harness, _ source: Harness, file: StaticString = #filePath, line: UInt = #line) throws {
        let again = try h.applyBytes(source.entries[0].txBytes)
        XCTAssertTrue(again.duplicate, file: file, line: line)
        XCTAssertEqual(again.raftIndex, 1, file: file, line: line)
        // Rejected by rules, mallory's claim holds "m1" and alice's second join "j2".
        XCTAssertEqual(try h.apply(mallory, .participantJoin, "{\"session_id\":\"s1\"}", nonce: "m1").code, .replayed, file: file, line: line)
        XCTAssertEqual(try h.apply(alice, .stepRelease, "{\"step_id\":\"a\"}", nonce: "j2").code, .replayed, file: file, line: line)
        XCTAssertEqual(try h.apply(bob, .stepClaim, "{\"step_id\":\"b\"}", nonce: "m1").status, .applied, file: file, line: line)
    }

    func testV1LedgerFileIsUpgradedOnOpen() throws {
        let path = try temporaryDBPath("ledger.db")
        let source = try Harness(path: path)
        try fill(source)
        let expected = try source.ledger.snapshot()
        try downgradeToV1(source.db)
        XCTAssertEqual(try source.db.queryText("SELECT value FROM ledger_meta WHERE key = 'schema_version'"), "1")

        let h = try Harness(path: path)
        XCTAssertEqual(try h.ledger.snapshot(), expected, "the upgraded ledger is the one version 3 would have built")
        try checkUpgraded(h.db)
        try checkProtections(h, source)
        // Opening again changes nothing.
        let after = try h.ledger.snapshot()
        XCTAssertEqual(try Harness(path: path).ledger.snapshot(), after)
    }

    /// An upgraded file: at the current version, with the current tables and indexes and nothing else.
    func checkUpgraded(_ db: SQLiteDB, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try db.queryText("SELECT value FROM ledger_meta WHERE key = 'schema_version'"), Ledger.schemaVersion, file: file, line: line)
        XCTAssertEqual(try db.queryText("PRAGMA integrity_check"), "ok", file: file, line: line)
        let fresh = try SQLiteDB(path: ":memory:")
        _ = try Ledger(db: fresh, clusterID: Harness.cluster)
        let objects = "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        XCTAssertEqual(try db.query(objects), try fresh.query(objects), "the same tables and indexes as a new ledger", file: file, line: line)
    }

    func testV2LedgerFileIsUpgradedOnOpen() throws {
        let path = try temporaryDBPath("ledger.db")
        let source = try Harness(path: path)
        try fill(source)
        let expected = try source.ledger.snapshot()
        try downgradeToV2(source.db)
        XCTAssertEqual(try v2Snapshot(source.db), expected, "version 3's snapshot is the one version 2 made of the same rows")
        // A version-2 file from before the tx_id index became partial has the full one.
        try source.db.exec("DROP INDEX ledger_applied_replayed_by_tx; CREATE INDEX ledger_applied_by_tx ON ledger_applied(tx_key)")
        XCTAssertEqual(try source.db.queryText("SELECT typeof(tx_id) FROM ledger_applied LIMIT 1"), "text")

        let h = try Harness(path: path)
        XCTAssertEqual(try h.ledger.snapshot(), expected, "the upgraded ledger is the one version 3 would have built")
        try checkUpgraded(h.db)
        XCTAssertEqual(try h.db.query("PRAGMA freelist_count"), [[.int(0)]], "the old tables' pages were given back")
        try checkProtections(h, source)
        XCTAssertEqual(try h.applyBytes(source.entries[3].txBytes).code, .replayed, "the REPLAYED record answers its retry")
        let after = try h.ledger.snapshot()
        XCTAssertEqual(try Harness(path: path).ledger.snapshot(), after, "opening again changes nothing")
    }

    /// An upgrade that meets a bad row is refused and leaves the file as it was.
    func testFailedUpgradeChangesNothing() throws {
        let path = try temporaryDBPath("ledger.db")
        let source = try Harness(path: path)
        try fill(source)
        try downgradeToV2(source.db)
        try source.db.exec("UPDATE ledger_applied SET tx_key = tx_key + 1 WHERE seq = 2")
        let objects = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        let before = try source.db.query(objects)
        let rows = try source.db.query("SELECT * FROM ledger_applied ORDER BY seq")
        XCTAssertThrowsError(try Harness(path: path)) { e in
            XCTAssertTrue("\(e)".contains("tx_key that does not match"), "\(e)")
        }
        XCTAssertEqual(try source.db.query(objects), before)
        XCTAssertEqual(try source.db.query("SELECT * FROM ledger_applied ORDER BY seq"), rows)
        XCTAssertEqual(try source.db.queryText("SELECT value FROM ledger_meta WHERE key = 'schema_version'"), "2")
    }

    func testLedgerOfUnknownVersionIsRefused() throws {
        let path = try temporaryDBPath("ledger.db")
        let source = try Harness(path: path)
        try fill(source)
        try source.db.exec("UPDATE ledger_meta SET value = '4' WHERE key = 'schema_version'")
        XCTAssertThrowsError(try Harness(path: path)) { e in
            XCTAssertTrue("\(e)".contains("schema version 4"), "\(e)")
        }
    }

    /// Version 3 stores a tx_id as its 32 bytes and a signer as a small id, everywhere a tx
    /// leaves them; the queries and the snapshot still show hex and public keys.
    func testRowsAreNarrow() throws {
        let h = try Harness()
        try fill(h)
        XCTAssertEqual(try h.db.query("SELECT DISTINCT typeof(tx_id), length(tx_id), typeof(signer_id) FROM ledger_applied"), [[.text("blob"), .int(32), .text("integer")]])
        XCTAssertEqual(try h.db.query("SELECT DISTINCT typeof(tx_id), length(tx_id), typeof(actor_id) FROM ledger_events"), [[.text("blob"), .int(32), .text("integer")]])
        XCTAssertEqual(try h.db.query("SELECT DISTINCT typeof(created_tx), typeof(owner_id) FROM ledger_sessions"), [[.text("blob"), .text("integer")]])
        // One row per signer ever recorded, in the order first recorded.
        XCTAssertEqual(try h.db.query("SELECT signer FROM ledger_signers ORDER BY id").compactMap { $0[0].text },
                       [owner, alice, bob, mallory].map(\.publicKey.base64))
        let first = try XCTUnwrap(h.ledger.events(sessionID: "s1")?["events"]?.arrayValue?.first)
        XCTAssertEqual(first["actor"], .string(owner.publicKey.base64))
        XCTAssertEqual(first["tx_id"], .string(try Tx.decodeUnverified(h.entries[0].txBytes).txID))
        XCTAssertEqual(try h.ledger.session(id: "s1")?["created_tx"], first["tx_id"])
        XCTAssertEqual(try h.ledger.session(id: "s1")?["owner"], .string(owner.publicKey.base64))
        XCTAssertEqual(try h.ledger.step(id: "a")?["claimant"], .string(alice.publicKey.base64))
        // A handoff to a key this ledger never saw (no id) and to one it saw that did not join.
        try h.reject(.notParticipant, alice, .stepHandoff, "{\"step_id\":\"a\",\"to\":\"\(Keys.key(9).publicKey.base64)\"}")
        try h.reject(.notParticipant, alice, .stepHandoff, "{\"step_id\":\"a\",\"to\":\"\(mallory.publicKey.base64)\"}")
        XCTAssertEqual(try h.db.query("SELECT count(*) FROM ledger_signers"), [[.int(4)]], "an unknown handoff target is not added")
        try h.ok(alice, .stepHandoff, "{\"step_id\":\"a\",\"to\":\"\(bob.publicKey.base64)\"}")
        XCTAssertEqual(try h.ledger.step(id: "a")?["claimant"], .string(bob.publicKey.base64))
    }

    func testV1SnapshotIsRestoredAndConverted() throws {
        let source = try Harness()
        try fill(source)
        let snap = try source.ledger.snapshot()
        let old = try v1Snapshot(of: snap)
        XCTAssertTrue(String(decoding: old, as: UTF8.self).contains("\"ledger_nonces\":[["))
        let h = try Harness()
        try h.ok(mallory, .sessionCreate, "{\"session_id\":\"junk\",\"title\":\"x\",\"steps\":[{\"step_id\":\"j\",\"title\":\"J\"}]}")
        try h.ledger.restore(old)
        XCTAssertEqual(try h.ledger.snapshot(), snap)
        XCTAssertFalse(try h.db.queryExists("SELECT 1 FROM sqlite_temp_master WHERE name LIKE 'v1_%'"), "temporary tables are gone")
        h.index = try h.ledger.lastAppliedIndex()
        try checkProtections(h, source)

        // A version-1 snapshot that is not one is refused and changes nothing.
        let before = try h.ledger.snapshot()
        let text = String(decoding: old, as: UTF8.self)
        for (bad, why) in [
            (text.replacingOccurrences(of: "\"ledger_nonces\":[[", with: "\"ledger_nonce\":[["), "lacks ledger_nonces"),
            (text.replacingOccurrences(of: "\"schema_version\",\"1\"", with: "\"schema_version\",\"2\""), "says version 2"),
            ("{\"tables\":" + String(text.dropFirst("{\"format\":\"p2pos-ledger-snapshot/1\",\"tables\":".count).dropLast()) + ",\"format\":\"p2pos-ledger-snapshot/1\"}", "format after tables"),
        ] {
            XCTAssertThrowsError(try h.ledger.restore(Array(bad.utf8)), why) { e in XCTAssertTrue(e is LedgerError, "\(why): \(e)") }
            XCTAssertEqual(try h.ledger.snapshot(), before, "\(why): state changed")
        }
    }

    /// A snapshot whose lookup keys do not match its records would hide txs from the replay
    /// checks: refused.
    func testSnapshotWithWrongKeysIsRefused() throws {
        let source = try Harness()
        try fill(source)
        let snap = try source.ledger.snapshot()
        let v = try JSONValue.parse(snap, limits: JSONLimits(maxBytes: Int.max))
        var tables = try XCTUnwrap(v["tables"]?.objectValue)
        let rows = try XCTUnwrap(tables["ledger_applied"]?.arrayValue).map { try XCTUnwrap($0.arrayValue) }
        func with(_ change: (inout [[JSONValue]]) -> Void) -> [UInt8] {
            var r = rows
            change(&r)
            var t = tables
            t["ledger_applied"] = .array(r.map { .array($0) })
            return JSONValue.obj([("format", v["format"]!), ("tables", .object(t))]).canonicalBytes
        }
        let h = try Harness()
        try h.ledger.restore(snap)
        let before = try h.ledger.snapshot()
        let held = try XCTUnwrap(rows.firstIndex { $0[6] != .null })
        let free = try XCTUnwrap(rows.firstIndex { $0[6] == .null })
        for (bad, why) in [
            (with { $0[0][1] = .int(($0[0][1].intValue ?? 0) &+ 1) }, "tx_key"),
            (with { $0[held][5] = .int(($0[held][5].intValue ?? 0) &+ 1) }, "nonce_key"),
            (with { $0[held][6] = .string("other") }, "nonce"),
            (with { $0[free][5] = .int(7) }, "nonce_key without a nonce"),
            (with { $0[0][1] = .string("1") }, "tx_key as text"),
        ] {
            XCTAssertThrowsError(try h.ledger.restore(bad), why) { e in XCTAssertTrue(e is LedgerError, "\(why): \(e)") }
            XCTAssertEqual(try h.ledger.snapshot(), before, "\(why): state changed")
        }
        tables["ledger_applied"] = nil
        _ = tables
    }

    /// The lookups use the key indexes, not a scan of every record.
    func testLookupsUseTheKeyIndexes() throws {
        let h = try Harness()
        func plan(_ sql: String) throws -> String {
            try h.db.query("EXPLAIN QUERY PLAN " + sql, [.int(1), .text("x"), .text("y")]).map { $0.last?.text ?? "" }.joined(separator: "; ")
        }
        XCTAssertTrue(try plan("SELECT raft_index FROM ledger_applied WHERE tx_key = ? AND tx_id = ? AND nonce_key IS NULL AND ? IS NOT NULL").contains("ledger_applied_replayed_by_tx"))
        XCTAssertTrue(try plan("SELECT tx_id FROM ledger_applied WHERE nonce_key = ? AND signer_id = ? AND nonce = ?").contains("ledger_applied_by_nonce"))
    }

    /// Only REPLAYED records (they hold no nonce) are indexed by tx_id; every other record is
    /// found through the nonce it holds. An ordinary tx adds one entry to a random-keyed index.
    func testOnlyReplayedRecordsAreIndexedByTxID() throws {
        let h = try Harness()
        try fill(h)
        func entries(_ index: String) throws -> Int64 {
            try h.db.query("SELECT count(*) FROM ledger_applied INDEXED BY \(index) WHERE \(index == "ledger_applied_by_nonce" ? "nonce_key IS NOT NULL" : "nonce_key IS NULL")")[0][0].int ?? -1
        }
        XCTAssertEqual(try h.db.query("SELECT count(*) FROM ledger_applied")[0][0].int, 7)
        XCTAssertEqual(try entries("ledger_applied_replayed_by_tx"), 1, "alice's REPLAYED claim")
        XCTAssertEqual(try entries("ledger_applied_by_nonce"), 6)
        // Each kind of record is still found by its own tx: applied, rejected by a rule, REPLAYED.
        for e in h.entries {
            let tx = try Tx.decodeUnverified(e.txBytes)
            let r = try XCTUnwrap(h.ledger.result(of: tx), tx.nonce)
            XCTAssertEqual(r.raftIndex, e.raftIndex)
            XCTAssertEqual(try h.ledger.precheck(tx)?.raftIndex, e.raftIndex)
            XCTAssertEqual(try h.applyBytes(e.txBytes).raftIndex, e.raftIndex, "a retry answers the original result")
        }
    }

    func testKeys() {
        let id = SHA256.hex(Array("x".utf8))
        XCTAssertEqual(Ledger.txKey(id), Int64(UInt64(id.prefix(12), radix: 16)! >> 1))
        XCTAssertLessThan(Ledger.txKey(String(repeating: "f", count: 64)), 1 << 47)
        XCTAssertGreaterThanOrEqual(Ledger.nonceKey(signer: "a", nonce: "b"), 0)
        XCTAssertEqual(Ledger.txKey("not-hex"), Ledger.txKey("not-hex"))
        XCTAssertNotEqual(Ledger.txKey("not-hex"), Ledger.txKey("not-hey"))
        XCTAssertNotEqual(Ledger.nonceKey(signer: "a", nonce: "bc"), Ledger.nonceKey(signer: "ab", nonce: "c"))
        XCTAssertEqual(Ledger.nonceKey(signer: "a", nonce: "b"), Ledger.nonceKey(signer: "a", nonce: "b"))
    }
}
