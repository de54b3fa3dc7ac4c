import Foundation
import Glibc
import Identity
import Support
import Wire

/// Accepts connections on one listening socket.
final class Listener: FDHandler {
    let fd: Int32
    unowned let core: HostCore
    init(fd: Int32, core: HostCore) { self.fd = fd; self.core = core }
    func onReadable() { core.acceptAll(self) }
    func onWritable() {}
    func onHangup() {}
}

/// The host's loop-owned state: listeners, connections, dials, persistent peers.
final class HostCore: ConnectionDelegate, @unchecked Sendable {
    let loop: EventLoop
    let identity: PrivateKey
    let config: HostConfig
    weak var host: Libp2pHost?
    private var listeners: [Int32: Listener] = [:]
    private var conns: [UInt64: Connection] = [:]
    /// The connection used for new streams, per peer.
    private var primary: [PeerID: Connection] = [:]
    private var dialWaiters: [UInt64: [CheckedContinuation<PeerID, Error>]] = [:]
    /// In-progress dials by expected peer, so concurrent dials share one connection attempt.
    private var dialsByPeer: [PeerID: UInt64] = [:]
    private var pendingHandshakes = 0
    /// Inbound handshakes in progress per IP group.
    private var pendingByIP: [String: Int] = [:]
    private var persistent: [PeerID: (addr: Multiaddr, attempt: Int, timer: UInt64?)] = [:]
    private var shuttingDown = false
    private var sweepTimer: UInt64? = nil
    private let limits: ConnectionLimits
    private var serialCounter: UInt64 = 0
    /// Failed inbound handshakes per remote IP: count in the current minute, ban deadline.
    private var failures: [String: (count: Int, since: UInt64, bannedUntil: UInt64)] = [:]

    private func nextSerial() -> UInt64 {
        serialCounter += 1
        return serialCounter
    }

    init(loop: EventLoop, identity: PrivateKey, config: HostConfig) {
        self.loop = loop
        self.identity = identity
        self.config = config
        var l = ConnectionLimits()
        l.maxStreams = config.maxStreamsPerConnection
        l.inboundStreamsPerSecond = config.inboundStreamsPerSecond
        l.inboundStreamBurst = config.inboundStreamBurst
        limits = l
    }

    // MARK: listeners

    func addListener(_ fd: Int32) {
        let l = Listener(fd: fd, core: self)
        listeners[fd] = l
        loop.register(fd, l)
        startSweep()
    }

    func acceptAll(_ l: Listener) {
        for _ in 0..<64 {
            let fd = accept(l.fd, nil, nil)
            if fd < 0 { return }
            Sock.setNonBlocking(fd)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if shuttingDown || conns.count >= config.maxConnections {
                refused("connection limit")
                Glibc.close(fd)
                continue
            }
            let remote = Sock.peerAddr(fd)
            if let ip = HostCore.ipKey(remote), let f = failures[ip], f.bannedUntil > Monotonic.nanos() {
                Glibc.close(fd)
                continue
            }
            // Room for this handshake: drop the oldest one from its own IP group when that group
            // is at its limit, or from the busiest group when all slots are taken.
            let group = HostCore.ipGroup(remote)
            if let g = group, (pendingByIP[g] ?? 0) >= config.maxPendingHandshakesPerIP {
                evictOldestPending(g)
                if (pendingByIP[g] ?? 0) >= config.maxPendingHandshakesPerIP {
                    refused("pending handshakes per IP")
                    Glibc.close(fd)
                    continue
                }
            }
            if pendingHandshakes >= config.maxPendingHandshakes, let busiest = pendingByIP.max(by: { $0.value < $1.value })?.key {
                evictOldestPending(busiest)
            }
            if pendingHandshakes >= config.maxPendingHandshakes {
                refused("pending handshake limit")
                Glibc.close(fd)
                continue
            }
            Sock.setNoDelay(fd)
            let c = Connection(serial: nextSerial(), fd: fd, loop: loop, dialer: false, identity: identity, expected: nil, limits: limits,
                               remoteAddr: remote, localAddr: Sock.localAddr(fd), connecting: false)
            c.ipGroup = group
            if let g = group { pendingByIP[g, default: 0] += 1 }
            track(c)
            loop.register(fd, c)
            c.start()
        }
    }

