import XCTest
import Identity
import Wire
@testable import Libp2p

final class HostTests: XCTestCase {
    func makeHost(perf: Bool = true) throws -> Libp2pHost {
        var cfg = HostConfig()
        cfg.servePerf = perf
        let h = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        h.setHandler(Protocols.echo) { s in await Protocols.serveEcho(s) }
        return h
    }

    func testDialPingIdentifyEcho() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        let addrs = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])
        let peer = try await a.dial(addrs[0].withPeerID(b.peerID.bytes))
        XCTAssertEqual(peer, b.peerID)
        let rtt = try await a.ping(b.peerID)
        XCTAssertGreaterThan(rtt, 0)
        let info = try await a.identify(b.peerID)
        XCTAssertEqual(info.agentVersion, "p2pos/0.1.0")
        XCTAssertEqual(info.protocolVersion, "ipfs/0.1.0")
        XCTAssertTrue(info.protocols.contains(Protocols.ping))
        XCTAssertEqual(info.listenAddrs, addrs)
        // Reverse direction over the same connection.
        let rtt2 = try await b.ping(a.peerID)
        XCTAssertGreaterThan(rtt2, 0)
        // Echo 4 MiB.
        let s = try await a.openStream(to: b.peerID, protocols: ["/nope/1", Protocols.echo])
        XCTAssertEqual(s.protocolID, Protocols.echo)
        var data = [UInt8](repeating: 0, count: 4 << 20)
        for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
        let payload = data
        let writer = Task { try await s.write(payload); try await s.closeWrite() }
        let back = try await s.readToEnd(maxLength: 8 << 20)
        try await writer.value
        XCTAssertEqual(back.count, data.count)
        XCTAssertTrue(back == data)
    }

    func testCancellingABlockedReaderResetsTheStream() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        let sawReset = expectation(description: "remote sees reset")
        b.setHandler("/wait/1") { s in
            do { _ = try await s.read() } catch { sawReset.fulfill() }
        }
        let addrs = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])
        _ = try await a.dial(addrs[0])
        let s = try await a.openStream(to: b.peerID, protocols: ["/wait/1"])
        let reader = Task { try await s.read() }
        try await Task.sleep(nanoseconds: 100_000_000)
        reader.cancel()
        do { _ = try await reader.value; XCTFail("read should throw") } catch let e as Libp2pError {
            XCTAssertEqual(e, .streamReset)
        }
        await fulfillment(of: [sawReset], timeout: 5)
    }

    func testAuthorizerRefusesProtocolsPerPeer() async throws {
        let a = try makeHost(), b = try makeHost(), c = try makeHost()
        defer { a.close(); b.close(); c.close() }
        let member = a.peerID
        b.setAuthorizer { peer, proto in proto != Protocols.echo || peer == member }
        let addr = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        _ = try await a.dial(addr)
        _ = try await c.dial(addr)
        let ok = try await a.openStream(to: b.peerID, protocols: [Protocols.echo])
        await ok.close()
        do {
            _ = try await c.openStream(to: b.peerID, protocols: [Protocols.echo])
            XCTFail("non-member must be refused")
        } catch let e as Libp2pError {
            XCTAssertEqual(e, .protocolNotSupported([Protocols.echo]))
        }
        _ = try await c.ping(b.peerID)  // open protocols still work
    }

    func testWrongPeerIDRejected() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        let addrs = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])
        let other = PrivateKey.generate().peerID
        do {
            _ = try await a.dial(addrs[0].withPeerID(other.bytes))
            XCTFail("dial should fail")
        } catch {
            XCTAssertTrue("\(error)".contains("dialed"), "\(error)")
        }
    }

    func testIPv6AndUnsupportedProtocol() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        let addrs = try b.listen([try Multiaddr("/ip6/::1/tcp/0")])
        _ = try await a.dial(addrs[0])
        do {
            _ = try await a.openStream(to: b.peerID, protocols: ["/x/1", "/y/2"])
            XCTFail("should fail")
        } catch let e as Libp2pError {
            XCTAssertEqual(e, .protocolNotSupported(["/x/1", "/y/2"]))
        }
    }

    func testPerf() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        let addrs = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])
        _ = try await a.dial(addrs[0])
        let s = try await a.openStream(to: b.peerID, protocols: [Protocols.perf])
        let (up, down) = try await Protocols.perfClient(s, upload: 32 << 20, download: 32 << 20)
        XCTAssertGreaterThan(up, 0)
        XCTAssertGreaterThan(down, 0)
    }
}
