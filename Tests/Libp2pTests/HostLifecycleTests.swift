import XCTest
import Identity
import Wire
@testable import Libp2p

final class HostLifecycleTests: XCTestCase {
    func host(_ tweak: (inout HostConfig) -> Void = { _ in }) throws -> Libp2pHost {
        var cfg = HostConfig()
        tweak(&cfg)
        return try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
    }

    func eventually(_ seconds: Double = 5, _ what: String, _ cond: () async -> Bool) async throws {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if await cond() { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    func testSimultaneousDialsEndWithOneConnection() async throws {
        let a = try host(), b = try host()
        defer { a.close(); b.close() }
        let aa = try a.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0].withPeerID(a.peerID.bytes)
        let ba = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0].withPeerID(b.peerID.bytes)
        async let x = a.dial(ba)
        async let y = b.dial(aa)
        async let z = a.dial(ba)
        let (p1, p2, p3) = try await (x, y, z)
        XCTAssertEqual(p1, b.peerID)
        XCTAssertEqual(p2, a.peerID)
        XCTAssertEqual(p3, b.peerID)
        try await eventually(6, "one connection each way") {
            let n1 = await a.connectionCount(to: b.peerID)
            let n2 = await b.connectionCount(to: a.peerID)
            return n1 == 1 && n2 == 1
        }
        // Streams still work both ways on the survivor.
        _ = try await a.ping(b.peerID)
        _ = try await b.ping(a.peerID)
    }

