import ControlAPI
import Foundation
import Identity
import Ledger
import Membership
import Node
import Support
import Wire

/// A blocking HTTP/1.1 keep-alive client over a Unix or TCP socket, for load generation.
final class KeepAliveClient {
    enum Target { case unix(String), tcp(String, UInt16) }
    let target: Target
    var fd: Int32 = -1
    var buf = [UInt8](repeating: 0, count: 65536)
    var pending: [UInt8] = []

    init(_ t: Target) { target = t }
    deinit { if fd >= 0 { close(fd) } }

    func connect() throws {
        if fd >= 0 { close(fd) }
        switch target {
        case .unix(let path):
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() where i < p.count - 1 { p[i] = b } }
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard rc == 0 else { throw P2POSError("CONNECT", "cannot connect to \(path)") }
        case .tcp(let host, let port):
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &addr.sin_addr)
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard rc == 0 else { throw P2POSError("CONNECT", "cannot connect to \(host):\(port)") }
        }
        var tv = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        pending = []
    }

    /// Send one request and read the whole response; returns (status, body).
    /// The load generator shares the machine with the cluster it measures (p2pos or etcd alike),
    /// so a request costs as little CPU as it can: the head is written and parsed as bytes.
    func request(_ method: String, _ path: String, body: [UInt8]) throws -> (Int, [UInt8]) {
        if fd < 0 { try connect() }
        out.removeAll(keepingCapacity: true)
        out.append(contentsOf: method.utf8)
        out.append(0x20)
        out.append(contentsOf: path.utf8)
        out.append(contentsOf: KeepAliveClient.headMiddle)
        CanonicalJSON.appendInt(Int64(body.count), to: &out)
        out.append(contentsOf: [13, 10, 13, 10])
        out.append(contentsOf: body)
        var off = 0
        while off < out.count {
            let n = out.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            guard n > 0 else { close(fd); fd = -1; throw P2POSError("WRITE", "connection closed") }
            off += n
        }
        // Read the head, then the body it announces.
        var scanned = 0
        while true {
            if let bodyStart = HTTPParser.findHeadEnd(pending, from: scanned) {
                guard let (status, length) = KeepAliveClient.parseHead(pending[0..<bodyStart]) else {
                    close(fd); fd = -1
                    throw P2POSError("READ", "malformed response head")
                }
                while pending.count < bodyStart + length { try fill() }
                let b = Array(pending[bodyStart..<(bodyStart + length)])
                pending.removeSubrange(0..<(bodyStart + length))
                return (status, b)
            }
            scanned = max(0, pending.count - 3)
            try fill()
        }
    }

    private var out: [UInt8] = []
    private static let headMiddle = Array(" HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: ".utf8)

    /// Status code and Content-Length (0 when absent) of a response head.
    static func parseHead(_ head: ArraySlice<UInt8>) -> (Int, Int)? {
        // "HTTP/1.1 200 ..."
        let h = Array(head)
        guard h.count >= 12, h[8] == 0x20 else { return nil }
        var status = 0
        for i in 9..<12 {
            guard h[i] >= 48, h[i] <= 57 else { return nil }
            status = status * 10 + Int(h[i] - 48)
        }
        let name = Array("content-length:".utf8)
        var length = 0
        var i = 0
        while i < h.count {
            // Start of a line after the status line.
            guard let nl = h[i...].firstIndex(of: 10) else { break }
            i = nl + 1
            guard h.count - i >= name.count else { break }
            var match = true
            for k in 0..<name.count where (h[i + k] | 0x20) != name[k] { match = false; break }
            guard match else { continue }
            var j = i + name.count
            while j < h.count, h[j] == 0x20 || h[j] == 0x09 { j += 1 }
            var v = 0, digits = 0
            while j < h.count, h[j] >= 48, h[j] <= 57, digits < 12 { v = v * 10 + Int(h[j] - 48); j += 1; digits += 1 }
            guard digits > 0 else { return nil }
            length = v
        }
        return (status, length)
    }

    private func fill() throws {
        // On a Unix socket, wait with poll for input only: a thread blocked in read() there is
        // also woken whenever the server consumes the request it sent (the socket's write space
        // frees and the kernel wakes every waiter) — a second wake-up per request for nothing.
        // TCP (etcd) has no such wake-up and keeps the plain blocking read.
        if case .unix = target {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 15_000)
        }
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { close(fd); fd = -1; throw P2POSError("READ", "connection closed") }
        pending.append(contentsOf: buf[0..<n])
    }
}

/// Per-client counters shared with a level's client threads; each thread uses only its own slot.
struct ClientSlots: @unchecked Sendable {
    let value: UnsafeMutablePointer<Int>
}

