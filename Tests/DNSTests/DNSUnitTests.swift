import XCTest
@testable import DNS

/// Builds DNS response messages for known-answer tests.
enum MessageBuilder {
    static func name(_ n: String) -> [UInt8] {
        n.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
    }

    static func response(question: String, rcode: UInt8 = 0, txt: [[String]], compress: Bool = true, extraType: Bool = false) -> [UInt8] {
        var m: [UInt8] = [0x12, 0x34, 0x81, 0x80 | rcode]
        let an = txt.count + (extraType ? 1 : 0)
        m += [0, 1, UInt8(an >> 8), UInt8(an & 0xff), 0, 0, 0, 0]
        m += name(question) + [0, 16, 0, 1]
        if extraType {
            // An A record the parser must skip.
            m += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]
        }
        for strings in txt {
            m += compress ? [0xC0, 12] : name(question)
            var rdata: [UInt8] = []
            for s in strings { rdata += [UInt8(s.utf8.count)] + Array(s.utf8) }
            m += [0, 16, 0, 1, 0, 0, 0, 60, UInt8(rdata.count >> 8), UInt8(rdata.count & 0xff)] + rdata
        }
        return m
    }
}

final class DNSMessageTests: XCTestCase {
    func testParsesTXTRecordsAndJoinsStrings() throws {
        let msg = MessageBuilder.response(question: "_dnsaddr.example.test", txt: [["dnsaddr=/ip4/1.2.3.4/tcp/1"], ["dnsaddr=/ip4/", "5.6.7.8/tcp/2"]], extraType: true)
        let a = try DNSMessage.parseTXT(msg)
        XCTAssertEqual(a.rcode, 0)
        XCTAssertFalse(a.truncated)
        XCTAssertEqual(a.strings, ["dnsaddr=/ip4/1.2.3.4/tcp/1", "dnsaddr=/ip4/5.6.7.8/tcp/2"])
        let b = try DNSMessage.parseTXT(MessageBuilder.response(question: "x.test", txt: [["a"]], compress: false))
        XCTAssertEqual(b.strings, ["a"])
    }

    func testKnownAnswerBytes() throws {
        // Response to `dig TXT t.test` with one record "hi": header, question, answer with a pointer.
        let msg: [UInt8] = [0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
                            1, 0x74, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 16, 0, 1,
                            0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0x0e, 0x10, 0, 3, 2, 0x68, 0x69]
        XCTAssertEqual(try DNSMessage.parseTXT(msg).strings, ["hi"])
        var nx = msg
        nx[3] = 0x83
        XCTAssertEqual(try DNSMessage.parseTXT(nx).rcode, 3)
    }

    func testMalformedInputsThrowWithoutCrashing() {
        let good = MessageBuilder.response(question: "_dnsaddr.fuzz.test", txt: [["dnsaddr=/ip4/1.2.3.4/tcp/1"], ["x", "y"]])
        XCTAssertThrowsError(try DNSMessage.parseTXT(Array(good[0..<11])))
        var query = good
        query[2] = 0x01
        XCTAssertThrowsError(try DNSMessage.parseTXT(query), "a query is not a response")
        for n in 12..<good.count { _ = try? DNSMessage.parseTXT(Array(good[0..<n])) }
        var rng: UInt64 = 99
        for _ in 0..<20_000 {
            var m = good
            for _ in 0..<3 {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                m[Int(rng >> 33) % m.count] = UInt8(truncatingIfNeeded: rng >> 17)
            }
            if let a = try? DNSMessage.parseTXT(m) {
                XCTAssertLessThanOrEqual(a.records.reduce(0) { $0 + $1.count }, m.count)
            }
        }
    }
}

final class MultiaddrTextTests: XCTestCase {
    func testPlausibility() {
        XCTAssertTrue(MultiaddrText.isPlausible("/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWabc"))
        XCTAssertTrue(MultiaddrText.isPlausible("/dnsaddr/bootstrap.example.org"))
        XCTAssertFalse(MultiaddrText.isPlausible("ip4/1.2.3.4"))
        XCTAssertFalse(MultiaddrText.isPlausible("/"))
        XCTAssertFalse(MultiaddrText.isPlausible("/ip4//tcp/1"))
        XCTAssertFalse(MultiaddrText.isPlausible("/ip4/1.2.3.4/"))
        XCTAssertFalse(MultiaddrText.isPlausible("/ip4/1.2.3.4 /tcp/1"))
    }