    func testEventsAndPersistentReconnect() async throws {
        let a = try host { $0.reconnectBase = 0.2; $0.reconnectMax = 1 }
        let b = try host()
        defer { a.close(); b.close() }
        let ba = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0].withPeerID(b.peerID.bytes)
        let events = a.events()
        try a.addPersistentPeer(ba)
        var it = events.makeAsyncIterator()
        guard case .connected(let p, _, let outbound)? = await it.next() else { return XCTFail("no connected event") }
        XCTAssertEqual(p, b.peerID)
        XCTAssertTrue(outbound)
        // Identify runs on connect.
        guard case .identified(let p2, let info)? = await it.next() else { return XCTFail("no identified event") }
        XCTAssertEqual(p2, b.peerID)
        XCTAssertEqual(info.agentVersion, "p2pos/0.1.0")
        XCTAssertEqual(a.info(for: b.peerID)?.protocols.contains(Protocols.ping), true)
        // The remote drops us; we reconnect by ourselves.
        b.disconnect(a.peerID)
        guard case .disconnected(let p3, _)? = await it.next() else { return XCTFail("no disconnected event") }
        XCTAssertEqual(p3, b.peerID)
        guard case .connected(let p4, _, _)? = await it.next() else { return XCTFail("no reconnect") }
        XCTAssertEqual(p4, b.peerID)
        _ = try await a.ping(b.peerID)
    }

    func testLimitsAndIdleTimeout() async throws {
        // No automatic identify: its streams would count against the 4-stream limit.
        let server = try host { $0.maxStreamsPerConnection = 4; $0.idleTimeout = 0.6; $0.autoIdentify = false }
        defer { server.close() }
        server.setHandler("/hold/1") { s in _ = try? await s.read() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let c = try host { $0.autoIdentify = false }
        defer { c.close() }
        _ = try await c.dial(addr)
        var held: [Libp2pStream] = []
        for _ in 0..<4 { held.append(try await c.openStream(to: server.peerID, protocols: ["/hold/1"])) }
        do {
            _ = try await c.openStream(to: server.peerID, protocols: ["/hold/1"])
            XCTFail("fifth stream should be refused")
        } catch {}
        for s in held { await s.close() }
        // With no streams and no traffic the server closes the connection.
        try await eventually(8, "idle close") { await c.connectionCount(to: server.peerID) == 0 }
    }

    func testInboundStreamRateLimit() async throws {
        let server = try host { $0.inboundStreamsPerSecond = 5; $0.inboundStreamBurst = 5; $0.autoIdentify = false }
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let c = try host { $0.autoIdentify = false }
        defer { c.close() }
        _ = try await c.dial(addr)
        var ok = 0, refused = 0
        for _ in 0..<12 {
            do { _ = try await c.ping(server.peerID); ok += 1 } catch { refused += 1 }
        }
        XCTAssertGreaterThanOrEqual(ok, 5)
        XCTAssertGreaterThan(refused, 0)
        try await Task.sleep(nanoseconds: 600_000_000)
        _ = try await c.ping(server.peerID)  // tokens refill; the connection is still usable
    }

    func testProtectedPeersAreNotStreamRateLimited() async throws {
        let server = try host { $0.inboundStreamsPerSecond = 5; $0.inboundStreamBurst = 5; $0.autoIdentify = false }
        defer { server.close() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let member = try host { $0.autoIdentify = false }, stranger = try host { $0.autoIdentify = false }
        defer { member.close(); stranger.close() }
        let memberID = member.peerID
        server.setProtected { $0 == memberID }
        _ = try await member.dial(addr)
        _ = try await stranger.dial(addr)
        for _ in 0..<30 { _ = try await member.ping(server.peerID) }   // six times the burst, none refused
        var refused = 0
        for _ in 0..<12 { do { _ = try await stranger.ping(server.peerID) } catch { refused += 1 } }
        XCTAssertGreaterThan(refused, 0, "the stranger is still rate-limited")
    }

    /// Calls on a closed host answer at once (an error, or an empty answer) instead of leaving
    /// the caller suspended forever on work its stopped loop will never run.
    func testCallsAfterCloseDoNotHang() async throws {
        let server = try host { $0.autoIdentify = false }
        defer { server.close() }
        server.setHandler("/hold/1") { s in _ = try? await s.read() }
        let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        let c = try host { $0.autoIdentify = false }
        _ = try await c.dial(addr)
        let s = try await c.openStream(to: server.peerID, protocols: ["/hold/1"])
        c.close()
        let finished = expectation(description: "every call returned")
        let serverID = server.peerID
        Task {
            do { try await s.write([1, 2, 3]); XCTFail("write on a closed host") } catch {}
            do { try await s.closeWrite(); XCTFail("closeWrite on a closed host") } catch {}
            do { _ = try await c.openStream(to: serverID, protocols: ["/hold/1"]); XCTFail("openStream") } catch {}
            do { _ = try await c.dial(addr); XCTFail("dial") } catch {}
            do { _ = try await c.muxerPing(serverID); XCTFail("muxerPing") } catch {}
            let peers = await c.connectedPeers()
            let connected = await c.isConnected(serverID)
            XCTAssertEqual(peers, [])
            XCTAssertFalse(connected)
            finished.fulfill()
        }
        await fulfillment(of: [finished], timeout: 10)
    }

    func testConnectTriesAddressesInOrder() async throws {
        let a = try host(), b = try host()
        defer { a.close(); b.close() }
        _ = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])
        XCTAssertEqual(b.dialableAddresses.first?.peerIDBytes, b.peerID.bytes)
        try await a.connect(to: b.peerID, addresses: [try Multiaddr("/ip4/127.0.0.1/tcp/1")] + b.listenAddresses)
        let connected = await a.isConnected(b.peerID)
        XCTAssertTrue(connected)
        try await a.connect(to: b.peerID, addresses: [])  // already connected: no-op
    }

    func testDialByDNSName() async throws {
        let a = try host(), b = try host()
        defer { a.close(); b.close() }
        let port = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0].tcpTarget!.port
        let peer = try await a.dial(try Multiaddr("/dns4/localhost/tcp/\(port)/p2p/\(b.peerID)"))
        XCTAssertEqual(peer, b.peerID)
    }

    func testDialFailures() async throws {
        let a = try host()
        defer { a.close() }
        do { _ = try await a.dial(try Multiaddr("/ip4/127.0.0.1/tcp/1")); XCTFail() } catch let e as Libp2pError {
            guard case .dialFailed = e else { return XCTFail("\(e)") }
        }
        do { _ = try await a.dial(try Multiaddr("/dnsaddr/example.org")); XCTFail() } catch {}
        do { _ = try await a.openStream(to: PrivateKey.generate().peerID, protocols: ["/x"]); XCTFail() } catch let e as Libp2pError {
            guard case .notConnected = e else { return XCTFail("\(e)") }
        }
    }
}
