import XCTest
import Foundation
import Glibc
import Identity
import Support
import Wire
@testable import Libp2p

/// A blocking test client that speaks the stack by hand, so it can misbehave at any layer.
final class RawClient {
    let fd: Int32
    var send: TransportCipher? = nil
    var recv: TransportCipher? = nil
    var inbuf: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw Libp2pError.dialFailed("raw connect") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ b: [UInt8]) { _ = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    func readSome() -> Bool {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = Glibc.read(fd, &buf, buf.count)
        if n <= 0 { return false }
        inbuf += buf.prefix(n)
        return true
    }

    func readMS() throws -> String {
        while true {
            if let (t, used) = try Multistream.decode(inbuf) { inbuf.removeFirst(used); return t }
            guard readSome() else { throw Libp2pError.connectionClosed("raw") }
        }
    }

    func readFrame() throws -> [UInt8] {
        while true {
            if inbuf.count >= 2 {
                let len = Int(inbuf[0]) << 8 | Int(inbuf[1])
                if inbuf.count >= 2 + len { let f = Array(inbuf[2..<(2 + len)]); inbuf.removeFirst(2 + len); return f }
            }
            guard readSome() else { throw Libp2pError.connectionClosed("raw") }
        }
    }

    func frame(_ m: [UInt8]) -> [UInt8] { [UInt8(m.count >> 8), UInt8(m.count & 0xff)] + m }

    /// multistream + Noise XX as initiator.
    func handshake(identity: PrivateKey) throws -> PeerID {
        write(Multistream.encode(Multistream.protocolID) + Multistream.encode("/noise"))
        guard try readMS() == Multistream.protocolID, try readMS() == "/noise" else { throw Libp2pError.protocolViolation("ms") }
        let h = NoiseHandshake(initiator: true, identity: identity)
        write(frame(h.writeMessage1()))
        let peer = try h.readMessage2(try readFrame())
        write(frame(try h.writeMessage3()))
        (send, recv) = h.split()
        return peer
    }

    func writeEncrypted(_ plain: [UInt8]) {
        var out = [UInt8](repeating: 0, count: plain.count + 16)
        plain.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in send!.seal(p.baseAddress ?? UnsafePointer(o.baseAddress!), plain.count, into: o.baseAddress!) } }
        write(frame(out))
    }

    /// Returns false when the server closed the connection.
    func isOpen(waiting seconds: Int) -> Bool {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n == 0 { return false }
            if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK ? true : false }
        }
    }
}

final class AbuseTests: XCTestCase {
    private var savedLevel = LogLevel.info
    // Thousands of connections come and go here; keep the test output readable.
    override func setUp() { savedLevel = Log.shared.level; Log.shared.level = .warn }
    override func tearDown() { Log.shared.level = savedLevel }

    func port(_ m: Multiaddr) -> UInt16 { m.tcpTarget!.port }

