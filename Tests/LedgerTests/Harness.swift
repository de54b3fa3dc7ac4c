import Foundation
import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

extension XCTestCase {
    /// The path of a database file `name` in a fresh directory, removed when the test ends.
    func temporaryDBPath(_ name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent(name).path
    }
}

/// A ledger on an in-memory SQLite DB plus helpers to sign and apply txs at increasing indexes.
final class Harness {
    static let cluster = "test-cluster"
    static let now = Timestamp(seconds: 1_780_000_000, nanos: 123_000_000)

    let db: SQLiteDB
    let ledger: Ledger
    var index: UInt64 = 0
    var nonce = 0
    /// Every entry applied so far, to replay on another ledger.
    var entries: [LedgerEntry] = []

    init(path: String = ":memory:") throws {
        db = try SQLiteDB(path: path)
        ledger = try Ledger(db: db, clusterID: Harness.cluster)
        index = try ledger.lastAppliedIndex()
        // Load the row counts now, so every apply below keeps them up to date in memory.
        ledger.keepsCounters = true
        _ = try ledger.currentCounters()
    }

    static func payload(_ text: String) -> JSONObject {
        // Test payloads are literals; a parse failure is a bug in the test.
        guard case .object(let o)? = try? JSONValue.parse(text) else { fatalError("bad test payload \(text)") }
        return o
    }

    func sign(_ key: PrivateKey, _ op: TxOp, _ payload: String, cluster: String = Harness.cluster,
              nonce n: String? = nil, ts: Timestamp = Harness.now) throws -> Tx {
        nonce += 1
        return try Tx.sign(key: key, op: op, payload: Harness.payload(payload), clusterID: cluster, nonce: n ?? "n\(nonce)", ts: ts)
    }

    @discardableResult
    func applyBytes(_ bytes: [UInt8]) throws -> TxResult {
        index += 1
        entries.append(LedgerEntry(raftIndex: index, txBytes: bytes))
        let r = try ledger.apply(txBytes: bytes, raftIndex: index)
        XCTAssertNotNil(ledger.counters, "apply keeps the loaded counts")
        XCTAssertEqual(try ledger.currentCounters(), try LedgerCounters.count(db), "counts kept by apply match the tables after \(r.code?.rawValue ?? r.status.rawValue)")
        return r
    }

    @discardableResult
    func apply(_ key: PrivateKey, _ op: TxOp, _ payload: String, nonce n: String? = nil) throws -> TxResult {
        try applyBytes(try sign(key, op, payload, nonce: n).encoded)
    }

    /// Apply and assert it was applied.
    @discardableResult
    func ok(_ key: PrivateKey, _ op: TxOp, _ payload: String, file: StaticString = #filePath, line: UInt = #line) throws -> TxResult {
        let r = try apply(key, op, payload)
        XCTAssertEqual(r.status, .applied, "\(op.rawValue) \(payload): \(r.code?.rawValue ?? "") \(r.message)", file: file, line: line)
        return r
    }

    /// Apply, assert the rejection code and that no state but the tx record changed.
    @discardableResult
    func reject(_ code: RejectCode, _ key: PrivateKey, _ op: TxOp, _ payload: String,
                file: StaticString = #filePath, line: UInt = #line) throws -> TxResult {
        let before = try stateDigest()
        let r = try apply(key, op, payload)
        XCTAssertEqual(r.status, .rejected, "\(op.rawValue) \(payload) was applied", file: file, line: line)
        XCTAssertEqual(r.code, code, "\(op.rawValue) \(payload): \(r.message)", file: file, line: line)
        XCTAssertFalse(r.message.isEmpty, file: file, line: line)
        XCTAssertNil(r.eventSeq, file: file, line: line)
        XCTAssertEqual(try stateDigest(), before, "a rejected tx changed state", file: file, line: line)
        return r
    }

    /// The business state: every table except the tx bookkeeping (meta, applied, nonces).
    func stateDigest() throws -> String {
        let snap = try JSONValue.parse(try ledger.snapshot(), limits: JSONLimits(maxBytes: Int.max))
        var tables = snap["tables"]?.objectValue ?? JSONObject()
        tables["ledger_meta"] = nil
        tables["ledger_applied"] = nil
        tables["ledger_nonces"] = nil
        return JSONValue.object(tables).canonicalString
    }

