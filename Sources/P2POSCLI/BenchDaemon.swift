import Foundation
import Identity
import Libp2p
import Membership
import Node
import Support
import Wire

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = s.lastIndex(of: ")") else { return nil }
    let fields = s[s.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let ut = Double(fields[11]), let st = Double(fields[12]) else { return nil }
    return (ut + st) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A counter from a Prometheus text page.
func metricValue(_ text: String, _ name: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.split(separator: " ").last ?? "")
    }
    return nil
}

/// `p2pos bench heartbeat`: one real node absorbs signed heartbeats from many member identities.
@Sendable func benchHeartbeatHandler(_ p: ParsedArgs) throws -> Int32 {
    let members = try p.int("--members", default: 200, min: 1, max: 2000)
    let rate = try p.int("--rate", default: 10, min: 1, max: 100)
    let duration = parseDuration(p.value("--duration") ?? "10s") ?? 10
    let keys = (0..<members).map { _ in PrivateKey.generate() }
    Out.err("bench heartbeat: starting one node with \(members) synthetic members")
    let cluster = try LocalCluster(nodes: 1, waitForVoters: false, heartbeatInterval: 30)
    defer { cluster.stop() }
    let dir = cluster.dirs[0]
    let admin = try PrivateKey(base64: try SecureFile.read(dir + "/keys/admin.key"))
    let cfg = try NodeConfig.load(path: dir + "/config.json")
    let snap = MembershipSnapshot.issue(adminKey: admin, clusterID: "bench", members: [cluster.peers[0]] + keys.map { $0.peerID.base58 },
                                        proof: cfg.adminProof, at: Timestamp.now())
    let c = KeepAliveClient(.unix(cluster.socket(0)))
    let (st, _) = try c.request("POST", "/v1/membership", body: [UInt8](snap.jsonData()))
    guard st == 200 else { throw P2POSError("BENCH", "could not install the bench membership") }
    guard let status = cluster.getJSON(0, "/v1/status"), let node = status["node"] as? [String: Any],
          let addr = (node["listen_addrs"] as? [String])?.first else { throw P2POSError("BENCH", "node has no listen address") }
    let target = try Multiaddr(addr)
    let sent = Counter()
    let failed = Counter()
    let connected = Counter()
    let stop = Counter()
    let stopAt = Monotonic.nanos() + UInt64((duration + 25) * 1e9)
    let group = DispatchGroup()
    // One libp2p host per member identity (the node only accepts a heartbeat from its signer).
    let hostsPerGroup = 25
    for g in stride(from: 0, to: members, by: hostsPerGroup) {
        let slice = Array(keys[g..<min(members, g + hostsPerGroup)])
        group.enter()
        Task.detached {
            await withTaskGroup(of: Void.self) { tg in
                for k in slice {
                    tg.addTask {
                        var hc = HostConfig()
                        hc.autoIdentify = false
                        guard let host = try? Libp2pHost(identity: k, config: hc) else { failed.add(1); return }
                        // The node rate-limits handshakes per source address (all members are
                        // 127.0.0.1 here), so members that are refused retry, as real ones would.
                        var dialed: PeerID? = nil
                        for _ in 0..<50 where Monotonic.nanos() < stopAt {
                            if let p = try? await host.dial(target) { dialed = p; break }
                            try? await Task.sleep(nanoseconds: UInt64.random(in: 100_000_000...300_000_000))
                        }
                        guard let peer = dialed else { failed.add(1); host.close(); return }
                        connected.add(1)
                        defer { host.close() }
                        let interval = UInt64(1e9 / Double(rate))
                        var next = Monotonic.nanos()
                        while Monotonic.nanos() < stopAt && stop.value == 0 {
                            let hb = Heartbeat.make(key: k, clusterID: "bench", at: Timestamp.now())
                            var line = (try? [UInt8](JSONEncoder().encode(hb))) ?? []
                            line.append(0x0a)
                            let r: Result<[UInt8], Libp2pError> = await withCheckedContinuation { cont in
                                host.requestLine(to: peer, protocolID: "/p2pos/heartbeat/1.0.0", request: line, maxReply: 4096, optimistic: true) { cont.resume(returning: $0) }
                            }
                            switch r {
                            case .success: sent.add(1)
                            case .failure(let e):
                                failed.add(1)
                                if ProcessInfo.processInfo.environment["P2POS_BENCH_DEBUG"] != nil { Out.err("heartbeat failed: \(e)") }
                            }
                            next += interval
                            let now = Monotonic.nanos()
                            if next > now { try? await Task.sleep(nanoseconds: next - now) } else { next = now }
                        }
                    }
                }
            }
            group.leave()
        }
    }
    // Measure a window once every member is connected (handshakes are not heartbeats), after a
    // second of steady state.
    let connectBy = Monotonic.nanos() + 20_000_000_000
    while connected.value + failed.value < members && Monotonic.nanos() < connectBy { Thread.sleep(forTimeInterval: 0.1) }
    Thread.sleep(forTimeInterval: 1)
    let pid = cluster.procs[0].processIdentifier
    let m0 = metricValue(String(decoding: cluster.get(0, "/metrics") ?? [], as: UTF8.self), "p2pos_heartbeats_received_total") ?? 0
    let f0 = metricValue(String(decoding: cluster.get(0, "/metrics") ?? [], as: UTF8.self), "p2pos_presence_flushes_total") ?? 0
    let cpu0 = processCPUSeconds(pid) ?? 0
    let t0 = Monotonic.nanos()
    Thread.sleep(forTimeInterval: duration)
    let cpu1 = processCPUSeconds(pid) ?? 0
    let t1 = Monotonic.nanos()
    let text = String(decoding: cluster.get(0, "/metrics") ?? [], as: UTF8.self)
    let m1 = metricValue(text, "p2pos_heartbeats_received_total") ?? 0
    let f1 = metricValue(text, "p2pos_presence_flushes_total") ?? 0
    let rejected = metricValue(text, "p2pos_heartbeats_rejected_total") ?? 0
    stop.add(1)
    group.wait()
    let secs = Double(t1 - t0) / 1e9
    let hbRate = (m1 - m0) / secs
    let cpuPct = (cpu1 - cpu0) / secs * 100
    let report: [String: Any] = ["members": members, "target_rate_per_s": members * rate, "accepted_per_s": hbRate.rounded(),
                                 "node_cpu_percent_of_one_core": (cpuPct * 10).rounded() / 10, "presence_flushes_per_s": ((f1 - f0) / secs * 10).rounded() / 10,
                                 "rejected_total": rejected, "client_failures": failed.value, "window_s": secs]
    if p.json { Out.print(Out.json(report)) } else {
        Out.print(String(format: "bench heartbeat: %d members x %d/s = %d/s offered; node accepted %.0f/s, verified and recorded\n  node CPU %.1f%% of one core; presence flushes %.1f/s (one write transaction each); rejected %.0f, client failures %d",
                         members, rate, members * rate, hbRate, cpuPct, (f1 - f0) / secs, rejected, failed.value))
    }
    return ExitCode.success
}