    /// A handshake that has sent something and is this young is not dropped for a newer one: an
    /// honest handshake finishes well within it.
    static let evictionGraceNanos: UInt64 = 500_000_000

    /// Close one inbound handshake still in progress from `group`: the oldest that has sent
    /// nothing at all, else the oldest past the grace period. If there is none, the new
    /// connection is the one refused.
    private func evictOldestPending(_ group: String) {
        let pending = conns.values.filter { !$0.isDialer && !$0.isEstablished && !$0.isClosed && $0.ipGroup == group }
        let now = Monotonic.nanos()
        guard let victim = pending.filter({ !$0.receivedAny }).min(by: { $0.serial < $1.serial })
                ?? pending.filter({ now &- $0.openedAt >= HostCore.evictionGraceNanos }).min(by: { $0.serial < $1.serial })
        else { return }
        victim.evicted = true
        refused("pending handshake limit")
        victim.fail("handshake slots full; dropped the oldest from \(group)")
    }

    private func pendingDone(_ c: Connection) {
        guard let g = c.ipGroup, let n = pendingByIP[g] else { return }
        if n <= 1 { pendingByIP[g] = nil } else { pendingByIP[g] = n - 1 }
    }

    /// The IP of a multiaddr for per-IP limits; IPv6 addresses count per /64.
    static func ipGroup(_ addr: Multiaddr?) -> String? {
        guard let key = ipKey(addr) else { return nil }
        // IPv4 (and IPv4-mapped IPv6, which V6ONLY listeners never see) count per address.
        guard key.hasPrefix("/ip6/"), !key.contains(".") else { return key }
        let parts = key.dropFirst(5).split(separator: ":", omittingEmptySubsequences: false)
        // Expand "::" enough to take the first four groups.
        if let gap = parts.firstIndex(of: "") {
            let head = Array(parts[..<gap])
            let tailCount = parts.count - gap - 1
            let filled = head + Array(repeating: Substring("0"), count: max(0, 8 - head.count - tailCount))
            return "/ip6/" + filled.prefix(4).joined(separator: ":") + "::/64"
        }
        return "/ip6/" + parts.prefix(4).joined(separator: ":") + "::/64"
    }

    /// Refused connections are logged at most once a second, with how many since the last line:
    /// a flood of connection attempts must not become a flood of log lines.
    private var refusedLog = LogEvery()
    private var failedLog = LogEvery()
    private func refused(_ reason: String) {
        if let n = refusedLog.count() { Log.warn("LIBP2P", "connection_refused", ["reason": reason, "count": n]) }
    }

    private func track(_ c: Connection) {
        c.delegate = self
        conns[c.serial] = c
        pendingHandshakes += 1
        let serial = c.serial
        loop.schedule(after: config.handshakeTimeout) { [weak self] in
            guard let self = self, let c = self.conns[serial], !c.isEstablished else { return }
            Log.info("LIBP2P", "handshake_timeout", ["remote": c.remoteAddr?.description ?? "?"])
            c.fail("handshake timeout")
        }
    }

    private func startSweep() {
        guard sweepTimer == nil, !shuttingDown else { return }
        var period = 5.0
        if config.idleTimeout > 0 { period = min(period, config.idleTimeout / 4) }
        if config.keepaliveInterval > 0 { period = min(period, config.keepaliveInterval / 2) }
        guard config.idleTimeout > 0 || config.keepaliveInterval > 0 else { return }
        sweepTimer = loop.schedule(after: period) { [weak self] in
            guard let self = self else { return }
            self.sweepTimer = nil
            self.sweep()
            if !self.shuttingDown { self.startSweep() }
        }
    }

