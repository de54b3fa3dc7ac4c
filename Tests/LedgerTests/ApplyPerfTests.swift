import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

/// Apply cost on a file database, as the daemon uses it. Runs only with P2POS_PERF=1
/// (a measurement, not a check): `P2POS_PERF=1 swift test -c release --filter ApplyPerfTests`.
final class ApplyPerfTests: XCTestCase {
    func testApplyThroughput() throws {
        guard ProcessInfo.processInfo.environment["P2POS_PERF"] == "1" else { throw XCTSkip("set P2POS_PERF=1") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("applyperf-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try SQLiteDB(path: dir.appendingPathComponent("ledger.db").path, synchronous: "NORMAL")
        if let pragmas = ProcessInfo.processInfo.environment["P2POS_PERF_PRAGMAS"] { try db.exec(pragmas) }
        let ledger = try Ledger(db: db, clusterID: Harness.cluster)
        let key = PrivateKey.generate()
        let n = Int(ProcessInfo.processInfo.environment["P2POS_PERF_N"] ?? "20000") ?? 20000
        let batch = Int(ProcessInfo.processInfo.environment["P2POS_PERF_BATCH"] ?? "1") ?? 1
        var txs: [Tx] = []
        for i in 0..<n {
            let sid = "s\(i)-\(Hex.encode(Sodium.randomBytes(4)))"
            txs.append(try Tx.sign(key: key, op: .sessionCreate,
                                   payload: Harness.payload("{\"session_id\":\"\(sid)\",\"title\":\"bench\",\"steps\":[{\"step_id\":\"\(sid)-s\",\"title\":\"s\"}]}"),
                                   clusterID: Harness.cluster, nonce: "n\(i)", ts: Harness.now))
        }
        for t in txs { try SignatureMemo.shared.verify(t) }
        let t0 = Monotonic.nanos()
        var i = 0
        while i < n {
            let part = txs[i..<min(n, i + batch)].enumerated().map { LedgerEntry(raftIndex: UInt64(i + $0.offset + 1), txBytes: $0.element.encoded, decoded: $0.element) }
            let rs = try ledger.applyBatch(part)
            XCTAssertEqual(rs.last?.status, .applied)
            i += batch
        }
        let us = Double(Monotonic.nanos() - t0) / 1000 / Double(n)
        print("APPLY n=\(n) batch=\(batch) us_per_tx=\(String(format: "%.1f", us))")
    }
}