/// Result of one closed-loop run.
struct LoadResult {
    var ops: Int
    var errors: Int
    var seconds: Double
    /// Each successful operation's latency, in µs, in ascending order (sorted once, here, so
    /// that every percentile is a lookup).
    let latenciesUs: [Double]
    /// Clients that stopped early because they had nothing left to send.
    var exhaustedClients = 0
    /// CPU seconds the measured system's processes (the cluster, not the load generator) used
    /// during the run, when they could be read.
    var serverCPUSeconds: Double? = nil
    var opsPerSec: Double { Double(ops) / seconds }
    /// Server CPU per successful operation, in µs (summed over the nodes).
    var cpuUsPerOp: Double? { serverCPUSeconds.flatMap { ops > 0 ? $0 * 1e6 / Double(ops) : nil } }

    init(ops: Int, errors: Int, seconds: Double, latenciesUs: [Double], exhaustedClients: Int = 0) {
        self.ops = ops
        self.errors = errors
        self.seconds = seconds
        self.latenciesUs = latenciesUs.sorted()
        self.exhaustedClients = exhaustedClients
    }

    /// Two measurements of the same system as one: operations, errors, time and server CPU
    /// added, latencies pooled.
    func merged(with o: LoadResult) -> LoadResult {
        var r = LoadResult(ops: ops + o.ops, errors: errors + o.errors, seconds: seconds + o.seconds,
                           latenciesUs: latenciesUs + o.latenciesUs, exhaustedClients: max(exhaustedClients, o.exhaustedClients))
        if let a = serverCPUSeconds, let b = o.serverCPUSeconds { r.serverCPUSeconds = a + b }
        return r
    }

    func pct(_ p: Double) -> Double {
        guard !latenciesUs.isEmpty else { return .nan }
        return latenciesUs[min(latenciesUs.count - 1, Int(Double(latenciesUs.count - 1) * p))]
    }
    /// This run's throughput and p99 as multiples of `other`'s, and its server CPU per op when
    /// both were read.
    func ratios(to other: LoadResult) -> (throughput: Double, p99: Double, cpu: Double?) {
        let cpu = cpuUsPerOp.flatMap { a in other.cpuUsPerOp.flatMap { b in b > 0 ? a / b : nil } }
        return (opsPerSec / max(1, other.opsPerSec), pct(0.99) / max(1, other.pct(0.99)), cpu)
    }
    var json: [String: Any] {
        var o: [String: Any] = ["ops": ops, "errors": errors, "seconds": seconds, "ops_per_sec": opsPerSec.rounded(),
                                "p50_ms": pct(0.5) / 1000, "p95_ms": pct(0.95) / 1000, "p99_ms": pct(0.99) / 1000,
                                "p999_ms": pct(0.999) / 1000, "max_ms": pct(1) / 1000]
        if let c = cpuUsPerOp { o["server_cpu_us_per_op"] = c.rounded() }
        if exhaustedClients > 0 { o["clients_out_of_txs"] = exhaustedClients }
        return o
    }
}

/// What one operation of a closed-loop client came to.
enum LoadOp {
    case ok
    /// Counted as an error; the client pauses 1 ms before its next operation, so a refusing
    /// server (or one that is down) is not hammered by a spinning loop.
    case failed
    /// The client has nothing left to send (its pre-signed txs are used up): it stops.
    case exhausted

    /// One POST: `.ok` on 200, `.failed` on any other status or a transport error.
    static func post(_ client: KeepAliveClient, _ path: String, _ body: [UInt8]) -> LoadOp {
        guard let (st, _) = try? client.request("POST", path, body: body) else { return .failed }
        return st == 200 ? .ok : .failed
    }
}

final class LoadAccumulator: @unchecked Sendable {
    let lock = NSLock()
    var lat: [Double] = []
    var ops = 0, errors = 0, exhausted = 0
}

/// Run `clients` threads in a closed loop for `duration`; `op(client, clientIndex, seq)` does one
/// operation (`seq` counts this client's operations, failed ones included).
func closedLoop(clients: Int, duration: Double, makeClient: @escaping @Sendable () -> KeepAliveClient,
                op: @escaping @Sendable (KeepAliveClient, Int, Int) -> LoadOp) -> LoadResult {
    let acc = LoadAccumulator()
    let start = Monotonic.nanos()
    let end = start + UInt64(duration * 1e9)
    let group = DispatchGroup()
    for c in 0..<clients {
        group.enter()
        let t = Thread {
            let client = makeClient()
            var local: [Double] = []
            local.reserveCapacity(100_000)
            var n = 0, e = 0, seq = 0, out = 0
            loop: while Monotonic.nanos() < end {
                let t0 = Monotonic.nanos()
                switch op(client, c, seq) {
                case .ok:
                    local.append(Double(Monotonic.nanos() - t0) / 1000)
                    n += 1
                case .failed:
                    e += 1
                    usleep(1000)
                case .exhausted:
                    out = 1
                    break loop
                }
                seq += 1
            }
            acc.lock.withLock { acc.lat += local; acc.ops += n; acc.errors += e; acc.exhausted += out }
            group.leave()
        }
        t.stackSize = 1 << 20
        t.start()
    }
    group.wait()
    return LoadResult(ops: acc.ops, errors: acc.errors, seconds: Double(Monotonic.nanos() - start) / 1e9, latenciesUs: acc.lat,
                      exhaustedClients: acc.exhausted)
}