    /// Close idle connections; send keepalive pings and drop connections that stop answering.
    private func sweep() {
        let now = Monotonic.nanos()
        for (_, c) in conns where c.isEstablished {
            if config.keepaliveInterval > 0 {
                if let sent = c.keepaliveSentAt {
                    if Double(now - sent) / 1e9 > config.keepaliveTimeout {
                        Log.info("LIBP2P", "keepalive_timeout", ["peer_id": c.remotePeer?.description ?? "?"])
                        c.close(reason: "keepalive timeout")
                        continue
                    }
                } else if Double(now - c.lastActivity) / 1e9 >= config.keepaliveInterval {
                    c.keepaliveSentAt = now
                    c.ping { [weak c] _ in c?.keepaliveSentAt = nil }
                }
            }
            if config.idleTimeout > 0 && c.streamCount == 0, let p = c.remotePeer, persistent[p] == nil,
               Double(now - c.lastStreamActivity) / 1e9 > config.idleTimeout {
                c.close(reason: "idle timeout")
            }
        }
    }

    static func ipKey(_ addr: Multiaddr?) -> String? {
        guard let first = addr?.components.first else { return nil }
        return Multiaddr(components: [first]).description
    }

    /// Count a failed inbound handshake; ban the IP for a while past the limit.
    private func recordFailure(_ addr: Multiaddr?) {
        guard config.handshakeFailureLimit > 0, let ip = HostCore.ipKey(addr) else { return }
        let now = Monotonic.nanos()
        if failures.count > 4096 {
            failures = failures.filter { $0.value.bannedUntil > now }
            if failures.count > 4096 { failures.removeAll() }
        }
        var f = failures[ip] ?? (0, now, 0)
        if now - f.since > 60_000_000_000 { f = (0, now, f.bannedUntil) }
        f.count += 1
        if f.count >= config.handshakeFailureLimit && f.bannedUntil <= now {
            f.bannedUntil = now + UInt64(config.handshakeFailureBan * 1e9)
            f.count = 0
            f.since = now
            Log.warn("LIBP2P", "peer_rate_limited", ["remote": ip, "reason": "\(config.handshakeFailureLimit) failed handshakes",
                                                     "seconds": config.handshakeFailureBan])
        }
        failures[ip] = f
    }

    // MARK: dialing

    func dial(_ ss: sockaddr_storage, addr: Multiaddr, expected: PeerID?, _ cont: CheckedContinuation<PeerID, Error>) {
        if shuttingDown { cont.resume(throwing: Libp2pError.dialFailed("host is closing")); return }
        if let e = expected {
            if let c = primary[e], c.isEstablished { cont.resume(returning: e); return }
            if let serial = dialsByPeer[e], conns[serial] != nil { dialWaiters[serial, default: []].append(cont); return }
        }
        // Our own dials to protected peers (members) are not held back by strangers' handshakes.
        let protectedDial = expected.map { host?.isProtected($0) ?? false } ?? false
        guard conns.count < config.maxConnections, pendingHandshakes < config.maxPendingHandshakes || protectedDial else {
            cont.resume(throwing: Libp2pError.limit("connection or pending handshake limit")); return
        }
        let fd: Int32
        do { fd = try Sock.connect(ss) } catch { cont.resume(throwing: error); return }
        let c = Connection(serial: nextSerial(), fd: fd, loop: loop, dialer: true, identity: identity, expected: expected, limits: limits,
                           remoteAddr: addr, localAddr: nil, connecting: true)
        track(c)
        dialWaiters[c.serial] = [cont]
        if let e = expected { dialsByPeer[e] = c.serial }
        loop.register(fd, c, write: true)
        startSweep()
        let serial = c.serial
        loop.schedule(after: config.dialTimeout) { [weak self] in
            guard let self = self, let c = self.conns[serial], !c.isEstablished else { return }
            c.fail("dial timeout after \(self.config.dialTimeout)s")
        }
    }

    func openStream(_ peer: PeerID, _ cont: CheckedContinuation<StreamCore, Error>) {
        guard let c = primary[peer], c.isEstablished else { cont.resume(throwing: Libp2pError.notConnected(peer.base58)); return }
        do { cont.resume(returning: try c.openStream()) } catch { cont.resume(throwing: error) }
    }

