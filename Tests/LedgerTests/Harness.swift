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