    func testPeerIDAndDnsaddr() {
        XCTAssertEqual(MultiaddrText.peerID("/ip4/1.2.3.4/tcp/1/p2p/QmA"), "QmA")
        XCTAssertEqual(MultiaddrText.peerID("/ip4/1.2.3.4/tcp/1/ipfs/QmB"), "QmB")
        XCTAssertEqual(MultiaddrText.peerID("/ip4/1.2.3.4/tcp/1/p2p/Relay/p2p-circuit/p2p/Target"), "Target")
        XCTAssertNil(MultiaddrText.peerID("/ip4/1.2.3.4/tcp/1"))
        XCTAssertEqual(MultiaddrText.dnsaddrDomain("/dnsaddr/x.test/p2p/QmA"), "x.test")
        XCTAssertNil(MultiaddrText.dnsaddrDomain("/ip4/1.2.3.4/dnsaddr/x"))
    }

    func testTXTAcceptance() {
        XCTAssertEqual(DNSAddrResolver.multiaddr(fromTXT: "dnsaddr=/ip4/1.2.3.4/tcp/1"), "/ip4/1.2.3.4/tcp/1")
        XCTAssertEqual(DNSAddrResolver.multiaddr(fromTXT: "/ip6/::1/tcp/1"), "/ip6/::1/tcp/1")
        XCTAssertNil(DNSAddrResolver.multiaddr(fromTXT: "v=spf1 -all"))
        XCTAssertNil(DNSAddrResolver.multiaddr(fromTXT: "dnsaddr=oops"))
        XCTAssertNil(DNSAddrResolver.multiaddr(fromTXT: "dnslink=/ipfs/Qm"))
    }
}

final class DNSAddrResolverTests: XCTestCase {
    /// A fake zone: name → TXT strings; names absent from the table are NXDOMAIN.
    func resolver(_ zone: [String: [String]], maxDepth: Int = 4, failing: Set<String> = []) -> DNSAddrResolver {
        DNSAddrResolver(serverDescription: "fake", maxDepth: maxDepth) { name in
            if failing.contains(name) { throw DNSError.serverFailure(name: name, server: "fake", reason: "SERVFAIL") }
            guard let v = zone[name] else { throw DNSError.nxdomain(name: name, server: "fake") }
            return v
        }
    }

    func testMergeSortAndDedupe() throws {
        let r = try resolver([
            "_dnsaddr.m.test": ["dnsaddr=/ip4/2.2.2.2/tcp/1/p2p/PeerB", "dnsaddr=/ip4/1.1.1.1/tcp/1/p2p/PeerA",
                                "dnsaddr=/ip6/::1/tcp/1/p2p/PeerA", "dnsaddr=/ip4/1.1.1.1/tcp/1/p2p/PeerA",
                                "/ip4/9.9.9.9/tcp/1", "v=spf1 -all"],
        ]).resolve("M.test.")
        XCTAssertEqual(r.domain, "m.test")
        XCTAssertEqual(r.peers, [
            DNSPeer(peerID: "", addrs: ["/ip4/9.9.9.9/tcp/1"]),
            DNSPeer(peerID: "PeerA", addrs: ["/ip4/1.1.1.1/tcp/1/p2p/PeerA", "/ip6/::1/tcp/1/p2p/PeerA"]),
            DNSPeer(peerID: "PeerB", addrs: ["/ip4/2.2.2.2/tcp/1/p2p/PeerB"]),
        ])
        XCTAssertEqual(r.tuples.map { $0.peerID }, ["", "PeerA", "PeerB"])
    }

    func testFallbackToBareName() throws {
        // _dnsaddr missing entirely.
        let a = try resolver(["b.test": ["/ip4/1.1.1.1/tcp/1/p2p/P"]]).resolve("b.test")
        XCTAssertEqual(a.peers.first?.addrs, ["/ip4/1.1.1.1/tcp/1/p2p/P"])
        // _dnsaddr present but only unrelated strings.
        let b = try resolver(["_dnsaddr.c.test": ["hello"], "c.test": ["dnsaddr=/ip4/1.1.1.2/tcp/1/p2p/P"]]).resolve("c.test")
        XCTAssertEqual(b.peers.first?.addrs, ["/ip4/1.1.1.2/tcp/1/p2p/P"])
    }

