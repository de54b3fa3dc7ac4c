import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

/// Apply cost on a file database, as the daemon uses it. Runs only with P2POS_PERF=1
/// (a measurement, not a check): `P2POS_PERF=1 swift test -c release --filter ApplyPerfTests`;
/// P2POS_PERF_BATCH entries per batch, P2POS_PERF_COMMIT=N for deferred commits every N entries
/// as the daemon runs them. Prints wall and thread-CPU µs per tx.
final class ApplyPerfTests: XCTestCase {
    func testApplyThroughput() throws {
        guard ProcessInfo.processInfo.environment["P2POS_PERF"] == "1" else { throw XCTSkip("set P2POS_PERF=1") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("applyperf-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let db = try SQLiteDB(path: dir.appendingPathComponent("ledger.db").path, synchronous: "NORMAL")
        if let pragmas = ProcessInfo.processInfo.environment["P2POS_PERF_PRAGMAS"] { try db.exec(pragmas) }
        let ledger = try Ledger(db: db, clusterID: Harness.cluster)
        // As the daemon runs it: deferred commits, one commit per P2POS_PERF_COMMIT entries.
        let commitEvery = Int(ProcessInfo.processInfo.environment["P2POS_PERF_COMMIT"] ?? "0") ?? 0
        ledger.deferCommits = commitEvery > 0
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
        var c0 = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0)
        var i = 0
        while i < n {
            let part = txs[i..<min(n, i + batch)].enumerated().map { LedgerEntry(raftIndex: UInt64(i + $0.offset + 1), txBytes: $0.element.encoded, decoded: $0.element) }
            let rs = try ledger.applyBatch(part)
            if commitEvery > 0 && ledger.pendingEntries >= commitEvery { try ledger.commitPending() }
            XCTAssertEqual(rs.last?.status, .applied)
            i += batch
        }
        if commitEvery > 0 { try ledger.commitPending() }    // the last partial group counts too
        var c1 = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1)
        let cpuUS = Double((c1.tv_sec - c0.tv_sec) * 1_000_000_000 + (c1.tv_nsec - c0.tv_nsec)) / 1000 / Double(n)
        print("APPLY cpu_us_per_tx=\(String(format: "%.1f", cpuUS))")
        let us = Double(Monotonic.nanos() - t0) / 1000 / Double(n)
        print("APPLY n=\(n) batch=\(batch) us_per_tx=\(String(format: "%.1f", us))")
        // A compaction snapshot of the result (as the daemon streams it to its file), best of three.
        var best = Double.infinity
        var bytes = 0
        for _ in 0..<3 {
            var s0 = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &s0)
            bytes = 0
            try ledger.snapshot { bytes += $0.count }
            var s1 = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &s1)
            best = min(best, Double((s1.tv_sec - s0.tv_sec) * 1_000_000_000 + (s1.tv_nsec - s0.tv_nsec)) / 1_000_000)
        }
        print("SNAPSHOT cpu_ms=\(String(format: "%.1f", best)) bytes=\(bytes)")
    }
}

/// Cost of decoding a submitted tx (parse, shape, canonical signed bytes, tx_id: everything but
/// the signature check) and of its canonical encoding. P2POS_PERF=1 only, like the apply test:
/// `P2POS_PERF=1 swift test -c release -Xswiftc -enable-testing --filter DecodePerfTests`.
final class DecodePerfTests: XCTestCase {
    func testDecodeCost() throws {
        guard ProcessInfo.processInfo.environment["P2POS_PERF"] == "1" else { throw XCTSkip("set P2POS_PERF=1") }
        let key = PrivateKey.generate()
        let n = 20_000
        var raw: [[UInt8]] = []
        for i in 0..<n {
            let sid = "b64-\(i % 64)-\(i)-\(Hex.encode(Sodium.randomBytes(4)))"
            raw.append(try Tx.sign(key: key, op: .sessionCreate,
                                   payload: Harness.payload("{\"session_id\":\"\(sid)\",\"title\":\"bench\",\"steps\":[{\"step_id\":\"\(sid)-s\",\"title\":\"s\"}]}"),
                                   clusterID: Harness.cluster, nonce: "n\(i)", ts: Harness.now).encoded)
        }
        func cpu() -> UInt64 { var t = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec) }
        var txs: [Tx] = []
        txs.reserveCapacity(n)
        let c0 = cpu()
        for r in raw { txs.append(try Tx.decodeUnverified(r)) }
        let c1 = cpu()
        var total = 0
        for t in txs { total &+= t.encoded.count }
        let c2 = cpu()
        for r in raw { total &+= (try JSONValue.parse(r, limits: Tx.parseLimits)).canonicalBytes.count }
        let c3 = cpu()
        for r in raw { total &+= (try JSONDocument(r, limits: Tx.parseLimits)).memberRanges.count }
        let c4 = cpu()
        XCTAssertGreaterThan(total, 0)
        func us(_ a: UInt64, _ b: UInt64) -> String { String(format: "%.2f", Double(b - a) / 1000 / Double(n)) }
        print("DECODE decode_us=\(us(c0, c1)) encode_us=\(us(c1, c2)) parse_plus_canonical_us=\(us(c2, c3)) parse_us=\(us(c3, c4)) bytes=\(raw[0].count)")
    }
}
