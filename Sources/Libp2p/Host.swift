import Foundation
import Glibc
import Identity
import Support
import Wire

/// Libp2pHost settings: limits, timeouts and which built-in protocols are served.
public struct HostConfig: Sendable {
    public var agentVersion = "p2pos/0.1.0"
    public var maxConnections = 512
    /// Of `maxConnections`, slots only protected peers (see `Libp2pHost.setProtected`; the daemon
    /// protects members) may take: a flood of strangers cannot lock members out.
    public var reservedConnections = 64
    /// Established connections from one IP (IPv6: one /64) that are not protected peers.
    public var maxConnectionsPerIP = 32
    public var maxPendingHandshakes = 64
    /// Handshakes in progress from one IP (IPv6: one /64). When this or the global limit is
    /// reached, the oldest handshake from the busiest IP is dropped to make room: connections
    /// that never finish their handshake cannot keep everyone else out.
    public var maxPendingHandshakesPerIP = 16
    public var maxStreamsPerConnection = 256
    /// Rate limit on streams a remote peer may open on one connection (token bucket). Protected
    /// peers (`Libp2pHost.setProtected`) are exempt; `maxStreamsPerConnection` still bounds them.
    public var inboundStreamsPerSecond: Double = 100
    public var inboundStreamBurst: Double = 200
    /// Inbound connections from one IP that fail before completing the handshake within a minute
    /// before that IP is refused for `handshakeFailureBan` seconds (0 = never).
    public var handshakeFailureLimit = 50
    public var handshakeFailureBan: Double = 30
    public var handshakeTimeout: Double = 10
    public var dialTimeout: Double = 10
    /// A connection without streams and without traffic for this long is closed (0 = never).
    public var idleTimeout: Double = 300
    public var streamNegotiationTimeout: Double = 10
    /// A Yamux ping is sent after this long without incoming bytes (0 = off) …
    public var keepaliveInterval: Double = 15
    /// … and the connection is closed if it is not answered within this long.
    public var keepaliveTimeout: Double = 20
    public var serveIdentify = true
    public var servePing = true
    public var servePerf = false
    /// Run identify as a client on every new connection.
    public var autoIdentify = true
    public var reconnectBase: Double = 1
    public var reconnectMax: Double = 60

    public init() {}
}

/// Connection life-cycle notifications.
public enum HostEvent: Sendable {
    case connected(peer: PeerID, remoteAddr: Multiaddr?, outbound: Bool)
    case disconnected(peer: PeerID, reason: String)
    case identified(peer: PeerID, info: IdentifyInfo)
}

/// Handles one inbound stream for a registered protocol.
public typealias StreamHandler = @Sendable (Libp2pStream) async -> Void

/// A libp2p host over TCP: listens, dials, authenticates peers with Noise, multiplexes with
/// Yamux and dispatches streams to protocol handlers. One connection per peer.
public final class Libp2pHost: @unchecked Sendable {
    public let identity: PrivateKey
    public let peerID: PeerID
    public let config: HostConfig
    let loop: EventLoop
    let core: HostCore

    private let lock = NSLock()
    private var handlers: [String: StreamHandler] = [:]
    private var lineHandlers: [String: LineHandler] = [:]
    private var authorizer: (@Sendable (PeerID, String) -> Bool)? = nil
    private var protected: (@Sendable (PeerID) -> Bool)? = nil
    private var subscribers: [UInt64: AsyncStream<HostEvent>.Continuation] = [:]
    private var nextSub: UInt64 = 0
    private var peerInfo: [PeerID: IdentifyInfo] = [:]
    private var _listenAddrs: [Multiaddr] = []
    private var closed = false

    public init(identity: PrivateKey, config: HostConfig = HostConfig()) throws {
        self.identity = identity
        self.peerID = identity.peerID
        self.config = config
        loop = try EventLoop(name: "p2pos-libp2p")
        core = HostCore(loop: loop, identity: identity, config: config)
        core.host = self
        if config.serveIdentify { setHandler(Protocols.identify) { [weak self] s in await self?.serveIdentify(s) } }
        if config.servePing { setHandler(Protocols.ping) { s in await Protocols.servePing(s) } }
        if config.servePerf { setHandler(Protocols.perf) { s in await Protocols.servePerf(s) } }
    }

    deinit { loop.stop() }

    // MARK: listening