    func testGarbageDoesNotStopAWellBehavedPeer() async throws {
        var cfg = HostConfig()
        cfg.handshakeTimeout = 2
        cfg.maxPendingHandshakes = 32
        cfg.handshakeFailureLimit = 0  // everything here comes from 127.0.0.1, like the good peer
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        server.setHandler(Protocols.echo) { s in await Protocols.serveEcho(s) }
        let good = try Libp2pHost(identity: PrivateKey.generate())
        let bad = try Libp2pHost(identity: PrivateKey.generate())
        defer { server.close(); good.close(); bad.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let p = port(addr)
        _ = try await good.dial(addr)
        let pingStream = try await good.openStream(to: server.peerID, protocols: [Protocols.ping])

        // A peer that never reads: it makes the server echo 32 MiB into a stream it never drains.
        _ = try await bad.dial(addr)
        let hog = try await bad.openStream(to: server.peerID, protocols: [Protocols.echo])
        let hogWriter = Task { for _ in 0..<32 { try? await hog.write([UInt8](repeating: 1, count: 1 << 20)) } }

        var rng = XorShift(0xbad)
        var stalled: [RawClient] = []
        // A Noise-authenticated peer that sends mutated Yamux frames.
        for _ in 0..<10 {
            let c = try RawClient(port: p)
            _ = try c.handshake(identity: PrivateKey.generate())
            c.writeEncrypted(Multistream.encode(Multistream.protocolID) + Multistream.encode("/yamux/1.0.0"))
            let valid = YamuxHeader(type: .data, flags: YamuxHeader.syn, streamID: 1, length: 4).bytes + [1, 2, 3, 4]
            c.writeEncrypted(rng.mutate(valid) + rng.bytes(rng.int(64)))
        }

        let attack = Task.detached {
            var rng2 = XorShift(0xfeed)
            for round in 0..<60 {
                // Random bytes.
                if let c = try? RawClient(port: p) { c.write(rng2.bytes(1 + rng2.int(4000))) }
                // Opened and dropped at once.
                _ = try? RawClient(port: p)
                // Valid multistream, then garbage Noise.
                if let c = try? RawClient(port: p) {
                    c.write(Multistream.encode(Multistream.protocolID) + Multistream.encode("/noise") + [0x00, 0x20] + rng2.bytes(32 + round))
                }
            }
        }
        // Stalled half handshakes (header only, then silence).
        for _ in 0..<20 {
            if let c = try? RawClient(port: p) {
                c.write(Multistream.encode(Multistream.protocolID))
                stalled.append(c)
            }
        }
        // Meanwhile the good peer's pings keep being answered promptly.
        var worst = 0.0
        for _ in 0..<50 {
            let rtt = try await Protocols.pingOnce(pingStream)
            worst = max(worst, rtt)
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        await attack.value
        XCTAssertLessThan(worst, 0.5, "ping stalled for \(worst)s under abuse")

        // Stalled handshakes are dropped after the handshake timeout.
        try await Task.sleep(nanoseconds: 2_600_000_000)
        for c in stalled { XCTAssertFalse(c.isOpen(waiting: 1)) }
        // The good peer is still fine, and a fresh connection still works.
        _ = try await Protocols.pingOnce(pingStream)
        let fresh = try Libp2pHost(identity: PrivateKey.generate())
        defer { fresh.close() }
        _ = try await fresh.dial(addr)
        _ = try await fresh.ping(server.peerID)
        hog.reset()
        hogWriter.cancel()
    }

    func testStalledHandshakesCannotKeepOthersOut() async throws {
        var cfg = HostConfig()
        cfg.maxPendingHandshakes = 16
        cfg.maxPendingHandshakesPerIP = 8
        cfg.handshakeTimeout = 30
        cfg.handshakeFailureLimit = 0
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        // Far more half-open handshakes than there are slots, all still open: each new one used to
        // be refused once 16 were pending, so nobody else got in until they timed out.
        // Silent connections (nothing sent) are the first to be dropped for a newer one.
        var stalled: [RawClient] = []
        for _ in 0..<60 {
            stalled.append(try RawClient(port: port(addr)))
        }
        // Ones that started their handshake and stalled are kept for a grace period (0.5 s).
        var talking: [RawClient] = []
        for _ in 0..<4 {
            let c = try RawClient(port: port(addr))
            c.write(Multistream.encode(Multistream.protocolID))
            talking.append(c)
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        let good = try Libp2pHost(identity: PrivateKey.generate())
        defer { good.close() }
        let started = Monotonic.nanos()
        _ = try await good.dial(addr)
        _ = try await good.ping(server.peerID)
        XCTAssertLessThan(Double(Monotonic.nanos() - started) / 1e9, 2.0)
        // The oldest silent ones were dropped to make room; the newest silent one and the
        // handshakes in progress are still there.
        XCTAssertFalse(stalled[0].isOpen(waiting: 1))
        XCTAssertTrue(stalled[59].isOpen(waiting: 1))
        for c in talking { XCTAssertTrue(c.isOpen(waiting: 1)) }
    }

    /// Dial `server` from `n` fresh identities one after another (into `strangers`, which the
    /// caller keeps open and closes); how many are still connected shortly after.
    func strangersKept(_ n: Int, dialing addr: Multiaddr, of server: Libp2pHost, into strangers: inout [Libp2pHost]) async throws -> Int {
        for _ in 0..<n {
            let h = try Libp2pHost(identity: PrivateKey.generate())
            strangers.append(h)
            _ = try? await h.dial(addr)
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        var kept = 0
        for h in strangers where await h.connectionCount(to: server.peerID) > 0 { kept += 1 }
        return kept
    }

    func testStrangersCannotTakeTheReservedSlots() async throws {
        var cfg = HostConfig()
        cfg.maxConnections = 24
        cfg.reservedConnections = 8
        cfg.maxPendingHandshakes = 8
        cfg.handshakeFailureLimit = 0
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        defer { server.close() }
        let member = try Libp2pHost(identity: PrivateKey.generate())
        defer { member.close() }
        let memberID = member.peerID
        server.setProtected { $0 == memberID }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        // 14 strangers: only 24 - 8 - 8 = 8 of them keep a connection.
        var strangers: [Libp2pHost] = []
        defer { for h in strangers { h.close() } }
        let kept = try await strangersKept(14, dialing: addr, of: server, into: &strangers)
        XCTAssertEqual(kept, 8)
        // A protected peer still gets in and is served.
        _ = try await member.dial(addr)
        _ = try await member.ping(server.peerID)
        let memberConns = await member.connectionCount(to: server.peerID)
        XCTAssertEqual(memberConns, 1)
    }

    func testConnectionsPerIPAreLimited() async throws {
        var cfg = HostConfig()
        cfg.maxConnectionsPerIP = 3
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        var strangers: [Libp2pHost] = []
        defer { for h in strangers { h.close() } }
        let kept = try await strangersKept(5, dialing: addr, of: server, into: &strangers)
        XCTAssertEqual(kept, 3)
        XCTAssertEqual(HostCore.ipGroup(try Multiaddr("/ip6/2001:db8:1:2:3:4:5:6/tcp/1")), "/ip6/2001:db8:1:2::/64")
        XCTAssertEqual(HostCore.ipGroup(try Multiaddr("/ip6/2001:db8::1/tcp/1")), "/ip6/2001:db8:0:0::/64")
        XCTAssertEqual(HostCore.ipGroup(try Multiaddr("/ip6/::1/tcp/1")), "/ip6/0:0:0:0::/64")
        XCTAssertEqual(HostCore.ipGroup(try Multiaddr("/ip4/10.1.2.3/tcp/1")), "/ip4/10.1.2.3")
        XCTAssertEqual(HostCore.ipGroup(try Multiaddr("/ip6/::ffff:10.1.2.3/tcp/1")), "/ip6/::ffff:10.1.2.3")
    }

    func testFailedHandshakesGetTheSourceRateLimited() async throws {
        var cfg = HostConfig()
        cfg.handshakeFailureLimit = 3
        cfg.handshakeFailureBan = 1
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        for _ in 0..<3 {
            let c = try RawClient(port: port(addr))
            c.write([0xde, 0xad, 0xbe, 0xef])
            XCTAssertFalse(c.isOpen(waiting: 2))
        }
        let good = try Libp2pHost(identity: PrivateKey.generate())
        defer { good.close() }
        do { _ = try await good.dial(addr); XCTFail("banned source should be refused") } catch {}
        try await Task.sleep(nanoseconds: 1_200_000_000)
        _ = try await good.dial(addr)
        _ = try await good.ping(server.peerID)
    }

    func testReceiveWindowOverrunClosesTheConnection() async throws {
        let server = try Libp2pHost(identity: PrivateKey.generate())
        defer { server.close() }
        server.setHandler("/hold/1") { s in try? await Task.sleep(nanoseconds: 5_000_000_000) }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let c = try RawClient(port: port(addr))
        _ = try c.handshake(identity: PrivateKey.generate())
        c.writeEncrypted(Multistream.encode(Multistream.protocolID) + Multistream.encode("/yamux/1.0.0"))
        let hello = Multistream.encode(Multistream.protocolID) + Multistream.encode("/hold/1")
        c.writeEncrypted(YamuxHeader(type: .data, flags: YamuxHeader.syn, streamID: 1, length: UInt32(hello.count)).bytes + hello)
        try await Task.sleep(nanoseconds: 300_000_000)  // the handler now holds the stream without reading
        c.writeEncrypted(YamuxHeader(type: .data, flags: 0, streamID: 1, length: 300_000).bytes)
        let chunk = [UInt8](repeating: 0, count: 60_000)
        for _ in 0..<5 { c.writeEncrypted(chunk) }
        XCTAssertFalse(c.isOpen(waiting: 3))
    }

    /// Time-bounded fuzz of the Yamux session: authenticated peers send random frame sequences
    /// (plausible headers with random types, flags, IDs, lengths and payloads); the host must
    /// survive and keep serving a well-behaved peer.
    func testYamuxSessionFuzz() async throws {
        var cfg = HostConfig()
        cfg.handshakeFailureLimit = 0
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        server.setHandler(Protocols.echo) { s in await Protocols.serveEcho(s) }
        let good = try Libp2pHost(identity: PrivateKey.generate())
        defer { server.close(); good.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        _ = try await good.dial(addr)
        var rng = XorShift(0x5e55)
        let end = Date().addingTimeInterval(2)
        var sessions = 0
        let me = PrivateKey.generate()
        while Date() < end || sessions < 10 {
            let c = try RawClient(port: port(addr))
            _ = try c.handshake(identity: me)
            c.writeEncrypted(Multistream.encode(Multistream.protocolID) + Multistream.encode("/yamux/1.0.0"))
            for _ in 0..<(1 + rng.int(8)) {
                let type = YamuxHeader.FrameType(rawValue: UInt8(rng.int(4)))!
                let flags = UInt16(rng.int(16))
                let sid = rng.int(4) == 0 ? UInt32(truncatingIfNeeded: rng.next()) : UInt32(1 + 2 * rng.int(4))
                let len = rng.int(3) == 0 ? UInt32(truncatingIfNeeded: rng.next()) : UInt32(rng.int(300))
                var frame = YamuxHeader(type: type, flags: flags, streamID: sid, length: len).bytes
                if type == .data { frame += rng.bytes(min(Int(len), rng.int(400))) }
                if rng.int(5) == 0 { frame = rng.mutate(frame) }
                c.writeEncrypted(frame)
            }
            sessions += 1
            if sessions % 10 == 0 { _ = try await good.ping(server.peerID) }
        }
        _ = try await good.ping(server.peerID)
        let s = try await good.openStream(to: server.peerID, protocols: [Protocols.echo])
        try await s.write([1, 2, 3])
        try await s.closeWrite()
        let back = try await s.readToEnd()
        XCTAssertEqual(back, [1, 2, 3])
    }

    func testSilentPeerIsDroppedByKeepalive() async throws {
        var cfg = HostConfig()
        cfg.keepaliveInterval = 0.3
        cfg.keepaliveTimeout = 0.6
        let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        // A well-behaved peer answers pings and stays connected.
        var gcfg = HostConfig()
        gcfg.keepaliveInterval = 0
        let good = try Libp2pHost(identity: PrivateKey.generate(), config: gcfg)
        defer { good.close() }
        _ = try await good.dial(addr)
        // A peer that completes the handshake and then goes silent (never answers pings).
        let c = try RawClient(port: port(addr))
        _ = try c.handshake(identity: PrivateKey.generate())
        c.writeEncrypted(Multistream.encode(Multistream.protocolID) + Multistream.encode("/yamux/1.0.0"))
        XCTAssertFalse(c.isOpen(waiting: 4))
        let n = await good.connectionCount(to: server.peerID)
        XCTAssertEqual(n, 1)
        _ = try await good.ping(server.peerID)
    }

    func testYamuxProtocolErrorClosesOnlyThatConnection() async throws {
        let server = try Libp2pHost(identity: PrivateKey.generate())
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let c = try RawClient(port: port(addr))
        XCTAssertEqual(try c.handshake(identity: PrivateKey.generate()), server.peerID)
        c.writeEncrypted(Multistream.encode(Multistream.protocolID) + Multistream.encode("/yamux/1.0.0"))
        // A data frame longer than any receive window can ever be is a protocol error.
        // (Overrunning a live stream's window is checked too, but the stream may already be
        // reset by its failed negotiation, in which case its data is dropped instead.)
        c.writeEncrypted(YamuxHeader(type: .windowUpdate, flags: YamuxHeader.syn, streamID: 1, length: 0).bytes)
        c.writeEncrypted(YamuxHeader(type: .data, flags: 0, streamID: 1, length: 17 << 20).bytes)
        XCTAssertFalse(c.isOpen(waiting: 3))
    }
}