    func connectedPeers() -> [PeerID] { primary.keys.sorted() }

    /// Loop thread: whether a connection to `peer` is open (as `connectedPeers` would list it).
    func hasConnection(_ peer: PeerID) -> Bool { primary[peer] != nil }

    /// Loop thread: the established connection to `peer`, if any.
    func establishedConnection(_ peer: PeerID) -> Connection? {
        guard let c = primary[peer], c.isEstablished else { return nil }
        return c
    }

    /// Open (established or handshaking) connections to `peer`.
    func connectionCount(_ peer: PeerID) -> Int { conns.values.filter { $0.remotePeer == peer && !$0.isClosed }.count }

    func disconnect(_ peer: PeerID) {
        for (_, c) in conns where c.remotePeer == peer { c.close(reason: "disconnect requested") }
    }

    func muxerPing(_ peer: PeerID, _ cont: CheckedContinuation<Double, Error>) {
        guard let c = primary[peer] else { cont.resume(throwing: Libp2pError.notConnected(peer.base58)); return }
        var done = false
        c.ping { rtt in
            if !done { done = true; cont.resume(returning: rtt) }
        }
        loop.schedule(after: 10) {
            if !done { done = true; cont.resume(throwing: Libp2pError.timeout("yamux ping")) }
        }
    }

    // MARK: persistent peers

    func addPersistent(_ peer: PeerID, _ addr: Multiaddr) {
        persistent[peer] = (addr, 0, nil)
        if primary[peer] == nil { scheduleReconnect(peer, immediate: true) }
    }

    func removePersistent(_ peer: PeerID) {
        if let t = persistent[peer]?.timer { loop.cancelTimer(t) }
        persistent[peer] = nil
    }

    private func scheduleReconnect(_ peer: PeerID, immediate: Bool = false) {
        guard var p = persistent[peer], p.timer == nil, !shuttingDown else { return }
        let base = min(config.reconnectMax, config.reconnectBase * pow(2, Double(min(p.attempt, 16))))
        let delay = immediate ? 0 : base * Double.random(in: 0.8...1.2)
        p.attempt += 1
        let addr = p.addr
        p.timer = loop.schedule(after: delay) { [weak self] in
            guard let self = self else { return }
            self.persistent[peer]?.timer = nil
            guard self.persistent[peer] != nil, self.primary[peer] == nil, let host = self.host else { return }
            Log.debug("LIBP2P", "reconnect", ["peer_id": peer, "addr": addr])
            Task.detached {
                do { try await host.dial(addr) } catch {
                    Log.debug("LIBP2P", "reconnect_failed", ["peer_id": peer, "reason": error])
                    host.loop.execute { [weak self] in self?.scheduleReconnect(peer) }
                }
            }
        }
        persistent[peer] = p
    }

    // MARK: ConnectionDelegate