    /// Listen on TCP multiaddrs (`/ip4/…/tcp/N`, `/ip6/…/tcp/N`; port 0 picks one).
    /// Returns the bound addresses.
    @discardableResult
    public func listen(_ addrs: [Multiaddr]) throws -> [Multiaddr] {
        var bound: [Multiaddr] = []
        var fds: [Int32] = []
        do {
            for a in addrs {
                let (fd, b) = try Sock.listen(a)
                fds.append(fd)
                bound.append(b)
            }
        } catch {
            for fd in fds { Glibc.close(fd) }
            throw error
        }
        let c = core
        for fd in fds { loop.execute { c.addListener(fd) } }
        lock.lock()
        _listenAddrs += bound
        lock.unlock()
        for b in bound { Log.info("LIBP2P", "listen", ["addr": b, "peer_id": peerID]) }
        return bound
    }

    /// Bound listen addresses (unspecified addresses as bound).
    public var boundAddresses: [Multiaddr] { lock.lock(); defer { lock.unlock() }; return _listenAddrs }

    /// Addresses to advertise: unspecified listen addresses expanded to interface addresses.
    public var listenAddresses: [Multiaddr] { boundAddresses.flatMap { Sock.expandUnspecified($0) } }

    // MARK: handlers

    /// Register (or replace) the handler for a protocol ID.
    public func setHandler(_ protocolID: String, _ handler: @escaping StreamHandler) {
        lock.lock(); handlers[protocolID] = handler; lineHandlers[protocolID] = nil; lock.unlock()
    }

    func setLineHandlerEntry(_ protocolID: String, _ h: LineHandler) {
        lock.lock(); lineHandlers[protocolID] = h; handlers[protocolID] = nil; lock.unlock()
    }

    public func removeHandler(_ protocolID: String) {
        lock.lock(); handlers[protocolID] = nil; lineHandlers[protocolID] = nil; lock.unlock()
    }

    /// Decide per (authenticated peer, protocol) whether an inbound stream may use a protocol;
    /// refused protocols are answered with `na` as if unsupported. Nil allows everything.
    public func setAuthorizer(_ allow: (@Sendable (PeerID, String) -> Bool)?) {
        lock.lock(); authorizer = allow; lock.unlock()
    }

    /// Which peers may use the reserved connection slots and are exempt from the per-IP limit.
    public func setProtected(_ isProtected: (@Sendable (PeerID) -> Bool)?) {
        lock.lock(); protected = isProtected; lock.unlock()
    }

    func isProtected(_ peer: PeerID) -> Bool {
        lock.lock(); let p = protected; lock.unlock()
        return p?(peer) ?? false
    }

    func allowed(_ peer: PeerID, _ p: String) -> Bool {
        lock.lock(); let a = authorizer; lock.unlock()
        return a?(peer, p) ?? true
    }

    func handler(for p: String) -> StreamHandler? {
        lock.lock(); defer { lock.unlock() }; return handlers[p]
    }

    func lineHandler(for p: String) -> LineHandler? {
        lock.lock(); defer { lock.unlock() }; return lineHandlers[p]
    }

    func hasHandler(_ p: String) -> Bool {
        lock.lock(); defer { lock.unlock() }; return handlers[p] != nil || lineHandlers[p] != nil
    }

    /// Protocol IDs with a registered handler.
    public var protocols: [String] { lock.lock(); defer { lock.unlock() }; return (Array(handlers.keys) + Array(lineHandlers.keys)).sorted() }

    // MARK: events