    func testErrors() {
        XCTAssertThrowsError(try resolver([:]).resolve("missing.test")) { e in
            XCTAssertEqual(e as? DNSError, .nxdomain(name: "missing.test", server: "fake"))
        }
        XCTAssertThrowsError(try resolver(["_dnsaddr.j.test": ["x"], "j.test": ["y"]]).resolve("j.test")) { e in
            XCTAssertEqual(e as? DNSError, .noUsableRecords(domain: "j.test", server: "fake", queried: ["_dnsaddr.j.test", "j.test"]))
        }
        XCTAssertThrowsError(try resolver([:], failing: ["_dnsaddr.s.test"]).resolve("s.test")) { e in
            guard case .serverFailure(let n, let s, _)? = e as? DNSError else { return XCTFail("\(e)") }
            XCTAssertEqual(n, "_dnsaddr.s.test")
            XCTAssertEqual(s, "fake")
        }
        XCTAssertThrowsError(try resolver([:]).resolve("bad..name")) { e in
            XCTAssertEqual((e as? DNSError)?.code, "DNS_INVALID_NAME")
        }
    }

    func testNestedDepthCycleAndPeerFilter() throws {
        var zone: [String: [String]] = [
            "_dnsaddr.root.test": ["dnsaddr=/dnsaddr/n1.test", "dnsaddr=/dnsaddr/n2.test/p2p/PeerE", "dnsaddr=/dnsaddr/gone.test", "dnsaddr=/dnsaddr/root.test"],
            "_dnsaddr.n1.test": ["dnsaddr=/ip4/10.0.0.1/tcp/1/p2p/PeerD"],
            "_dnsaddr.n2.test": ["dnsaddr=/ip4/10.0.0.2/tcp/1/p2p/PeerE", "dnsaddr=/ip4/10.0.0.3/tcp/1/p2p/PeerF"],
        ]
        let r = try resolver(zone).resolve("root.test")
        XCTAssertEqual(r.peers.map { $0.peerID }, ["PeerD", "PeerE"])
        XCTAssertEqual(r.warnings.count, 2, "\(r.warnings)")  // gone.test NXDOMAIN, root.test cycle
        XCTAssertTrue(r.warnings.contains { $0.contains("cycle") })
        // A chain d0 → d1 → … → d6; maxDepth 4 follows d1…d4.
        zone = [:]
        for i in 0..<7 {
            zone["_dnsaddr.d\(i).test"] = ["dnsaddr=/ip4/10.1.0.\(i)/tcp/1/p2p/P\(i)", "dnsaddr=/dnsaddr/d\(i + 1).test"]
        }
        let chain = try resolver(zone).resolve("d0.test")
        XCTAssertEqual(chain.peers.map { $0.peerID }, ["P0", "P1", "P2", "P3", "P4"])
        XCTAssertTrue(chain.warnings.contains { $0.contains("deeper than 4") })
    }

    func testFormatting() throws {
        let r = try resolver([
            "_dnsaddr.f.test": ["dnsaddr=/ip4/1.1.1.1/tcp/1/p2p/PeerA", "/ip4/9.9.9.9/tcp/1", "dnsaddr=/dnsaddr/x.test"],
        ]).resolve("f.test")
        XCTAssertEqual(DNSTool.formatHuman(r), """
            f.test: 2 peers, 2 addresses (via fake)
            (no peer id)
              /ip4/9.9.9.9/tcp/1
            PeerA
              /ip4/1.1.1.1/tcp/1/p2p/PeerA
            warning: ignored /dnsaddr/x.test: DNS name x.test does not exist (NXDOMAIN from fake)

            """)
        XCTAssertEqual(DNSTool.formatJSON(r), """
            {"domain":"f.test","peers":[{"addrs":["/ip4/9.9.9.9/tcp/1"],"peer_id":""},{"addrs":["/ip4/1.1.1.1/tcp/1/p2p/PeerA"],"peer_id":"PeerA"}],"server":"fake","warnings":["ignored /dnsaddr/x.test: DNS name x.test does not exist (NXDOMAIN from fake)"]}
            """)
        XCTAssertEqual(DNSTool.formatJSONError(DNSError.nxdomain(name: "a.test", server: "s")),
                       #"{"error":{"code":"DNS_NXDOMAIN","message":"DNS name a.test does not exist (NXDOMAIN from s)"}}"#)
    }

    func testServerParsing() throws {
        XCTAssertEqual(try DNSServer("127.0.0.1").description, "127.0.0.1:53")
        XCTAssertEqual(try DNSServer("127.0.0.1:5353").port, 5353)
        XCTAssertEqual(try DNSServer("localhost:53").port, 53)
        for bad in ["", ":53", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:x", "[::1]:53", "::1", "bad host"] {
            XCTAssertThrowsError(try DNSServer(bad), bad) { e in
                XCTAssertEqual((e as? DNSError)?.code, "DNS_INVALID_SERVER")
            }
        }
    }
}
