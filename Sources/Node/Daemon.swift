import ControlAPI
import DNS
import Foundation
import Identity
import Libp2p
import Ledger
import Membership
import Support
import Wire

/// Protocol IDs served by the daemon.
public enum P2POSProtocol {
    public static let membership = "/p2pos/membership/1.0.0"
    public static let membershipPush = "/p2pos/membership-push/1.0.0"
    public static let heartbeat = "/p2pos/heartbeat/1.0.0"
    public static let status = "/p2pos/status/1.0.0"
    public static let raft = "/p2pos/raft/1.0.0"
    public static let tx = "/p2pos/tx/1.0.0"
}

/// Counters exported on /metrics.
struct DaemonMetrics {
    var heartbeatsIn = 0
    var heartbeatsRejected = 0
    var heartbeatsOut = 0
    var snapshotsApplied = 0
    var snapshotsRejected = 0
    var statusRequests = 0
    var rateLimited = 0
}

/// A per-peer token bucket for the protocols open to any peer.
struct RateLimiter {
    var buckets: [String: (tokens: Double, at: UInt64)] = [:]
    let rate: Double      // tokens per second
    let burst: Double

    mutating func allow(_ key: String, now: UInt64 = Monotonic.nanos()) -> Bool {
        var b = buckets[key] ?? (burst, now)
        b.tokens = min(burst, b.tokens + Double(now &- b.at) / 1e9 * rate)
        b.at = now
        if buckets.count > 10_000 { buckets.removeAll(keepingCapacity: true) }
        guard b.tokens >= 1 else { buckets[key] = b; return false }
        b.tokens -= 1
        buckets[key] = b
        return true
    }
}

/// The long-running node: libp2p host, membership, heartbeats, presence, status and the control API.
public final class Daemon: @unchecked Sendable {
    public let config: NodeConfig
    let key: PrivateKey
    public let peerID: String
    let store: NodeStore
    public let host: Libp2pHost
    var server: ControlServer?
    let scheduler = Scheduler(label: "p2pos.daemon.scheduler")
    let systemKey: PublicKey?
    let startedAt = Timestamp.now()
    /// Held for the process lifetime: one daemon per data directory.
    let lockFD: Int32