/// `p2pos bench status`: latency of `status --cluster` on a local cluster.
@Sendable func benchStatusHandler(_ p: ParsedArgs) throws -> Int32 {
    let nodes = try p.int("--nodes", default: 5, min: 2, max: 9)
    let n = try p.int("--requests", default: 50, min: 1, max: 10_000)
    Out.err("bench status: starting a \(nodes)-node cluster")
    let cluster = try LocalCluster(nodes: nodes)
    defer { cluster.stop() }
    try waitUntil(30, "every node healthy with \(nodes) members online") {
        (0..<nodes).allSatisfy { i in
            guard let s = cluster.getJSON(i, "/v1/status"), let node = s["node"] as? [String: Any] else { return false }
            return node["state"] as? String == "healthy" && node["members_online"] as? Int == nodes
        }
    }
    var lat: [Double] = []
    var rows = 0
    for i in 0..<n {
        let c = KeepAliveClient(.unix(cluster.socket(i % nodes)))
        let t0 = Monotonic.nanos()
        let (st, body) = try c.request("GET", "/v1/status?scope=cluster", body: [])
        lat.append(Double(Monotonic.nanos() - t0) / 1e6)
        guard st == 200 else { throw P2POSError("BENCH", "status answered \(st)") }
        if let o = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] { rows = (o["peers"] as? [Any])?.count ?? 0 }
    }
    let s = lat.sorted()
    let pct = { (q: Double) in s[min(s.count - 1, Int(Double(s.count - 1) * q))] }
    if p.json {
        Out.print(Out.json(["nodes": nodes, "requests": n, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "max_ms": s.last!, "peers_in_view": rows]))
    } else {
        Out.print(String(format: "bench status: status --cluster on a %d-node cluster, %d requests: p50 %.2f ms, p95 %.2f ms, max %.2f ms (%d peers in the merged view)",
                         nodes, n, pct(0.5), pct(0.95), s.last!, rows))
    }
    return ExitCode.success
}

