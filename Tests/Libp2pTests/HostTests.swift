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

    func testFramedMessagesLargerThanTheWindow() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        b.setHandler("/frames/1") { s in
            // Echo length-prefixed binary frames, then JSON lines, until EOF.
            while let f = try? await s.readLengthPrefixed(maxLength: 8 << 20), !f.isEmpty {
                try? await s.writeLengthPrefixed(f)
            }
            while let line = try? await s.readLine(maxLength: 2 << 20) { try? await s.writeLine(line) }
        }
        b.setHandler("/strict/1") { s in
            do { _ = try await s.readLengthPrefixed(maxLength: 8 << 20) } catch { s.reset() }
        }
        let addr = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        _ = try await a.dial(addr)
        let s = try await a.openStream(to: b.peerID, protocols: ["/frames/1"])
        for size in [1, 300, 6 << 20] {
            let f = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try await s.writeLengthPrefixed(f)
            let back = try await s.readLengthPrefixed(maxLength: 8 << 20)
            XCTAssertEqual(back, f)
        }
        try await s.writeLengthPrefixed([])
        let json = "{\"k\":\"" + String(repeating: "x", count: 1 << 20) + "\"}"
        try await s.writeLine(json)
        let echoed = try await s.readLine(maxLength: 2 << 20)
        XCTAssertEqual(echoed, json)
        try await s.closeWrite()
        let end = try await s.readLine()
        XCTAssertNil(end)
        // A frame over the reader's limit is refused.
        let s2 = try await a.openStream(to: b.peerID, protocols: ["/strict/1"])
        try await s2.write(Varint.encode(UInt64(9 << 20)))
        do { _ = try await s2.read(); XCTFail("expected reset") } catch let e as Libp2pError { XCTAssertEqual(e, .streamReset) }
    }

    func testDroppedStreamHandleClosesGracefully() async throws {
        let a = try makeHost(), b = try makeHost()
        defer { a.close(); b.close() }
        let got = expectation(description: "server read data then EOF")
        b.setHandler("/drop/1") { s in
            if let all = try? await s.readToEnd(), all == [7, 7, 7] { got.fulfill() }
        }
        let addr = try b.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
        _ = try await a.dial(addr)
        do {
            let s = try await a.openStream(to: b.peerID, protocols: ["/drop/1"])
            try await s.write([7, 7, 7])
        }  // handle dropped here without close()
        await fulfillment(of: [got], timeout: 5)
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