    static func lockDataDir(_ dir: String) throws -> Int32 {
        let path = dir + "/daemon.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw P2POSError("DATA_DIR", "cannot open \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            throw P2POSError("DATA_DIR_LOCKED", "another p2pos daemon is already running on \(dir)",
                             hint: "stop it first (or use another --data-dir)")
        }
        return fd
    }

    private let lock = NSLock()
    private var _snapshot: MembershipSnapshot?
    /// `_snapshot`'s members as a set; assigned together with `_snapshot`.
    private var _memberSet: Set<String> = []
    private var _clusterID: String
    private var _state: RuntimeState = .unconfigured
    private var _connected: [String: String] = [:]          // peer -> remote addr
    private var _listenAddrs: [String: [String]] = [:]      // peer -> advertised addrs
    private var _metrics = DaemonMetrics()
    private var _limiter = RateLimiter(rate: 5, burst: 20)
    private var _dialing: Set<String> = []
    private var _stopping = false
    private var _consensus: Consensus?
    public var consensus: Consensus? { lock.withLock { _consensus } }

    func requireConsensus() throws -> Consensus {
        guard let c = consensus else {
            throw HTTPError(status: 503, code: "UNAVAILABLE", message: "this node has no cluster yet (state \(state.rawValue)); it joins once an admin adds it to the membership")
        }
        return c
    }

    /// Serializes `ensureConsensus`: start-up and an arriving snapshot may both call it, and
    /// only one of them may open the Raft log (the database is locked to its one owner).
    private let consensusOpenLock = NSLock()

    /// Open the Raft log and the ledger once the cluster is known.
    func ensureConsensus() {
        consensusOpenLock.lock()
        defer { consensusOpenLock.unlock() }
        let cluster = clusterID
        guard !cluster.isEmpty, consensus == nil, !lock.withLock({ _stopping }) else { return }
        do {
            let c = try Consensus(daemon: self, dataDir: config.dataDir, clusterID: cluster, maxVoters: config.raftMaxVoters,
                                  electionMs: config.raftElectionTimeoutMs, heartbeatMs: config.raftHeartbeatMs,
                                  snapshotEvery: UInt64(config.raftSnapshotEntries))
            lock.withLock { _consensus = c }
            c.start()
        } catch {
            Log.error("raft", "open_failed", ["reason": "\(error)"])
        }
    }

    public init(config: NodeConfig) throws {
        self.config = config
        key = try config.nodeKey()
        peerID = key.peerID.base58
        systemKey = try config.systemKey()
        try SecureFile.makeDirectory(config.dataDir)
        lockFD = try Daemon.lockDataDir(config.dataDir)
        store = try NodeStore(path: config.dataDir + "/p2pos.db")
        _clusterID = config.clusterID
        if _clusterID.isEmpty, let adopted = try store.meta("cluster_id") { _clusterID = adopted }
        var hc = HostConfig()
        hc.agentVersion = "p2pos/\(P2POSVersion.current)"
        host = try Libp2pHost(identity: key, config: hc)
        _snapshot = try store.loadSnapshot()
        _memberSet = Set(_snapshot?.members ?? [])
        // Only members' addresses are kept on disk (earlier versions stored every peer's).
        try? store.pruneAddrs(keep: _memberSet)
        for (k, v) in (try? store.allAddrs()) ?? [:] { _listenAddrs[k] = v }
        try importInitialSnapshot()
    }

    /// Known advertised addresses of a peer.
    public func knownAddrs(_ peer: String) -> [String] { lock.withLock { _listenAddrs[peer] ?? [] } }

    // MARK: state accessors

    public var clusterID: String { lock.lock(); defer { lock.unlock() }; return _clusterID }
    public var snapshot: MembershipSnapshot? { lock.lock(); defer { lock.unlock() }; return _snapshot }
    public var state: RuntimeState { lock.lock(); defer { lock.unlock() }; return _state }
    public var members: [String] { snapshot?.members ?? [] }
    /// O(1) membership check (the set is rebuilt whenever a snapshot is applied).
    public func isMember(_ peer: String) -> Bool { lock.withLock { _memberSet.contains(peer) } }
    var connectedPeers: [String: String] { lock.lock(); defer { lock.unlock() }; return _connected }

    /// Members online: this node (if a member) plus connected members.
    public var onlineMembers: Int {
        let m = Set(members)
        guard m.contains(peerID) else { return 0 }
        return 1 + connectedPeers.keys.filter { m.contains($0) }.count
    }

    /// `init --new-system` leaves membership.json; import it when it is newer than the stored one.
    func importInitialSnapshot() throws {
        let path = config.dataDir + "/membership.json"
        guard let data = FileManager.default.contents(atPath: path) else { return }
        let s: MembershipSnapshot
        do { s = try MembershipSnapshot.decode(data) } catch {
            Log.warn("membership", "import_failed", ["file": path, "reason": "\(error)"])
            return
        }
        if let cur = _snapshot, let a = cur.issuedAtTimestamp, let b = s.issuedAtTimestamp, b <= a { return }
        let r = apply(s, from: "file:\(path)")
        if let err = r { Log.warn("membership", "import_rejected", ["file": path, "reason": err]) }
    }

    // MARK: membership

    /// Validate and apply a snapshot; returns nil when applied, else the rejection reason.
    @discardableResult
    public func apply(_ s: MembershipSnapshot, from source: String) -> String? {
        lock.lock()
        var cluster = _clusterID
        let current = _snapshot
        lock.unlock()
        if cluster.isEmpty {
            // A joining node without a configured cluster adopts the first snapshot the system key vouches for.
            guard systemKey != nil else { return "this node has no cluster_id and no system_pubkey to vouch for one" }
            cluster = s.clusterID
        }
        do {
            try s.validate(clusterID: cluster, systemKey: systemKey, current: current, now: Timestamp.now())
        } catch {
            lock.lock(); _metrics.snapshotsRejected += 1; lock.unlock()
            Log.warn("membership", "snapshot_rejected", ["from": source, "issued_at": s.issuedAt, "reason": "\(error)"])
            return "\(error)"
        }
        do {
            try store.saveSnapshot(s)
            if clusterID.isEmpty { try store.setMeta("cluster_id", cluster) }
        } catch {
            Log.error("membership", "persist_failed", ["reason": "\(error)"])
            return "could not persist the snapshot: \(error)"
        }
        lock.lock()
        // Re-check under the lock: a concurrent apply may have installed a newer one.
        if let cur = _snapshot, let a = cur.issuedAtTimestamp, let b = s.issuedAtTimestamp, b <= a {
            lock.unlock()
            return "stale snapshot: issued_at \(s.issuedAt) is not newer than the current \(cur.issuedAt)"
        }
        _snapshot = s
        _memberSet = Set(s.members)
        if _clusterID.isEmpty {
            _clusterID = cluster
        }
        _metrics.snapshotsApplied += 1
        lock.unlock()
        Log.shared.setContext([("peer_id", peerID), ("cluster_id", cluster)])
        Log.info("membership", "snapshot_applied", ["from": source, "issued_at": s.issuedAt, "members": s.members.count])
        updateState()
        persistMemberAddrs()
        reconcilePeers()
        if server != nil { ensureConsensus() }
        for p in connectedPeers.keys.filter({ isMember($0) }).shuffled().prefix(3) { Task { await self.exchangePeers(with: p) } }
        return nil
    }

    /// Push a snapshot to every connected peer except `except`.
    func fanOut(_ s: MembershipSnapshot, except: String?) {
        let peers = connectedPeers.keys.filter { $0 != except }
        for p in peers {
            Task { [self] in
                do {
                    let answer = try await exchange(peer: p, proto: P2POSProtocol.membershipPush, request: s.jsonData(), maxReply: 4096)
                    Log.debug("membership", "pushed", ["to": p, "answer": String(decoding: answer, as: UTF8.self)])
                } catch {
                    Log.debug("membership", "push_failed", ["to": p, "reason": "\(error)"])
                }
            }
        }
    }

    /// Pull the current snapshot from a peer and apply it if newer.
    func pull(from peer: String) async {
        do {
            let req = Data(Out_json(["cluster_id": clusterID]).utf8)
            let reply = try await exchange(peer: peer, proto: P2POSProtocol.membership, request: req, maxReply: 1 << 20)
            guard let obj = try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any] else { return }
            if let snap = obj["snapshot"], !(snap is NSNull) {
                let s = try MembershipSnapshot.decode(JSONSerialization.data(withJSONObject: snap))
                if let cur = snapshot, cur.issuedAt == s.issuedAt { return }
                if let cur = snapshot?.issuedAtTimestamp, let n = s.issuedAtTimestamp, n <= cur { return }
                apply(s, from: peer)
            }
        } catch {
            Log.debug("membership", "pull_failed", ["from": peer, "reason": "\(error)"])
        }
    }

    // MARK: streams

    /// One JSON exchange on a fresh stream: request line out, reply line in, all within `timeout`.
    /// `optimistic`: pipeline the request behind the protocol proposal (one round trip); only for
    /// protocols every p2pos node serves.
    func exchange(peer: String, proto: String, request: Data, maxReply: Int, timeout: Double = 5, optimistic: Bool = false) async throws -> [UInt8] {
        let pid = try PeerID(string: peer)
        var line = [UInt8](request)
        line.append(0x0a)
        // Driven on the event loop (no task per step); a peer we are not connected to goes
        // through `openStream`, which can dial the addresses identify taught us.
        let r: Result<[UInt8], Libp2pError> = await withCheckedContinuation { cont in
            host.requestLine(to: pid, protocolID: proto, request: line, maxReply: maxReply + 1, timeout: timeout, optimistic: optimistic) { cont.resume(returning: $0) }
        }
        switch r {
        case .success(let bytes):
            if bytes.isEmpty { throw P2POSError("NO_REPLY", "\(proto): peer closed without a reply") }
            let end = bytes.firstIndex(of: 0x0a) ?? bytes.count
            guard end <= maxReply else { throw Libp2pError.tooLarge("line over \(maxReply) bytes") }
            return Array(bytes[..<end])
        case .failure(.notConnected):
            return try await exchangeOverTask(peer: pid, proto: proto, line: line, maxReply: maxReply, timeout: timeout)
        case .failure(.timeout):
            throw P2POSError("TIMEOUT", "\(proto): no reply from \(peer) within \(timeout)s")
        case .failure(let e):
            throw e
        }
    }

    private func exchangeOverTask(peer pid: PeerID, proto: String, line: [UInt8], maxReply: Int, timeout: Double) async throws -> [UInt8] {
        let peer = pid.base58
        let stream = try await host.openStream(to: pid, protocols: [proto])
        let deadline = Deadline(seconds: timeout) { stream.reset() }
        defer { deadline.cancel() }
        do {
            try await stream.write(line)
            try await stream.closeWrite()
            let reply = try await stream.readLine(maxLength: maxReply)
            await stream.close()
            guard let r = reply else { throw P2POSError("NO_REPLY", "\(proto): peer closed without a reply") }
            return Array(r.utf8)
        } catch {
            stream.reset()
            if deadline.fired { throw P2POSError("TIMEOUT", "\(proto): no reply from \(peer) within \(timeout)s") }
            throw error
        }
    }

    /// Read one request line from an inbound stream with a size bound and a deadline.
    func readRequest(_ s: Libp2pStream, max: Int) async -> [UInt8]? {
        let deadline = Deadline(seconds: 10) { s.reset() }
        defer { deadline.cancel() }
        do {
            guard let line = try await s.readLine(maxLength: max) else { return nil }
            return Array(line.utf8)
        } catch {
            return nil
        }
    }

    static let okLine: [UInt8] = Array(Out_json(["ok": true]).utf8) + [0x0a]

    func reply(_ s: Libp2pStream, _ obj: [String: Any]) async {
        do {
            try await s.writeLine(Out_json(obj))
            try await s.closeWrite()
        } catch {}
        await s.close()
    }

    func allowOpen(_ peer: String, _ proto: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if _limiter.allow(peer + proto) { return true }
        _metrics.rateLimited += 1
        return false
    }

    func registerHandlers() {
        // Raft and tx forwarding are for members only: anyone else is answered `na` during
        // protocol negotiation, before a handler (and its log line) runs.
        host.setProtected { [weak self] peer in self?.isMember(peer.base58) ?? false }
        host.setAuthorizer { [weak self] peer, proto in
            guard proto == P2POSProtocol.raft || proto == P2POSProtocol.tx else { return true }
            return self?.isMember(peer.base58) ?? false
        }
        host.setHandler(P2POSProtocol.membership) { [self] s in
            let peer = s.remotePeer.base58
            guard allowOpen(peer, "membership") else { s.reset(); return }
            guard let _ = await readRequest(s, max: 4096) else { s.reset(); return }
            if let snap = snapshot, let obj = try? JSONSerialization.jsonObject(with: snap.jsonData()) {
                await reply(s, ["snapshot": obj])
            } else {
                await reply(s, ["snapshot": NSNull(), "error": "no snapshot"])
            }
        }
        host.setHandler(P2POSProtocol.membershipPush) { [self] s in
            let peer = s.remotePeer.base58
            guard allowOpen(peer, "push") else { s.reset(); return }
            guard let req = await readRequest(s, max: 1 << 20) else { s.reset(); return }
            let snap: MembershipSnapshot
            do { snap = try MembershipSnapshot.decode(Data(req)) } catch {
                Log.warn("membership", "snapshot_rejected", ["from": peer, "reason": "\(error)"])
                await reply(s, ["applied": false, "error": "\(error)"])
                return
            }
            if let cur = snapshot, cur == snap {
                await reply(s, ["applied": false, "error": "already current"])
                return
            }
            if let err = apply(snap, from: peer) {
                await reply(s, ["applied": false, "error": err])
            } else {
                await reply(s, ["applied": true, "error": ""])
                if peer == snap.issuerPeerID { fanOut(snap, except: peer) }
            }
        }
        // Heartbeats are the busiest protocol (every member, every few seconds): served on the
        // event loop without a task per stream.
        host.setLineHandler(P2POSProtocol.heartbeat, maxLength: 4096) { [self] remote, req in
            let peer = remote.base58
            guard state != .unconfigured, isMember(peer) else {
                Log.debug("heartbeat", "refused", ["from": peer, "reason": "not a member or unconfigured"])
                lock.withLock { _metrics.heartbeatsRejected += 1 }
                return nil
            }
            do {
                let hb = try Heartbeat.decode(req)
                let ts = try hb.verify(clusterID: clusterID, expectedPeer: peer, isMember: true, now: Timestamp.now(), window: config.heartbeatWindow,
                                       senderKey: remote.publicKey)
                let addr = lock.withLock { _metrics.heartbeatsIn += 1; return _connected[peer] ?? "" }
                store.recordPresence(PresenceRecord(peerID: peer, lastRemoteAddr: addr, lastSeenAt: ts, rttMs: nil,
                                                    reachability: "reachable", observedBy: peerID))
                return Daemon.okLine
            } catch {
                lock.withLock { _metrics.heartbeatsRejected += 1 }
                Log.warn("heartbeat", "rejected", ["from": peer, "reason": "\(error)"])
                return Array(Out_json(["ok": false, "error": "\(error)"]).utf8) + [0x0a]
            }
        }
        host.setHandler(P2POSProtocol.status) { [self] s in
            let peer = s.remotePeer.base58
            guard let req = await readRequest(s, max: 4096) else { s.reset(); return }
            lock.withLock { _metrics.statusRequests += 1 }
            if state == .unconfigured {
                await reply(s, ["generated_at": Timestamp.now().rfc3339Nano, "peers": [Any](), "error": "node is unconfigured"])
                return
            }
            guard isMember(peer) else {
                await reply(s, ["generated_at": Timestamp.now().rfc3339Nano, "peers": [Any](), "error": "status is served to members only"])
                return
            }
            let scope = ((try? JSONSerialization.jsonObject(with: Data(req))) as? [String: Any])?["scope"] as? String ?? "local"
            if scope == "cluster" {
                let view = await clusterView()
                await reply(s, ["generated_at": Timestamp.now().rfc3339Nano, "peers": view, "error": ""])
            } else {
                await reply(s, ["generated_at": Timestamp.now().rfc3339Nano, "peers": localView(), "error": ""])
            }
        }
    }

    // MARK: views

    /// This node's presence view, itself included.
    public func localView() -> [[String: Any]] {
        let now = Timestamp.now()
        let conns = connectedPeers
        lock.lock(); let addrs = _listenAddrs; lock.unlock()
        var rows: [String: [String: Any]] = [:]
        for r in (try? store.presence()) ?? [] where isMember(r.peerID) || conns[r.peerID] != nil {
            var o = r.json
            o["state"] = conns[r.peerID] != nil ? "connected" : "disconnected"
            o["member"] = isMember(r.peerID)
            o["listen_addrs"] = addrs[r.peerID] ?? []
            rows[r.peerID] = o
        }
        for m in members where rows[m] == nil && m != peerID {
            rows[m] = ["peer_id": m, "last_remote_addr": conns[m] ?? "", "last_seen_at": "", "reachability": conns[m] != nil ? "reachable" : "unknown",
                       "observed_by": peerID, "state": conns[m] != nil ? "connected" : "never seen", "member": true,
                       "listen_addrs": addrs[m] ?? []]
        }
        rows[peerID] = ["peer_id": peerID, "last_remote_addr": "", "last_seen_at": now.rfc3339Nano, "reachability": "self",
                        "observed_by": peerID, "state": "self", "member": isMember(peerID),
                        "listen_addrs": host.listenAddresses.map { $0.description + "/p2p/\(peerID)" }]
        return rows.values.sorted { ($0["peer_id"] as? String ?? "") < ($1["peer_id"] as? String ?? "") }
    }

    /// The local view merged with every connected member's local view; newest last_seen_at wins.
    public func clusterView() async -> [[String: Any]] {
        var merged: [String: [String: Any]] = [:]
        func merge(_ rows: [[String: Any]]) {
            for r in rows {
                guard let p = r["peer_id"] as? String, !p.isEmpty else { continue }
                let t = Timestamp(rfc3339: r["last_seen_at"] as? String ?? "") ?? Timestamp(seconds: 0)
                if let old = merged[p], let ot = Timestamp(rfc3339: old["last_seen_at"] as? String ?? ""), ot >= t { continue }
                merged[p] = r
            }
        }
        merge(localView())
        let peers = connectedPeers.keys.filter { isMember($0) }
        await withTaskGroup(of: Rows.self) { group in
            for p in peers {
                group.addTask { [self] in
                    guard let reply = try? await exchange(peer: p, proto: P2POSProtocol.status,
                                                          request: Data("{\"scope\":\"local\"}".utf8), maxReply: 4 << 20, timeout: 2),
                          let obj = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
                          let rows = obj["peers"] as? [[String: Any]] else { return Rows(value: []) }
                    return Rows(value: rows)
                }
            }
            for await box in group {
                let rows = box.value
                merge(rows)
                learnAddrs(fromRows: rows)
            }
        }
        return merged.values.sorted { ($0["peer_id"] as? String ?? "") < ($1["peer_id"] as? String ?? "") }
    }

    /// Ask one member for its local view and learn the listen addresses of the members it knows.
    func exchangePeers(with peer: String) async {
        guard isMember(peer), state != .unconfigured else { return }
        guard let reply = try? await exchange(peer: peer, proto: P2POSProtocol.status, request: Data("{\"scope\":\"local\"}".utf8), maxReply: 4 << 20, timeout: 2),
              let obj = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
              let rows = obj["peers"] as? [[String: Any]] else { return }
        learnAddrs(fromRows: rows)
        reconcilePeers()
    }

    /// Learn members' listen addresses from status rows another member sent: a member's own row
    /// wins; another member's report only fills an unknown peer.
    func learnAddrs(fromRows rows: [[String: Any]]) {
        for r in rows {
            guard let p = r["peer_id"] as? String, isMember(p), let a = r["listen_addrs"] as? [String], !a.isEmpty else { continue }
            if r["state"] as? String == "self" || knownAddrs(p).isEmpty { learnAddrs(p, a) }
        }
    }

    /// Remember a peer's advertised addresses. Any peer can connect and identify, so only
    /// members' addresses are written to disk; others are kept in memory (so a peer that is
    /// added to the membership later can be dialled) up to `maxTransientAddrs` peers.
    func learnAddrs(_ peer: String, _ addrs: [String]) {
        guard peer != peerID else { return }
        let clean = addrs.filter { $0.hasPrefix("/") && $0.utf8.count <= 256 }.prefix(8).map { $0 }
        guard !clean.isEmpty else { return }
        lock.lock()
        let member = _memberSet.contains(peer)
        let changed = _listenAddrs[peer] != clean
        _listenAddrs[peer] = clean
        if !member && _listenAddrs.count > _memberSet.count + Daemon.maxTransientAddrs {
            for k in _listenAddrs.keys where k != peer && !_memberSet.contains(k) {
                _listenAddrs[k] = nil
                if _listenAddrs.count <= _memberSet.count + Daemon.maxTransientAddrs / 2 { break }
            }
        }
        lock.unlock()
        if changed && member { try? store.setAddrs(peer, clean) }
    }

    /// Non-members whose addresses are remembered in memory at most.
    static let maxTransientAddrs = 256

    /// After a membership change: write the addresses of new members, forget departed ones.
    func persistMemberAddrs() {
        let (members, known) = lock.withLock { (_memberSet, _listenAddrs) }
        for p in members { if let a = known[p] { try? store.setAddrs(p, a) } }
        try? store.pruneAddrs(keep: members)
    }

    // MARK: state

    func updateState() {
        let m = members
        let online = onlineMembers
        let new = RuntimeState.compute(isMember: m.contains(peerID), members: m.count, online: online)
        lock.lock()
        let old = _state
        _state = new
        lock.unlock()
        if old != new {
            Log.info("node", "state_change", ["from": old.rawValue, "to": new.rawValue, "online": online, "members": m.count])
            SystemdNotify.send("STATUS=\(new.rawValue) \(online)/\(m.count) members online")
        }
    }

    /// Keep dialing members we know addresses for; drop persistence for removed members.
    func reconcilePeers() {
        let m = Set(members)
        let conns = connectedPeers
        lock.lock(); let addrs = _listenAddrs; lock.unlock()
        for p in m where p != peerID && conns[p] == nil {
            guard let list = addrs[p], !list.isEmpty else { continue }
            lock.lock()
            let busy = _dialing.contains(p)
            if !busy { _dialing.insert(p) }
            lock.unlock()
            if busy { continue }
            Task { [self] in
                defer { lock.withLock { _ = _dialing.remove(p) } }
                for a in list {
                    guard var ma = try? Multiaddr(a) else { continue }
                    if ma.peerIDBytes == nil, let pid = try? PeerID(string: p) { ma = ma.withPeerID(pid.bytes) }
                    if (try? await host.dial(ma)) != nil { return }
                }
            }
        }
    }

    /// Reconcile the connected set with the host (events can be coalesced when simultaneous dials are deduplicated).
    func syncConnections() async {
        let live = Set(await host.connectedPeers().map { $0.base58 })
        let changed: Bool = lock.withLock {
            var changed = false
            for p in _connected.keys where !live.contains(p) { _connected.removeValue(forKey: p); changed = true }
            for p in live where _connected[p] == nil { _connected[p] = ""; changed = true }
            return changed
        }
        if changed { Log.debug("p2p", "connections_resynced", ["connected": live.count]) }
        updateState()
    }

    // MARK: periodic tasks

    func sendHeartbeats() {
        let cluster = clusterID
        guard state != .unconfigured, !cluster.isEmpty else { return }
        for p in connectedPeers.keys where isMember(p) {
            Task { [self] in
                let hb = Heartbeat.make(key: key, clusterID: cluster, at: Timestamp.now())
                do {
                    let r = try await exchange(peer: p, proto: P2POSProtocol.heartbeat, request: JSONEncoder().encode(hb), maxReply: 4096, optimistic: true)
                    lock.withLock { _metrics.heartbeatsOut += 1 }
                    if let o = try? JSONSerialization.jsonObject(with: Data(r)) as? [String: Any], o["ok"] as? Bool != true {
                        Log.warn("heartbeat", "refused_by_peer", ["peer": p, "reason": o["error"] as? String ?? "?"])
                    }
                } catch {
                    Log.debug("heartbeat", "send_failed", ["peer": p, "reason": "\(error)"])
                }
                if let pid = try? PeerID(string: p), let rtt = try? await host.ping(pid) {
                    let addr = lock.withLock { _connected[p] ?? "" }
                    store.recordPresence(PresenceRecord(peerID: p, lastRemoteAddr: addr, lastSeenAt: Timestamp.now(), rttMs: rtt * 1000,
                                                        reachability: "reachable", observedBy: peerID))
                }
            }
        }
    }

    func resolveBootstrap() {
        for c in config.initConnections {
            switch c.type {
            case .multiaddr:
                do { try host.addPersistentPeer(try Multiaddr(c.address)) } catch {
                    Log.warn("bootstrap", "bad_address", ["address": c.address, "reason": "\(error)"])
                }
            case .dns:
                let domain = c.address
                DispatchQueue.global().async { [self] in
                    do {
                        let server = ProcessInfo.processInfo.environment["P2POS_DNS_SERVER"].flatMap { $0.isEmpty ? nil : $0 }
                        let groups = try DNSTool.resolve(domain: domain, server: server).peers
                        var n = 0
                        for g in groups where g.peerID != peerID && !g.peerID.isEmpty {
                            for a in g.addrs {
                                if let ma = try? Multiaddr(a), ma.peerIDBytes != nil {
                                    try? host.addPersistentPeer(ma)
                                    n += 1
                                }
                            }
                        }
                        Log.info("bootstrap", "dns_resolved", ["domain": domain, "peers": groups.count, "addrs": n])
                    } catch {
                        Log.warn("bootstrap", "dns_failed", ["domain": domain, "reason": "\(error)"])
                    }
                }
            }
        }
    }

    func watchEvents() {
        let events = host.events()
        Task { [self] in
            for await e in events {
                switch e {
                case .connected(let peer, let addr, _):
                    let p = peer.base58
                    lock.withLock { _connected[p] = addr?.description ?? "" }
                    Log.info("p2p", "connected", ["peer": p, "addr": addr?.description ?? "", "member": isMember(p)])
                    updateState()
                    Task {
                        await self.pull(from: p)
                        await self.exchangePeers(with: p)
                    }
                case .disconnected(let peer, let reason):
                    let p = peer.base58
                    let addr = lock.withLock { _connected.removeValue(forKey: p) }
                    Log.info("p2p", "disconnected", ["peer": p, "reason": reason])
                    if isMember(p) {
                        store.recordPresence(PresenceRecord(peerID: p, lastRemoteAddr: addr ?? "", lastSeenAt: Timestamp.now(), rttMs: nil,
                                                            reachability: "unreachable", observedBy: peerID))
                    }
                    updateState()
                case .identified(let peer, let info):
                    learnAddrs(peer.base58, info.listenAddrs.map { $0.description })
                }
            }
        }
    }

    // MARK: control API

    func buildRouter() -> Router {
        let r = Router()
        r.get("/healthz") { [self] _ in
            .jsonObject(["ok": true, "state": state.rawValue, "peer_id": peerID])
        }
        r.addTask("GET", "/v1/status") { [self] req in
            let cluster = req.queryValue("scope") == "cluster"
            return .jsonObject(["node": nodeInfo(), "peers": cluster ? await clusterView() : localView(),
                                "scope": cluster ? "cluster" : "local", "generated_at": Timestamp.now().rfc3339Nano])
        }
        r.addTask("GET", "/v1/peers") { [self] _ in
            var out: [[String: Any]] = []
            for (p, addr) in connectedPeers.sorted(by: { $0.key < $1.key }) {
                var o: [String: Any] = ["peer_id": p, "addr": addr, "member": isMember(p)]
                if let pid = try? PeerID(string: p), let info = host.info(for: pid) {
                    o["agent"] = info.agentVersion
                    o["protocols"] = info.protocols
                }
                out.append(o)
            }
            return .jsonObject(["peers": out])
        }
        r.get("/v1/membership") { [self] _ in
            var o: [String: Any] = ["state": state.rawValue, "cluster_id": clusterID]
            if let s = snapshot, let j = try? JSONSerialization.jsonObject(with: s.jsonData()) { o["snapshot"] = j } else { o["snapshot"] = NSNull() }
            return .jsonObject(o)
        }
        r.post("/v1/membership") { [self] req in
            let s: MembershipSnapshot
            do { s = try MembershipSnapshot.decode(Data(req.body)) } catch {
                throw HTTPError(status: 400, code: "MALFORMED", message: "\(error)")
            }
            if let err = apply(s, from: "control-api") {
                throw HTTPError(status: 409, code: "SNAPSHOT_REJECTED", message: err)
            }
            fanOut(s, except: nil)
            return .jsonObject(["applied": true, "issued_at": s.issuedAt, "members": s.members])
        }
        r.get("/metrics") { [self] _ in .prometheus(metricsText()) }
        Consensus.registerRoutes(r, daemon: self)
        return r
    }

    public func nodeInfo() -> [String: Any] {
        [
            "peer_id": peerID, "cluster_id": clusterID, "state": state.rawValue, "members_total": members.count,
            "members_online": onlineMembers, "version": P2POSVersion.current,
            "uptime_s": Int(Timestamp.now().interval(since: startedAt)),
            "listen_addrs": host.listenAddresses.map { $0.description + "/p2p/\(peerID)" },
            "snapshot_issued_at": snapshot?.issuedAt ?? "",
        ]
    }

    func metricsText() -> String {
        lock.lock(); let m = _metrics; let conns = _connected.count; lock.unlock()
        let st = state
        var t = ""
        func metric(_ name: String, _ help: String, _ type: String, _ value: Any, _ labels: String = "") {
            t += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name)\(labels) \(value)\n"
        }
        metric("p2pos_peers_connected", "Connected libp2p peers.", "gauge", conns)
        metric("p2pos_members_total", "Members in the current snapshot.", "gauge", members.count)
        metric("p2pos_members_online", "Members online, this node included.", "gauge", onlineMembers)
        t += "# HELP p2pos_state Runtime state (1 for the current one).\n# TYPE p2pos_state gauge\n"
        for s in ["unconfigured", "degraded", "healthy"] { t += "p2pos_state{state=\"\(s)\"} \(st.rawValue == s ? 1 : 0)\n" }
        metric("p2pos_heartbeats_received_total", "Heartbeats accepted.", "counter", m.heartbeatsIn)
        metric("p2pos_heartbeats_rejected_total", "Heartbeats rejected.", "counter", m.heartbeatsRejected)
        metric("p2pos_heartbeats_sent_total", "Heartbeats sent and answered.", "counter", m.heartbeatsOut)
        metric("p2pos_snapshots_applied_total", "Membership snapshots applied.", "counter", m.snapshotsApplied)
        metric("p2pos_snapshots_rejected_total", "Membership snapshots rejected.", "counter", m.snapshotsRejected)
        metric("p2pos_rate_limited_total", "Requests refused by the per-peer rate limit.", "counter", m.rateLimited)
        metric("p2pos_presence_flushes_total", "Presence write transactions (batched).", "counter", store.flushes)
        let sig = SignatureMemo.shared.counts
        metric("p2pos_signature_batches_total", "Batch verifications of tx signatures.", "counter", sig.batches)
        t += "# HELP p2pos_signatures_checked_total Tx signatures verified, in batches or one at a time.\n# TYPE p2pos_signatures_checked_total counter\n"
        t += "p2pos_signatures_checked_total{how=\"batch\"} \(sig.batched)\np2pos_signatures_checked_total{how=\"single\"} \(sig.singles)\n"
        // The process (the names Prometheus client libraries use).
        if let v = ProcessStats.residentBytes() { metric("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", v) }
        if let v = ProcessStats.peakResidentBytes() { metric("p2pos_process_peak_resident_memory_bytes", "Peak resident memory size in bytes.", "gauge", v) }
        if let v = ProcessStats.virtualBytes() { metric("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", v) }
        if let v = ProcessStats.openFDs() { metric("process_open_fds", "Open file descriptors.", "gauge", v) }
        metric("process_cpu_seconds_total", "User and system CPU time in seconds.", "counter", String(format: "%.3f", ProcessStats.cpuSeconds()))
        metric("process_start_time_seconds", "Start time since the Unix epoch in seconds.", "gauge", startedAt.seconds)
        // Raft, once this node runs consensus.
        if let c = consensus {
            let s = c.status()
            metric("p2pos_raft_term", "Current Raft term.", "gauge", s["term"] ?? 0)
            metric("p2pos_raft_leader", "1 when this node is the Raft leader.", "gauge", (s["role"] as? String) == "leader" ? 1 : 0)
            metric("p2pos_raft_commit_index", "Highest Raft index known committed.", "gauge", s["commit_index"] ?? 0)
            metric("p2pos_raft_applied_index", "Highest Raft index applied to the ledger.", "gauge", s["applied_index"] ?? 0)
            metric("p2pos_raft_last_index", "Last Raft index in this node's log.", "gauge", s["last_index"] ?? 0)
            metric("p2pos_raft_snapshot_index", "Raft index of the latest snapshot (the log is compacted up to it).", "gauge", s["snapshot_index"] ?? 0)
        }
        // Disk use of the data directory's files.
        t += "# HELP p2pos_storage_bytes Size of the data directory's files in bytes.\n# TYPE p2pos_storage_bytes gauge\n"
        let dir = config.dataDir
        for f in ["p2pos.db", "p2pos.db-wal", "raft.db", "raft.db-wal", "ledger.db", "ledger.db-wal"] {
            if let v = ProcessStats.fileBytes(dir + "/" + f) { t += "p2pos_storage_bytes{file=\"\(f)\"} \(v)\n" }
        }
        let snapshots = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix("raft-snapshot-") }
            .compactMap { ProcessStats.fileBytes(dir + "/" + $0) }.reduce(0, +)
        t += "p2pos_storage_bytes{file=\"raft-snapshot\"} \(snapshots)\n"
        let segments = ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/raft-log")) ?? [])
            .compactMap { ProcessStats.fileBytes(dir + "/raft-log/" + $0) }.reduce(0, +)
        t += "p2pos_storage_bytes{file=\"raft-log\"} \(segments)\n"
        return t
    }

    // MARK: lifecycle

    /// Start everything; returns once listening and serving.
    public func start() throws {
        Log.shared.setContext([("peer_id", peerID)] + (clusterID.isEmpty ? [] : [("cluster_id", clusterID)]))
        registerHandlers()
        watchEvents()
        var listen: [Multiaddr] = []
        for l in config.listen {
            guard let hp = HostPort.parse(l) else { continue }
            listen.append(try Multiaddr(hp.multiaddr))
        }
        let bound = try host.listen(listen)
        Log.info("node", "listening", ["addrs": bound.map { $0.description }.joined(separator: ",")])
        // Descriptors for every connection the limits allow (the control API holds up to twice
        // its limit while answering 503s), plus the node's files.
        let fdsWanted = UInt64(2 * config.apiMaxConnections + host.config.maxConnections + 256)
        if let soft = FileLimits.raiseSoftLimit(to: fdsWanted), soft < fdsWanted {
            Log.warn("node", "fd_limit_low", ["limit": soft, "wanted": fdsWanted,
                                              "reason": "the hard RLIMIT_NOFILE is below what the connection limits need; raise LimitNOFILE"])
        }
        var sc = ControlServerConfig(socketPath: config.socketPath, tcpListen: config.apiListen.isEmpty ? nil : config.apiListen)
        sc.maxConnections = config.apiMaxConnections
        let server = ControlServer(config: sc, router: buildRouter())
        try server.start()
        self.server = server
        Log.info("api", "serving", ["socket": config.socketPath])
        updateState()
        ensureConsensus()
        resolveBootstrap()
        scheduler.add(.init(name: "presence_flush", interval: 1, runOnStart: false) { [self] in try store.flushPresence() })
        scheduler.add(.init(name: "state", interval: 1, runOnStart: false) { [self] in
            Task { await syncConnections() }
        })
        scheduler.add(.init(name: "heartbeat", interval: config.heartbeatInterval, runOnStart: true) { [self] in sendHeartbeats() })
        scheduler.add(.init(name: "reconcile", interval: 1, runOnStart: false) { [self] in reconcilePeers() })
        scheduler.add(.init(name: "membership_pull", interval: 30, runOnStart: false) { [self] in
            for p in connectedPeers.keys { Task { await self.pull(from: p) } }
        })
        scheduler.add(.init(name: "peer_exchange", interval: 2, runOnStart: false) { [self] in
            // Gossip-style: only while some member is not connected, ask up to three connected members.
            guard state != .unconfigured else { return }
            let conns = connectedPeers
            let missing = members.filter { $0 != peerID && conns[$0] == nil }
            guard !missing.isEmpty else { return }
            for p in conns.keys.filter({ isMember($0) }).shuffled().prefix(3) { Task { await self.exchangePeers(with: p) } }
        })
        scheduler.add(.init(name: "dns_refresh", interval: 300, runOnStart: false) { [self] in resolveBootstrap() })
        // READY first: the watchdog task runs as soon as it is added, and systemd should hear
        // that start-up finished before the first keep-alive.
        SystemdNotify.send("READY=1\nSTATUS=\(state.rawValue)")
        if let wd = SystemdNotify.watchdogInterval {
            scheduler.add(.init(name: "watchdog", interval: wd / 2) { SystemdNotify.send("WATCHDOG=1") })
        }
        Log.info("node", "started", ["state": state.rawValue, "members": members.count])
    }

    /// Drain and stop: stop accepting, flush presence, close connections.
    public func stop() {
        lock.lock()
        if _stopping { lock.unlock(); return }
        _stopping = true
        lock.unlock()
        SystemdNotify.send("STOPPING=1")
        Log.info("node", "stopping", [:])
        scheduler.stop()
        // Wait for a Consensus being opened right now; none opens after `_stopping` is set.
        consensusOpenLock.withLock { consensus }?.stop()
        server?.stop(drain: 2)
        host.close()
        do { try store.flushPresence() } catch { Log.warn("node", "flush_failed", ["reason": "\(error)"]) }
        Log.info("node", "stopped", [:])
    }
}

/// Carries JSON rows across task boundaries (they are built and read by one task at a time).
struct Rows: @unchecked Sendable { let value: [[String: Any]] }

/// Runs `onExpire` once after `seconds` unless cancelled first (used to reset stalled streams).
final class Deadline: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var _fired = false

    init(seconds: Double, onExpire: @escaping @Sendable () -> Void) {
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak self] in
            guard let self else { return }
            self.lock.lock()
            let run = !self.done
            self.done = true
            self._fired = run
            self.lock.unlock()
            if run { onExpire() }
        }
    }

    var fired: Bool { lock.lock(); defer { lock.unlock() }; return _fired }

    func cancel() {
        lock.lock()
        done = true
        lock.unlock()
    }
}

func Out_json(_ obj: Any) -> String {
    // The API's fast writer gives the same text for the plain values the daemon builds.
    if obj is [String: Any] || obj is [Any], let b = PlainJSON.encode(obj) { return String(decoding: b, as: UTF8.self) }
    guard let d = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
    return String(decoding: d, as: UTF8.self)
}

/// The version string of this build.
public enum P2POSVersion {
    public static let current = "0.1.0"
}