/// `closedLoop` once the server processes `pids` are quiet (`settle`), with the CPU time they
/// used meanwhile. With `quiet`, the page cache is synced first and all of those processes must
/// be quiet instead (a side-by-side pass: both systems' processes).
func measuredLoop(pids: [Int32], quiet: [Int32]? = nil, clients: Int, duration: Double, makeClient: @escaping @Sendable () -> KeepAliveClient,
                  op: @escaping @Sendable (KeepAliveClient, Int, Int) -> LoadOp) -> LoadResult {
    if quiet != nil { sync() }
    settle(quiet ?? pids)
    let before = pids.isEmpty ? nil : ProcessStats.cpuSeconds(pids: pids)
    var r = closedLoop(clients: clients, duration: duration, makeClient: makeClient, op: op)
    if let b = before, let a = ProcessStats.cpuSeconds(pids: pids) { r.serverCPUSeconds = a - b }
    return r
}

/// Before a measurement: wait, at most `limit` seconds, until the processes `pids` together use
/// less than a tenth of a core over half a second, so that work left behind by the previous level
/// or by start-up (a ledger commit, a compaction snapshot, elections) does not fall into it.
/// (Data written without fsync is not flushed here: the kernel writes it back when it would in a
/// longer run, so it stays a cost of the system that wrote it.)
func settle(_ pids: [Int32], limit: Double = 15) {
    guard !pids.isEmpty else { return }
    let end = Monotonic.nanos() + UInt64(limit * 1e9)
    while Monotonic.nanos() < end {
        guard let a = ProcessStats.cpuSeconds(pids: pids) else { return }
        usleep(500_000)
        guard let b = ProcessStats.cpuSeconds(pids: pids) else { return }
        if b - a < 0.05 { return }
    }
}

/// Path of this executable, to start node processes.
func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

func freePort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

/// A local cluster of real `p2pos node run` processes for benchmarks.
final class LocalCluster {
    let root: String
    var dirs: [String] = []
    var peers: [String] = []
    var procs: [Process] = []

    init(nodes: Int, extraEnv: [String: String] = [:], waitForVoters: Bool = true, heartbeatInterval: Double = 1,
         apiMaxConnections: Int = NodeConfig.defaultAPIMaxConnections) throws {
        root = NSTemporaryDirectory() + "p2pos-bench-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try SecureFile.makeDirectory(root)
        let exe = selfExecutable()
        let now = Timestamp.now()
        var systemPub = ""
        var first = ""
        for i in 0..<nodes {
            let dir = root + "/n\(i)"
            let port = freePort()
            if i == 0 {
                let r = try createNewSystem(dataDir: dir, configPath: dir + "/config.json", clusterID: "bench", listen: ["127.0.0.1:\(port)"],
                                            validTo: now.adding(seconds: 86400), now: now, force: false)
                systemPub = r.json["system_pubkey"] as! String
                first = "/ip4/127.0.0.1/tcp/\(port)/p2p/\(r.json["peer_id"] as! String)"
                peers.append(r.json["peer_id"] as! String)
            } else {
                let key = PrivateKey.generate()
                var c = NodeConfig()
                c.clusterID = "bench"
                c.systemPubkey = systemPub
                c.initConnections = [InitConnection(type: .multiaddr, address: first)]
                c.listen = ["127.0.0.1:\(port)"]
                c.nodePrivateKey = key.base64
                c.dataDir = dir
                try SecureFile.makeDirectory(dir)
                try SecureFile.write(dir + "/config.json", c.jsonText(), overwrite: false)
                peers.append(key.peerID.base58)
            }
            // Quiet logs, fast heartbeats.
            var cfg = try NodeConfig.load(path: dir + "/config.json")
            cfg.logLevel = "warn"
            cfg.heartbeatInterval = heartbeatInterval
            cfg.apiMaxConnections = apiMaxConnections
            try SecureFile.write(dir + "/config.json", cfg.jsonText(), overwrite: true)
            dirs.append(dir)
        }
        for dir in dirs {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = ["node", "run", "--data-dir", dir]
            var env = ProcessInfo.processInfo.environment
            for (k, v) in extraEnv { env[k] = v }
            p.environment = env
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            let log = dir + "/node.log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardError = FileHandle(forWritingAtPath: log)
            try p.run()
            procs.append(p)
        }
        // Admit the other nodes with the admin key of node 0.
        let admin = try PrivateKey(base64: try SecureFile.read(dirs[0] + "/keys/admin.key"))
        let cfg0 = try NodeConfig.load(path: dirs[0] + "/config.json")
        try waitUntil(20, "node 0 socket") { self.get(0, "/healthz") != nil }
        if nodes > 1 {
            let snap = MembershipSnapshot.issue(adminKey: admin, clusterID: "bench", members: peers, proof: cfg0.adminProof, at: Timestamp.now())
            let c = KeepAliveClient(.unix(dirs[0] + "/p2pos.sock"))
            let (st, body) = try c.request("POST", "/v1/membership", body: [UInt8](snap.jsonData()))
            guard st == 200 else { throw P2POSError("BENCH", "publishing the bench membership failed: \(String(decoding: body, as: UTF8.self))") }
        }
        if waitForVoters { try waitUntil(60, "all voters and a leader") {
            guard let r = self.getJSON(0, "/v1/p2p/raft") else { return false }
            return (r["voters"] as? [String])?.count == nodes && !(r["leader"] as? String ?? "").isEmpty
        } }
    }