    /// The ledger's tables in the version-2 form, read with joins and SQL functions: an oracle
    /// for `snapshot()`, which converts the stored rows itself.
    static let v2Form: [(name: String, select: String)] = [
        ("ledger_meta", "SELECT key, CASE key WHEN 'schema_version' THEN '2' ELSE value END FROM ledger_meta ORDER BY key"),
        ("ledger_sessions", """
            SELECT s.session_id, s.title, o.signer, s.status, s.step_count, s.resolved_count, s.created_index, s.completed_index, lower(hex(s.created_tx))
            FROM ledger_sessions s LEFT JOIN ledger_signers o ON o.id = s.owner_id ORDER BY s.session_id
            """),
        ("ledger_participants", """
            SELECT p.session_id, a.signer, p.joined_index
            FROM ledger_participants p LEFT JOIN ledger_signers a ON a.id = p.actor_id ORDER BY p.session_id, a.signer
            """),
        ("ledger_steps", """
            SELECT s.step_id, s.session_id, s.position, s.title, s.status, c.signer, s.outcome, s.updated_index, s.resolved_index
            FROM ledger_steps s LEFT JOIN ledger_signers c ON c.id = s.claimant_id ORDER BY s.step_id
            """),
        ("ledger_artifacts", """
            SELECT a.artifact_id, a.step_id, a.kind, a.uri, a.sha256, b.signer, a.added_index
            FROM ledger_artifacts a LEFT JOIN ledger_signers b ON b.id = a.added_by_id ORDER BY a.artifact_id
            """),
        ("ledger_decisions", """
            SELECT d.decision_id, d.step_id, d.question, d.options, d.quorum, d.status, d.outcome, o.signer, d.opened_index, d.decided_index
            FROM ledger_decisions d LEFT JOIN ledger_signers o ON o.id = d.opened_by_id ORDER BY d.decision_id
            """),
        ("ledger_votes", """
            SELECT v.decision_id, w.signer, v.option, v.cast_index
            FROM ledger_votes v LEFT JOIN ledger_signers w ON w.id = v.voter_id ORDER BY v.decision_id, w.signer
            """),
        ("ledger_events", """
            SELECT e.seq, e.raft_index, e.op, a.signer, lower(hex(e.tx_id)), e.session_id, e.ts
            FROM ledger_events e LEFT JOIN ledger_signers a ON a.id = e.actor_id ORDER BY e.seq
            """),
        ("ledger_applied", """
            SELECT r.seq, r.tx_key, lower(hex(r.tx_id)), r.raft_index, s.signer, r.nonce_key, r.nonce, r.status, r.code, r.message, r.event_seq
            FROM ledger_applied r LEFT JOIN ledger_signers s ON s.id = r.signer_id ORDER BY r.seq
            """),
    ]

    /// The canonical JSON a snapshot of the rows `read` gives for each table would be.
    static func snapshotJSON(_ read: (String) throws -> [[SQLValue]]) rethrows -> [UInt8] {
        var tables = JSONObject()
        for t in v2Form {
            tables[t.name] = .array(try read(t.name).map { row in
                .array(row.map { v -> JSONValue in
                    switch v {
                    case .int(let i): return .int(i)
                    case .text(let s): return .string(s)
                    default: return .null
                    }
                })
            })
        }
        return JSONValue.obj([("format", .string(Ledger.snapshotFormat)), ("tables", .object(tables))]).canonicalBytes
    }

    func stepStatus(_ id: String) throws -> String? { try ledger.step(id: id)?["status"]?.stringValue }
    func claimant(_ id: String) throws -> JSONValue? { try ledger.step(id: id)?["claimant"] }
}

/// Fixed keys so failures reproduce.
enum Keys {
    static func key(_ n: UInt8) -> PrivateKey {
        // 32-byte seeds always make a key.
        try! PrivateKey(seed: [UInt8](repeating: n, count: 32))
    }
    static let owner = key(1)
    static let alice = key(2)
    static let bob = key(3)
    static let mallory = key(4)
}