    /// A stream of connection events; ends when the host closes.
    public func events() -> AsyncStream<HostEvent> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1024)) { cont in
            lock.lock()
            let id = nextSub
            nextSub += 1
            subscribers[id] = cont
            lock.unlock()
            cont.onTermination = { [weak self] _ in
                guard let self = self else { return }
                self.lock.lock(); self.subscribers[id] = nil; self.lock.unlock()
            }
        }
    }

    func emit(_ e: HostEvent) {
        lock.lock()
        // Identify info is kept for connected peers only: any peer may connect and send ~60 KB.
        if case .disconnected(let peer, _) = e { peerInfo[peer] = nil }
        let subs = Array(subscribers.values)
        lock.unlock()
        for s in subs { s.yield(e) }
    }

    /// Identify information learned from a peer, if any.
    public func info(for peer: PeerID) -> IdentifyInfo? {
        lock.lock(); defer { lock.unlock() }; return peerInfo[peer]
    }

    func storeInfo(_ peer: PeerID, _ info: IdentifyInfo) {
        lock.lock()
        // Entries go on disconnect; this bound covers an identify that finished after its
        // connection closed (each entry can be ~60 KB).
        if peerInfo.count >= 2048 && peerInfo[peer] == nil { peerInfo.removeAll() }
        peerInfo[peer] = info
        lock.unlock()
    }

    // MARK: dialing and streams

    /// Connect to a multiaddr (optionally ending in `/p2p/<id>`, which is then verified).
    /// Returns the authenticated peer ID. Reuses an existing connection to that peer.
    @discardableResult
    public func dial(_ addr: Multiaddr) async throws -> PeerID {
        var exp: PeerID? = nil
        if let mh = addr.peerIDBytes {
            do { exp = try PeerID(bytes: mh) } catch { throw Libp2pError.badAddress("\(addr): \(error)") }
        }
        let expected = exp
        if let e = expected, e == peerID { throw Libp2pError.dialFailed("refusing to dial self") }
        let target = addr.withoutPeerID
        let resolved: [sockaddr_storage]
        if case .ip4? = target.components.first {
            resolved = try Sock.resolve(target)
        } else if case .ip6? = target.components.first {
            resolved = try Sock.resolve(target)
        } else {
            resolved = try await withCheckedThrowingContinuation { (c: CheckedContinuation<[sockaddr_storage], Error>) in
                DispatchQueue.global().async {
                    do { c.resume(returning: try Sock.resolve(target)) } catch { c.resume(throwing: error) }
                }
            }
        }
        guard !resolved.isEmpty else { throw Libp2pError.dialFailed("\(addr) resolved to no address") }
        var lastError: Error = Libp2pError.dialFailed("no address")
        for ss in resolved.prefix(4) {
            do {
                let c = core
                return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<PeerID, Error>) in
                    if !loop.execute({ c.dial(ss, addr: target, expected: expected, cont) }) { cont.resume(throwing: Libp2pError.connectionClosed("host is closed")) }
                }
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Connect to a known peer through the first of `addresses` that works (each is dialed with
    /// `/p2p/<peer>` so the identity is verified). Returns at once if already connected.
    public func connect(to peer: PeerID, addresses: [Multiaddr]) async throws {
        if await isConnected(peer) { return }
        var lastError: Error = Libp2pError.notConnected(peer.base58)
        for a in addresses {
            do {
                _ = try await dial(a.withPeerID(peer.bytes))
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Listen addresses with `/p2p/<our id>` appended, as other peers should dial them.
    public var dialableAddresses: [Multiaddr] { listenAddresses.map { $0.withPeerID(peerID.bytes) } }

    /// Open a stream to a connected (or known) peer and negotiate the first supported protocol.
    public func openStream(to peer: PeerID, protocols: [String]) async throws -> Libp2pStream {
        guard !protocols.isEmpty else { throw Libp2pError.protocolNotSupported([]) }
        let c = core
        let s: Libp2pStream
        do {
            s = Libp2pStream(try await withCheckedThrowingContinuation { (cont: CheckedContinuation<StreamCore, Error>) in
                if !loop.execute({ c.openStream(peer, cont) }) { cont.resume(throwing: Libp2pError.connectionClosed("host is closed")) }
            })
        } catch Libp2pError.notConnected(let p) {
            // Try addresses learned through identify.
            guard let info = info(for: peer), !info.listenAddrs.isEmpty else { throw Libp2pError.notConnected(p) }
            var connected = false
            for a in info.listenAddrs.prefix(4) {
                if (try? await dial(a.withPeerID(peer.bytes))) != nil { connected = true; break }
            }
            guard connected else { throw Libp2pError.notConnected(p) }
            s = Libp2pStream(try await withCheckedThrowingContinuation { (cont: CheckedContinuation<StreamCore, Error>) in
                if !loop.execute({ c.openStream(peer, cont) }) { cont.resume(throwing: Libp2pError.connectionClosed("host is closed")) }
            })
        }
        do {
            s.core.protocolID = try await withTimeout(config.streamNegotiationTimeout, "protocol negotiation", onTimeout: { s.reset() }) {
                try await StreamNegotiation.select(s, protocols)
            }
        } catch {
            s.reset()
            throw error
        }
        return s
    }

    /// Currently connected peers.
    public func connectedPeers() async -> [PeerID] {
        let c = core
        return await withCheckedContinuation { (cont: CheckedContinuation<[PeerID], Never>) in
            if !loop.execute({ cont.resume(returning: c.connectedPeers()) }) { cont.resume(returning: []) }
        }
    }

    /// Number of open connections to `peer` (normally 0 or 1).
    public func connectionCount(to peer: PeerID) async -> Int {
        let c = core
        return await withCheckedContinuation { (cont: CheckedContinuation<Int, Never>) in
            if !loop.execute({ cont.resume(returning: c.connectionCount(peer)) }) { cont.resume(returning: 0) }
        }
    }

    /// Whether a connection to `peer` is open.
    public func isConnected(_ peer: PeerID) async -> Bool {
        let c = core
        return await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
            if !loop.execute({ cont.resume(returning: c.hasConnection(peer)) }) { cont.resume(returning: false) }
        }
    }

    /// Close all connections to a peer.
    public func disconnect(_ peer: PeerID) {
        let c = core
        loop.execute { c.disconnect(peer) }
    }

    /// Keep a connection to this peer: redial with exponential backoff and jitter when it drops.
    /// The address must end in `/p2p/<id>`.
    public func addPersistentPeer(_ addr: Multiaddr) throws {
        guard let mh = addr.peerIDBytes, let peer = try? PeerID(bytes: mh) else {
            throw Libp2pError.badAddress("a persistent peer address needs /p2p/<id>: \(addr)")
        }
        let c = core
        loop.execute { c.addPersistent(peer, addr) }
    }

    public func removePersistentPeer(_ peer: PeerID) {
        let c = core
        loop.execute { c.removePersistent(peer) }
    }

    /// Measure a Yamux-level round trip to a connected peer (seconds).
    public func muxerPing(_ peer: PeerID) async throws -> Double {
        let c = core
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Double, Error>) in
            if !loop.execute({ c.muxerPing(peer, cont) }) { cont.resume(throwing: Libp2pError.connectionClosed("host is closed")) }
        }
    }

    /// Stop listening, close every connection and stop the loop.
    /// True once `close()` was called.
    var isClosed: Bool { lock.withLock { closed } }

    public func close() {
        lock.lock()
        if closed { lock.unlock(); return }
        closed = true
        let subs = Array(subscribers.values)
        subscribers.removeAll()
        lock.unlock()
        let c = core
        let l = loop
        if loop.inLoop {
            c.shutdown()
            l.stop()
        } else {
            let sem = DispatchSemaphore(value: 0)
            loop.execute {
                c.shutdown()
                l.stop()
                sem.signal()
            }
            _ = sem.wait(timeout: .now() + 2)
        }
        for s in subs { s.finish() }
    }

    // MARK: inbound streams

    /// Loop thread: a new inbound stream is negotiated on the loop, then served.
    func handleInbound(_ s: Libp2pStream) {
        negotiateInbound(s)
    }

    // MARK: identify

    func identifyInfo(observed: Multiaddr?) -> IdentifyInfo {
        IdentifyInfo(protocolVersion: "ipfs/0.1.0", agentVersion: config.agentVersion, publicKey: identity.publicKey.protobuf,
                     listenAddrs: listenAddresses, observedAddr: observed, protocols: protocols)
    }

    func serveIdentify(_ s: Libp2pStream) async {
        let observed = s.core.conn.remoteAddr
        let msg = identifyInfo(observed: observed).encode()
        try? await s.writeLengthPrefixed(msg)
        try? await s.closeWrite()
    }

    /// Ask a connected peer for its identify information (and store it).
    @discardableResult
    public func identify(_ peer: PeerID) async throws -> IdentifyInfo {
        let s = try await openStream(to: peer, protocols: [Protocols.identify])
        let body = try await withTimeout(10, "identify", onTimeout: { s.reset() }) { try await s.readToEnd(maxLength: IdentifyInfo.maxSize + 10) }
        await s.close()
        let info: IdentifyInfo
        do { info = try IdentifyInfo.decodeStreamBody(body) } catch { throw Libp2pError.protocolViolation("identify: \(error)") }
        if let p = info.peerID, p != peer { throw Libp2pError.protocolViolation("identify public key does not match peer \(peer)") }
        storeInfo(peer, info)
        emit(.identified(peer: peer, info: info))
        return info
    }

    func autoIdentify(_ peer: PeerID) {
        guard config.autoIdentify else { return }
        Task.detached { [weak self] in
            guard let self = self else { return }
            do { try await self.identify(peer) } catch {
                Log.debug("LIBP2P", "identify_failed", ["peer_id": peer, "reason": error])
            }
        }
    }

    /// `/ipfs/ping/1.0.0` round trip to a connected peer (seconds).
    public func ping(_ peer: PeerID) async throws -> Double {
        let s = try await openStream(to: peer, protocols: [Protocols.ping])
        defer { Task { await s.close() } }
        return try await Protocols.pingOnce(s)
    }
}

/// Run `body` with a deadline.
/// `onTimeout` must make `body` finish (e.g. reset the stream it waits on).
func withTimeout<T: Sendable>(_ seconds: Double, _ what: String, onTimeout: @escaping @Sendable () -> Void,
                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { g in
        g.addTask { try await body() }
        g.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            onTimeout()
            throw Libp2pError.timeout(what)
        }
        defer { g.cancelAll() }
        guard let r = try await g.next() else { throw Libp2pError.timeout(what) }
        return r
    }
}