    func connectionEstablished(_ c: Connection) {
        pendingHandshakes -= 1
        pendingDone(c)
        guard let peer = c.remotePeer else { c.fail("no peer"); return }
        if peer == identity.peerID {
            c.close(reason: "connected to self")
            return
        }
        // Strangers share what the reserved and handshake slots leave, and a bounded number per
        // IP group; protected peers (members) are always let in.
        if !c.isDialer, !(host?.isProtected(peer) ?? false) {
            var total = 0, fromGroup = 0
            for o in conns.values where o !== c && o.isEstablished && !o.isDialer {
                guard let p = o.remotePeer, !(host?.isProtected(p) ?? false) else { continue }
                total += 1
                if o.ipGroup == c.ipGroup { fromGroup += 1 }
            }
            let cap = max(1, config.maxConnections - config.reservedConnections - config.maxPendingHandshakes)
            if total >= cap || (c.ipGroup != nil && fromGroup >= config.maxConnectionsPerIP) {
                refused(total >= cap ? "connection limit for non-members" : "connections per IP")
                c.close(reason: "connection limit")
                return
            }
        }
        var isNewPeer = true
        if let old = primary[peer], !old.isClosed, old !== c {
            isNewPeer = false
            let keepNew = prefer(c, over: old, peer: peer)
            let loser = keepNew ? old : c
            if keepNew { primary[peer] = c }
            loser.draining = true
            Log.debug("LIBP2P", "duplicate_connection", ["peer_id": peer, "keep": keepNew ? "new" : "old"])
            loop.schedule(after: 2) { [weak loser] in
                if let l = loser, l.streamCount == 0 { l.close(reason: "duplicate connection") }
            }
        } else {
            primary[peer] = c
        }
        if let e = c.expectedPeer, dialsByPeer[e] == c.serial { dialsByPeer[e] = nil }
        for w in dialWaiters.removeValue(forKey: c.serial) ?? [] { w.resume(returning: peer) }
        if persistent[peer] != nil { persistent[peer]?.attempt = 0 }
        if isNewPeer {
            Log.info("LIBP2P", "peer_connected", ["peer_id": peer, "remote": c.remoteAddr?.description ?? "?", "direction": c.directionName])
            host?.emit(.connected(peer: peer, remoteAddr: c.remoteAddr, outbound: c.isDialer))
            host?.autoIdentify(peer)
        }
    }

    /// Deterministic choice both sides agree on: keep the connection dialed by the smaller peer ID.
    private func prefer(_ new: Connection, over old: Connection, peer: PeerID) -> Bool {
        let me = identity.peerID
        let dn = new.isDialer ? me : peer
        let dold = old.isDialer ? me : peer
        if dn == dold { return false }
        return dn.bytes.lexicographicallyPrecedes(dold.bytes)
    }

    func connectionClosed(_ c: Connection, reason: String) {
        conns[c.serial] = nil
        if !c.isEstablishedBeforeClose { pendingHandshakes -= 1; pendingDone(c) }
        if let e = c.expectedPeer, dialsByPeer[e] == c.serial { dialsByPeer[e] = nil }
        for w in dialWaiters.removeValue(forKey: c.serial) ?? [] {
            w.resume(throwing: Libp2pError.dialFailed(reason))
        }
        guard let peer = c.remotePeer else {
            Log.debug("LIBP2P", "handshake_failed", ["remote": c.remoteAddr?.description ?? "?", "reason": reason])
            if !c.isDialer && !shuttingDown && !c.evicted {
                recordFailure(c.remoteAddr)
                // Visible at the default level too, but at most one line a second.
                if let n = failedLog.count() {
                    Log.info("LIBP2P", "handshakes_failed", ["count": n, "last_remote": c.remoteAddr?.description ?? "?", "last_reason": reason])
                }
            }
            return
        }
        if primary[peer] === c {
            primary[peer] = nil
            if let other = conns.values.first(where: { $0.remotePeer == peer && $0.isEstablished }) {
                primary[peer] = other
                other.draining = false
                return
            }
            Log.info("LIBP2P", "peer_disconnected", ["peer_id": peer, "reason": reason])
            host?.emit(.disconnected(peer: peer, reason: reason))
            if persistent[peer] != nil { scheduleReconnect(peer) }
        }
    }

    func inboundStream(_ c: Connection, _ s: StreamCore) {
        host?.handleInbound(Libp2pStream(s))
    }

    func isRateExempt(_ peer: PeerID) -> Bool { host?.isProtected(peer) ?? false }

    func streamCountChanged(_ c: Connection) {
        if c.draining && c.streamCount == 0 {
            loop.schedule(after: 1) { [weak c] in
                if let c = c, c.streamCount == 0, c.draining { c.close(reason: "duplicate connection") }
            }
        }
    }

    func shutdown() {
        shuttingDown = true
        for (fd, _) in listeners {
            loop.deregister(fd)
            Glibc.close(fd)
        }
        listeners.removeAll()
        for (_, c) in conns { c.close(reason: "host closing") }
        for (_, p) in persistent { if let t = p.timer { loop.cancelTimer(t) } }
        persistent.removeAll()
    }
}