/// A thread-safe counter.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    func add(_ n: Int) { lock.withLock { v += n } }
    var value: Int { lock.withLock { v } }
}

/// `p2pos bench verify`: Ed25519 verification of tx-sized messages, libsodium's one-at-a-time
/// check next to the project's verifier alone and in batches, medians of --rounds.
@Sendable func benchVerifyHandler(_ p: ParsedArgs) throws -> Int32 {
    let count = try p.int("--count", default: 2048, min: 64, max: 1 << 20)
    let rounds = try p.int("--rounds", default: 5, min: 1, max: 100)
    let signers = try p.int("--signers", default: 64, min: 1, max: 1 << 20)
    let keys = (0..<signers).map { _ in PrivateKey.generate() }
    let items: [Ed25519.Item] = (0..<count).map { i in
        let msg = Sodium.randomBytes(300)
        let k = keys[i % signers]
        return Ed25519.Item(publicKey: k.publicKey.raw, signature: k.sign(msg), message: msg)
    }
    let pubs = keys.map { $0.publicKey }
    func median(_ f: () -> Bool) -> Double {
        var xs: [Double] = []
        for _ in 0..<rounds {
            let t0 = Monotonic.nanos()
            guard f() else { return .nan }
            xs.append(Double(Monotonic.nanos() - t0) / 1000 / Double(count))
        }
        return xs.sorted()[xs.count / 2]
    }
    var rows: [(String, Double)] = []
    rows.append(("libsodium crypto_sign_verify_detached", median {
        items.indices.allSatisfy { pubs[$0 % signers].verify(signature: items[$0].signature, message: items[$0].message) }
    }))
    rows.append(("p2pos Ed25519.verify (one at a time)", median {
        items.allSatisfy { Ed25519.verify(publicKey: $0.publicKey, signature: $0.signature, message: $0.message) }
    }))
    for b in [16, 64, 256] where b <= count {
        rows.append(("p2pos Ed25519.verify(batch:) of \(b)", median {
            stride(from: 0, to: count, by: b).allSatisfy { Ed25519.verify(batch: Array(items[$0..<min(count, $0 + b)])).allSatisfy { $0 } }
        }))
    }
    let base = rows[0].1
    if p.json {
        Out.print(Out.json(["count": count, "signers": signers, "rounds": rounds,
                            "results": rows.map { ["verifier": $0.0, "us_per_signature": ($0.1 * 100).rounded() / 100, "speedup_vs_libsodium": (base / $0.1 * 100).rounded() / 100] }]))
    } else {
        Out.print("bench verify: \(count) signatures over 300-byte messages, \(signers) signers, median of \(rounds) rounds")
        for (name, us) in rows { Out.print(String(format: "%-42@ %8.1f us/sig  %5.2fx", name, us, base / us)) }
    }
    return ExitCode.success
}