    func get(_ i: Int, _ path: String) -> [UInt8]? {
        let c = KeepAliveClient(.unix(dirs[i] + "/p2pos.sock"))
        guard let (st, b) = try? c.request("GET", path, body: []), st == 200 else { return nil }
        return b
    }

    func getJSON(_ i: Int, _ path: String) -> [String: Any]? {
        guard let b = get(i, path) else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(b))) as? [String: Any]
    }

    var leaderIndex: Int {
        for i in dirs.indices {
            if let r = getJSON(i, "/v1/p2p/raft"), r["role"] as? String == "leader" { return i }
        }
        return 0
    }

    func socket(_ i: Int) -> String { dirs[i] + "/p2pos.sock" }

    /// Each running node's peak resident set so far (`VmHWM` in /proc, KiB → MiB); nil where
    /// unknown (not Linux, or the node exited).
    var pids: [Int32] { procs.map(\.processIdentifier) }

    func peakRSSMiB() -> [Int?] {
        procs.map { p in
            guard p.isRunning, let bytes = ProcessStats.peakResidentBytes(pid: p.processIdentifier) else { return nil }
            return (bytes + (512 << 10)) >> 20
        }
    }

    func stop() {
        for p in procs where p.isRunning { p.terminate() }
        for p in procs { p.waitUntilExit() }
        if ProcessInfo.processInfo.environment["P2POS_KEEP"] == nil { try? FileManager.default.removeItem(atPath: root) } else { Out.err("kept \(root)") }
    }
}

func waitUntil(_ seconds: Double, _ what: String, _ cond: () -> Bool) throws {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if cond() { return }
        Thread.sleep(forTimeInterval: 0.1)
    }
    throw P2POSError("BENCH_TIMEOUT", "timed out waiting for \(what)")
}

/// A local 3-node etcd cluster started by scripts/etcd-cluster (Debian's etcd-server, loopback only).
final class EtcdCluster {
    let dir: String
    var clientPorts: [UInt16] = []
    let script: String

