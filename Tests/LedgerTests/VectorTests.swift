import Foundation
import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

/// Transactions signed by the Python example (tests/ledger/sign_tx.py, PyNaCl), committed in
/// tests/ledger/vectors.json; tests/ledger/test_python_signing.py checks the script reproduces them.
final class VectorTests: XCTestCase {
    func loadVectors() throws -> JSONValue {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tests/ledger/vectors.json")
        let data = try Data(contentsOf: url)
        return try JSONValue.parse([UInt8](data))
    }

    func testPythonSignedTxsVerifyAndApply() throws {
        let v = try loadVectors()
        let cluster = try XCTUnwrap(v["cluster_id"]?.stringValue)
        let txs = try XCTUnwrap(v["txs"]?.arrayValue)
        XCTAssertEqual(txs.count, 11)
        let ledger = try Ledger(db: try SQLiteDB(path: ":memory:"), clusterID: cluster)
        let signedAt = try XCTUnwrap(Timestamp(rfc3339: "2026-02-21T11:11:01.508Z"))
        for (i, item) in txs.enumerated() {
            let text = try XCTUnwrap(item["tx"]?.stringValue)
            let tx = try Tx.admit(Array(text.utf8), clusterID: cluster, now: signedAt.adding(seconds: 60))
            XCTAssertEqual(tx.txID, item["tx_id"]?.stringValue, "vector \(i)")
            XCTAssertEqual(tx.encodedString, text, "Swift's canonical form equals Python's")
            let r = try ledger.apply(txBytes: Array(text.utf8), raftIndex: UInt64(i + 1))
            XCTAssertEqual(r.status, .applied, "vector \(i): \(r.message)")
            XCTAssertEqual(r.txID, tx.txID)
        }
        XCTAssertEqual(try ledger.session(id: "sess-1")?["status"], .string("completed"))
        XCTAssertEqual(try ledger.session(id: "sess-1")?["title"], .string("Café 😀 \"quoted\" \\ back\nslash\u{1}"))
    }

    /// Ed25519 is deterministic: Swift signing the same envelope yields the Python bytes exactly.
    func testSwiftSigningReproducesPythonVectors() throws {
        let v = try loadVectors()
        let keys = try XCTUnwrap(v["keys"]?.objectValue)
        let alice = try PrivateKey(base64: try XCTUnwrap(keys["alice"]?.stringValue))
        let bob = try PrivateKey(base64: try XCTUnwrap(keys["bob"]?.stringValue))
        XCTAssertEqual(alice.publicKey.base64, v["public_keys"]?["alice"]?.stringValue)
        for item in v["txs"]?.arrayValue ?? [] {
            let text = try XCTUnwrap(item["tx"]?.stringValue)
            let original = try Tx.decode(Array(text.utf8))
            let key = original.signer == alice.publicKey.base64 ? alice : bob
            let again = try Tx.sign(key: key, op: original.op, payload: original.payload, clusterID: original.clusterID,
                                    nonce: original.nonce, ts: original.timestamp)
            XCTAssertEqual(again.encodedString, text)
            XCTAssertEqual(again.txID, item["tx_id"]?.stringValue)
        }
    }
}