    init(nodes: Int, script: String) throws {
        self.script = script
        dir = NSTemporaryDirectory() + "p2pos-etcd-\(getpid())"
        let outFile = NSTemporaryDirectory() + "p2pos-etcd-ports-\(getpid())"
        let rc = runShell("exec /bin/bash '\(script)' start '\(dir)' \(nodes) > '\(outFile)' 2>&1 < /dev/null")
        guard rc == 0 else { throw P2POSError("ETCD", "\(script) start failed (exit \(rc)): \((try? String(contentsOfFile: outFile, encoding: .utf8)) ?? "")") }
        let out = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: outFile)
        clientPorts = out.split(separator: "\n").compactMap { UInt16($0.trimmingCharacters(in: .whitespaces)) }
        guard clientPorts.count == nodes else { throw P2POSError("ETCD", "etcd-cluster printed no ports: \(out)") }
    }

    func stop() {
        _ = runShell("exec /bin/bash '\(script)' stop '\(dir)' > /dev/null 2>&1 < /dev/null")
    }

    /// The etcd processes (the script writes `e1.pid` … `e<n>.pid`). All of them or none: a
    /// partial list would under-report etcd's CPU (reading e0…e<n−1> once silently dropped a
    /// member, so the CPU-per-put figures before the ninth session counted two of three).
    var pids: [Int32] {
        let ps = (1...max(1, clientPorts.count)).compactMap { i in
            (try? String(contentsOfFile: dir + "/e\(i).pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return ps.count == clientPorts.count ? ps : []
    }

    /// Index of the leader (etcd's JSON gateway reports it in /v3/maintenance/status).
    func leaderPort() -> UInt16 {
        for port in clientPorts {
            let c = KeepAliveClient(.tcp("127.0.0.1", port))
            if let (st, b) = try? c.request("POST", "/v3/maintenance/status", body: Array("{}".utf8)), st == 200,
               let o = try? JSONSerialization.jsonObject(with: Data(b)) as? [String: Any],
               let leader = o["leader"] as? String, let me = (o["header"] as? [String: Any])?["member_id"] as? String, leader == me {
                return port
            }
        }
        return clientPorts[0]
    }
}

/// Per-client pre-signed transactions, filled concurrently.
final class TxBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lists: [[[UInt8]]]
    init(count: Int) { lists = Array(repeating: [], count: count) }
    func set(_ i: Int, _ l: [[UInt8]]) { lock.withLock { lists[i] = l } }
    var all: [[[UInt8]]] { lock.withLock { lists } }
}

/// Run a shell command with posix_spawn and wait for it (Foundation's Process can hang when the
/// child leaves background grandchildren behind, as the etcd script does on purpose).
func runShell(_ cmd: String) -> Int32 {
    var pid: pid_t = 0
    let args = ["/bin/sh", "-c", cmd]
    var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { for a in cargs { free(a) } }
    let rc = posix_spawn(&pid, "/bin/sh", nil, nil, &cargs, environ)
    guard rc == 0 else { return -1 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status >> 8) & 0xff
}

func parseClients(_ s: String?) throws -> [Int] {
    let list = (s ?? "1,16,64").split(separator: ",").compactMap { Int($0) }
    guard !list.isEmpty, list.allSatisfy({ $0 >= 1 && $0 <= 1024 }) else { throw CLIError.usage("bench", "--clients must be a list like 1,16,64") }
    return list
}

func repoScript(_ name: String) -> String? {
    var dir = URL(fileURLWithPath: selfExecutable()).deletingLastPathComponent()
    for _ in 0..<6 {
        let cand = dir.appendingPathComponent("scripts/\(name)").path
        if FileManager.default.fileExists(atPath: cand) { return cand }
        dir = dir.deletingLastPathComponent()
    }
    let cwd = FileManager.default.currentDirectoryPath + "/scripts/\(name)"
    return FileManager.default.fileExists(atPath: cwd) ? cwd : nil
}

func fmtRow(_ name: String, _ c: Int, _ r: LoadResult) -> String {
    // (Foundation on Linux ignores widths on %@, so strings are padded here.)
    name.padding(toLength: 8, withPad: " ", startingAt: 0)
        + String(format: " %7d %12.0f %9.2f %9.2f %9.2f %8d ", c, r.opsPerSec, r.pct(0.5) / 1000, r.pct(0.95) / 1000, r.pct(0.99) / 1000, r.errors)
        + leftPad(r.cpuUsPerOp.map { String(format: "%.0f", $0) } ?? "-", 11)
}

/// `s` right-aligned in `width` columns.
func leftPad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// One pass of `bench raft` / `bench tx`: every level against a fresh p2pos cluster and (with
/// `compare == "etcd"`) a fresh etcd cluster running beside it.
struct ClusterBenchRun {
    var ours: [Int: LoadResult] = [:]
    var theirs: [Int: LoadResult] = [:]
    /// Peak RSS of each p2pos node, when it could be read for all of them.
    var rssMiB: [Int]? = nil
    /// The table rows and notes of this pass.
    var lines: [String] = []

    /// The per-level JSON objects (`levels` in the report).
    func levels(_ clients: [Int]) -> [[String: Any]] {
        clients.map { c in
            var o: [String: Any] = ["clients": c, "p2pos": ours[c]!.json]
            if let t = theirs[c] {
                let r = ours[c]!.ratios(to: t)
                o["etcd"] = t.json
                o["throughput_ratio"] = (r.throughput * 100).rounded() / 100
                o["p99_ratio"] = (r.p99 * 100).rounded() / 100
                if let cpu = r.cpu { o["cpu_per_op_ratio"] = (cpu * 100).rounded() / 100 }
            }
            return o
        }
    }

    /// "clients N: p2pos/etcd throughput …" for each level measured against etcd.
    func ratioLines(_ clients: [Int]) -> [String] {
        clients.compactMap { c in
            guard let t = theirs[c], let r = ours[c]?.ratios(to: t) else { return nil }
            var line = String(format: "clients %d: p2pos/etcd throughput %.2fx, p99 %.2fx", c, r.throughput, r.p99)
            if let cpu = r.cpu { line += String(format: ", server CPU per op %.2fx", cpu) }
            return line
        }
    }
}

/// One pass: a p2pos cluster and (with `compare == "etcd"`) an etcd cluster run side by side,
/// and each level is measured on both back to back, `p2posFirst` deciding which goes first (the
/// caller alternates it between passes). Before each measurement every process of both clusters
/// must be quiet and the page cache is synced, so neither system's leftover work (a compaction
/// snapshot, dirty pages of a ledger written without fsync) falls into the other's window. The
/// machine's speed drifts by tens of percent over minutes; measuring the two a few seconds apart
/// keeps that drift out of the ratios.
func clusterBenchRun(kind: String, nodes: Int, clients: [Int], duration: Double, size: Int, compare: String,
                     p2posFirst: Bool = true) throws -> ClusterBenchRun {
    var run = ClusterBenchRun()
    Out.err("bench \(kind): starting a \(nodes)-node p2pos cluster")
    var env = kind == "raft" ? ["P2POS_BENCH": "1"] : [String: String]()
    if let t = ProcessInfo.processInfo.environment["P2POS_TRACE"] { env["P2POS_TRACE"] = t }
    // Every client holds a connection to the leader's control socket (and, later, to etcd).
    let most = clients.max() ?? 1
    FileLimits.raiseSoftLimit(to: UInt64(most + 256))
    let cluster = try LocalCluster(nodes: nodes, extraEnv: env, apiMaxConnections: max(NodeConfig.defaultAPIMaxConnections, most + 16))
    defer { cluster.stop() }
    let leader = cluster.leaderIndex
    let sock = cluster.socket(leader)
    let payload = [UInt8](repeating: 0x61, count: size)

    var etcd: EtcdCluster? = nil
    var etcdPort: UInt16 = 0
    if compare == "etcd" {
        guard let script = repoScript("etcd-cluster") else { throw P2POSError("BENCH", "scripts/etcd-cluster not found; run from the source tree") }
        Out.err("bench \(kind): starting a \(nodes)-node etcd cluster")
        etcd = try EtcdCluster(nodes: nodes, script: script)
        Out.err("bench \(kind): etcd client ports \(etcd!.clientPorts)")
        etcdPort = etcd!.leaderPort()
        Out.err("bench \(kind): etcd leader on port \(etcdPort)")
    }
    defer { etcd?.stop() }
    let everyone = cluster.pids + (etcd?.pids ?? [])
    // Each put's body is its key between two fixed parts, built once (p2pos's txs are
    // pre-signed, so neither load generator builds much per request).
    let bodyHead = Array("{\"key\":\"".utf8)
    let bodyTail = Array("\",\"value\":\"\(Base64.encode(payload))\"}".utf8)

    for c in clients {
        // Sign this level's txs before either measurement (it takes both cores for a while).
        var frozen: [[[UInt8]]] = []
        if kind != "raft" {
            // Distinct pre-signed txs: enough for the level at up to 12k tx/s (above the ~8k/s verify ceiling).
            let perClient = Int(duration * 12_000) / c + 200
            let signers = (0..<c).map { _ in PrivateKey.generate() }
            let txBox = TxBox(count: c)
            let now = Timestamp.now()
            DispatchQueue.concurrentPerform(iterations: c) { i in
                var list: [[UInt8]] = []
                list.reserveCapacity(perClient)
                for j in 0..<perClient {
                    let sid = "b\(c)-\(i)-\(j)-\(Hex.encode(Sodium.randomBytes(4)))"
                    let payload = "{\"session_id\":\"\(sid)\",\"title\":\"bench\",\"steps\":[{\"step_id\":\"\(sid)-s\",\"title\":\"s\"}]}"
                    if let tx = try? TxTool.sign(op: "SESSION_CREATE", payloadJSON: payload, key: signers[i], clusterID: "bench", now: now) {
                        list.append(tx.encoded)
                    }
                }
                txBox.set(i, list)
            }
            frozen = txBox.all
        }
        let txs = frozen
        // Each client's next pre-signed tx, kept across the level's two p2pos halves (a tx sent
        // twice would be answered as a replay, which is cheaper). One slot per client thread.
        let cursor = UnsafeMutablePointer<Int>.allocate(capacity: max(1, c))
        cursor.initialize(repeating: 0, count: max(1, c))
        defer { cursor.deallocate() }
        let next = ClientSlots(value: cursor)
        // Next to etcd, each system is measured twice for half the duration, in the order
        // A B B A (A = whichever goes first in this run): the system measured first does better
        // (docs/benchmarks.md, twenty-third session), and this cancels that within every run.
        let part = etcd != nil ? duration / 2 : duration
        func measureOurs() -> LoadResult {
            Out.err("bench \(kind): p2pos, \(c) clients")
            if kind == "raft" {
                return measuredLoop(pids: cluster.pids, quiet: everyone, clients: c, duration: part, makeClient: { KeepAliveClient(.unix(sock)) }) { client, _, _ in
                    LoadOp.post(client, "/v1/bench/propose", payload)
                }
            }
            return measuredLoop(pids: cluster.pids, quiet: everyone, clients: c, duration: part, makeClient: { KeepAliveClient(.unix(sock)) }) { client, ci, _ in
                let i = next.value[ci]
                guard i < txs[ci].count else { return .exhausted }
                next.value[ci] = i + 1
                return LoadOp.post(client, "/v1/p2p/tx", txs[ci][i])
            }
        }
        func measureTheirs(_ e: EtcdCluster, _ half: Int) -> LoadResult {
            Out.err("bench \(kind): etcd, \(c) clients")
            let port = etcdPort
            return measuredLoop(pids: e.pids, quiet: everyone, clients: c, duration: part, makeClient: { KeepAliveClient(.tcp("127.0.0.1", port)) }) { client, ci, seq in
                var body = bodyHead
                body.reserveCapacity(bodyHead.count + 32 + bodyTail.count)
                body.append(contentsOf: Base64.encode(Array("k\(ci)-\(half)-\(seq)".utf8)).utf8)
                body.append(contentsOf: bodyTail)
                return LoadOp.post(client, "/v3/kv/put", body)
            }
        }
        if let e = etcd {
            let (a1, b1, b2, a2): (LoadResult, LoadResult, LoadResult, LoadResult)
            if p2posFirst {
                a1 = measureOurs(); b1 = measureTheirs(e, 0); b2 = measureTheirs(e, 1); a2 = measureOurs()
            } else {
                b1 = measureTheirs(e, 0); a1 = measureOurs(); a2 = measureOurs(); b2 = measureTheirs(e, 1)
            }
            run.ours[c] = a1.merged(with: a2)
            run.theirs[c] = b1.merged(with: b2)
        } else {
            run.ours[c] = measureOurs()
        }
        let r = run.ours[c]!
        run.lines.append(fmtRow("p2pos", c, r))
        if let t = run.theirs[c] { run.lines.append(fmtRow("etcd", c, t)) }
        if r.exhaustedClients > 0 {
            run.lines.append("  \(r.exhaustedClients) of \(c) clients used up their pre-signed txs before the end (after errors): this level's figures are incomplete")
        }
    }
    let rss = cluster.peakRSSMiB()
    if rss.allSatisfy({ $0 != nil }) {
        run.rssMiB = rss.map { $0! }
        run.lines.append("p2pos peak RSS per node (MiB): " + rss.map { "\($0!)" }.joined(separator: " / "))
    }
    run.lines += run.ratioLines(clients)
    return run
}

/// The median of `xs` (the mean of the middle two for an even count); nil when empty.
func median(_ xs: [Double]) -> Double? {
    let s = xs.sorted()
    guard !s.isEmpty else { return nil }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Per level over several runs: medians and ranges of both systems' figures and of the ratios,
/// and in how many runs p2pos had at least etcd's throughput and a lower p99. The machine is
/// shared and noisy, so one run proves little either way.
func clusterBenchSummary(_ runs: [ClusterBenchRun], clients: [Int]) -> (json: [[String: Any]], lines: [String]) {
    func r2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
    var json: [[String: Any]] = []
    var lines: [String] = ["summary over \(runs.count) runs (median, then range):"]
    for c in clients {
        let ours = runs.compactMap { $0.ours[c] }
        var o: [String: Any] = ["clients": c, "runs": ours.count]
        let ops = ours.map(\.opsPerSec), p50 = ours.map { $0.pct(0.5) / 1000 }, p99 = ours.map { $0.pct(0.99) / 1000 }
        o["p2pos_ops_per_sec_median"] = (median(ops) ?? 0).rounded()
        o["p2pos_p50_ms_median"] = r2(median(p50) ?? 0)
        o["p2pos_p99_ms_median"] = r2(median(p99) ?? 0)
        var line = String(format: "clients %d: p2pos %.0f ops/s (%.0f–%.0f), p50 %.2f ms, p99 %.2f ms", c, median(ops) ?? 0, ops.min() ?? 0, ops.max() ?? 0,
                          median(p50) ?? 0, median(p99) ?? 0)
        let pairs = runs.compactMap { r -> (LoadResult, LoadResult)? in
            guard let a = r.ours[c], let b = r.theirs[c] else { return nil }
            return (a, b)
        }
        if !pairs.isEmpty {
            let theirOps = pairs.map { $0.1.opsPerSec }, theirP99 = pairs.map { $0.1.pct(0.99) / 1000 }
            let ratios = pairs.map { $0.0.ratios(to: $0.1) }
            let tr = ratios.map(\.throughput), pr = ratios.map(\.p99)
            let atLeast = pairs.filter { $0.0.opsPerSec >= $0.1.opsPerSec }.count
            let below = pairs.filter { $0.0.pct(0.99) < $0.1.pct(0.99) }.count
            o["etcd_ops_per_sec_median"] = (median(theirOps) ?? 0).rounded()
            o["etcd_p99_ms_median"] = r2(median(theirP99) ?? 0)
            o["throughput_ratio_median"] = r2(median(tr) ?? 0)
            o["throughput_ratio_min"] = r2(tr.min() ?? 0)
            o["throughput_ratio_max"] = r2(tr.max() ?? 0)
            o["runs_throughput_at_least_etcd"] = atLeast
            o["p99_ratio_median"] = r2(median(pr) ?? 0)
            o["p99_ratio_max"] = r2(pr.max() ?? 0)
            o["runs_p99_below_etcd"] = below
            let cpu = ratios.compactMap(\.cpu)
            if !cpu.isEmpty {
                o["cpu_per_op_ratio_median"] = r2(median(cpu) ?? 0)
                o["cpu_per_op_ratio_min"] = r2(cpu.min() ?? 0)
                o["cpu_per_op_ratio_max"] = r2(cpu.max() ?? 0)
            }
            line += String(format: "; etcd %.0f ops/s (%.0f–%.0f), p99 %.2f ms; throughput %.2fx (%.2f–%.2f), at least etcd's in %d of %d; p99 %.2fx (max %.2f), below etcd's in %d of %d",
                           median(theirOps) ?? 0, theirOps.min() ?? 0, theirOps.max() ?? 0, median(theirP99) ?? 0,
                           median(tr) ?? 0, tr.min() ?? 0, tr.max() ?? 0, atLeast, pairs.count, median(pr) ?? 0, pr.max() ?? 0, below, pairs.count)
            if !cpu.isEmpty {
                line += String(format: "; server CPU per op %.2fx (%.2f–%.2f)", median(cpu) ?? 0, cpu.min() ?? 0, cpu.max() ?? 0)
            }
        }
        json.append(o)
        lines.append(line)
    }
    return (json, lines)
}

/// `p2pos bench raft` / `p2pos bench tx`: closed-loop load against a local cluster, next to etcd.
/// With `--runs N`, the whole pass (fresh clusters, every level on both) is repeated N times,
/// alternating which system each level measures first, and a summary gives medians, ranges and
/// how often each target held.
func runClusterBench(_ p: ParsedArgs, kind: String) throws -> Int32 {
    let nodes = try p.int("--nodes", default: 3, min: 1, max: 7)
    let clients = try parseClients(p.value("--clients"))
    let duration = parseDuration(p.value("--duration") ?? "10s") ?? 10
    let size = try p.int("--size", default: 256, min: 1, max: 1 << 20)
    let runsWanted = try p.int("--runs", default: 1, min: 1, max: 100)
    let compare = p.value("--compare") ?? "etcd"
    guard compare == "etcd" || compare == "none" else { throw CLIError.usage(p.commandName, "--compare must be etcd or none, got \"\(compare)\"") }
    var report: [String: Any] = ["kind": kind, "nodes": nodes, "duration_s": duration, "fsync": true]
    var lines: [String] = ["bench \(kind): \(nodes) nodes, closed loop, \(Int(duration))s per level, fsync on"
                           + (compare == "etcd" ? "; p2pos and etcd side by side, each level measured on both back to back"
                              + (runsWanted > 1 ? ", A B B A (A = p2pos in odd runs, etcd in even runs)" : ", p2pos etcd etcd p2pos") : "")
                           + (runsWanted > 1 ? ", \(runsWanted) runs" : "")]
    let header = "system  " + [("clients", 7), ("ops/s", 12), ("p50 ms", 9), ("p95 ms", 9), ("p99 ms", 9), ("errors", 8), ("cpu us/op", 11)]
        .map { " " + leftPad($0.0, $0.1) }.joined()
    var runs: [ClusterBenchRun] = []
    for k in 1...runsWanted {
        if runsWanted > 1 { Out.err("bench \(kind): run \(k) of \(runsWanted)") }
        let run = try clusterBenchRun(kind: kind, nodes: nodes, clients: clients, duration: duration, size: size, compare: compare,
                                      p2posFirst: k % 2 == 1)
        runs.append(run)
        if runsWanted > 1 { lines.append("run \(k) of \(runsWanted)") }
        lines.append(header)
        lines += run.lines
    }
    if runsWanted == 1 {
        if let rss = runs[0].rssMiB { report["p2pos_peak_rss_mib"] = rss }
        report["levels"] = runs[0].levels(clients)
    } else {
        report["runs"] = runs.map { r -> [String: Any] in
            var o: [String: Any] = ["levels": r.levels(clients)]
            if let rss = r.rssMiB { o["p2pos_peak_rss_mib"] = rss }
            return o
        }
        let summary = clusterBenchSummary(runs, clients: clients)
        report["summary"] = summary.json
        lines += summary.lines
    }
    if p.json { Out.print(Out.json(report)) } else { Out.print(lines.joined(separator: "\n")) }
    return ExitCode.success
}
