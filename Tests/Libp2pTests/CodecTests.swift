import XCTest
import Identity
import Wire
@testable import Libp2p

/// Deterministic pseudo-random generator for the bounded fuzz loops.
struct XorShift {
    var s: UInt64
    init(_ seed: UInt64) { s = seed | 1 }
    mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }

    /// A mutated copy: bit flips, truncation, insertion, duplication.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + int(4)) {
            switch int(6) {
            case 0 where !b.isEmpty: b[int(b.count)] ^= UInt8(1 << int(8))
            case 1 where !b.isEmpty: b = Array(b.prefix(int(b.count)))
            case 2: b.insert(UInt8(truncatingIfNeeded: next()), at: int(b.count + 1))
            case 3 where !b.isEmpty: b[int(b.count)] = [0x00, 0xff, 0x80, 0x7f][int(4)]
            case 4: b += bytes(int(16))
            default: if !b.isEmpty { let i = int(b.count); b.insert(contentsOf: b[i...].prefix(8), at: i) }
            }
        }
        return b
    }
}

/// Run `body` repeatedly for about `seconds`.
func fuzzFor(_ seconds: Double, seed: UInt64, _ body: (inout XorShift) throws -> Void) rethrows {
    var rng = XorShift(seed)
    let end = Date().addingTimeInterval(seconds)
    var n = 0
    while n < 200 || Date() < end {
        try body(&rng)
        n += 1
        if n > 2_000_000 { break }
    }
}

final class MultiaddrTests: XCTestCase {
    // Vectors produced by py-multiaddr (an implementation not written here).
    let vectors: [(String, String)] = [
        ("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1"),
        ("/ip6/::1/tcp/80", "2900000000000000000000000000000001060050"),
        ("/ip6/2001:db8::ff00:42:8329/tcp/65535", "2920010db8000000000000ff000042832906ffff"),
        ("/dns4/example.com/tcp/443", "360b6578616d706c652e636f6d0601bb"),
        ("/dns/a.b/tcp/1", "3503612e62060001"),
        ("/dns6/x.y/tcp/2", "3703782e79060002"),
        ("/dnsaddr/bootstrap.example.org", "3815626f6f7473747261702e6578616d706c652e6f7267"),
        ("/ip4/1.2.3.4/tcp/5/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
         "0401020304060005a503260024080112202ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b"),
        ("/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
         "a5032212209dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9"),
    ]

    func testKnownAnswers() throws {
        for (text, hex) in vectors {
            let m = try Multiaddr(text)
            XCTAssertEqual(Hex.encode(m.bytes), hex, text)
            XCTAssertEqual(m.description, text)
            XCTAssertEqual(try Multiaddr(bytes: Hex.decode(hex)!), m)
        }
    }

    func testAliasesAndHelpers() throws {
        let id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        let peer = try PeerID(string: id)
        XCTAssertEqual(try Multiaddr("/ipfs/\(id)"), try Multiaddr("/p2p/\(id)"))
        XCTAssertEqual(try Multiaddr("/p2p/\(peer.cidBase36)").peerIDBytes, peer.bytes)
        let m = try Multiaddr("/ip4/10.0.0.1/tcp/7/p2p/\(id)")
        XCTAssertEqual(m.withoutPeerID.description, "/ip4/10.0.0.1/tcp/7")
        XCTAssertEqual(m.tcpTarget?.host, "10.0.0.1")
        XCTAssertEqual(m.tcpTarget?.port, 7)
        XCTAssertEqual(m.withoutPeerID.withPeerID(peer.bytes), m)
    }

    func testHostPort() throws {
        XCTAssertEqual(try Multiaddr(hostPort: "0.0.0.0:4100").description, "/ip4/0.0.0.0/tcp/4100")
        XCTAssertEqual(try Multiaddr(hostPort: "[::]:4100").description, "/ip6/::/tcp/4100")
        XCTAssertEqual(try Multiaddr(hostPort: "[2001:db8::1]:1").description, "/ip6/2001:db8::1/tcp/1")
        XCTAssertEqual(try Multiaddr(hostPort: "node1.example.org:4100").description, "/dns/node1.example.org/tcp/4100")
        for bad in ["", ":1", "1.2.3.4", "1.2.3.4:x", "1.2.3.4:70000", "::1:80", "[::1]80", "a/b:1"] {
            XCTAssertThrowsError(try Multiaddr(hostPort: bad), bad)
        }
    }

    func testRejects() {
        for bad in ["", "ip4/1.2.3.4", "/ip4/1.2.3", "/ip4/1.2.3.4/tcp", "/ip4/1.2.3.4/tcp/65536", "/tcp/-1",
                    "/udp/5", "/ip6/zz::1", "/p2p/notbase58!", "/dns4//tcp/1", "/quic/1"] {
            XCTAssertThrowsError(try Multiaddr(bad), bad)
        }
        for hex in ["", "04", "047f0000", "0601", "9903", "350a61", "a50305ffff", "ffffffffffffffffffffff"] {
            XCTAssertThrowsError(try Multiaddr(bytes: Hex.decode(hex)!), hex)
        }
    }

    func testFuzzBinaryAndText() {
        let seeds = vectors.map { Hex.decode($0.1)! }
        fuzzFor(1.5, seed: 0x6d61) { rng in
            let input = rng.mutate(seeds[rng.int(seeds.count)])
            if let m = try? Multiaddr(bytes: input) {
                // Anything accepted round-trips through both forms.
                XCTAssertEqual(try? Multiaddr(bytes: m.bytes), m)
                if let t = try? Multiaddr(m.description) { XCTAssertEqual(t.bytes, m.bytes) }
            }
            let text = String(decoding: rng.mutate(Array(vectors[rng.int(vectors.count)].0.utf8)), as: UTF8.self)
            _ = try? Multiaddr(text)
        }
    }
}

final class MultistreamTests: XCTestCase {
    func testEncodeDecode() throws {
        let m = Multistream.encode("/multistream/1.0.0")
        XCTAssertEqual(m.first, 19)
        XCTAssertEqual(m.count, 20)
        XCTAssertEqual(m.last, 0x0a)
        let (text, used) = try XCTUnwrap(try Multistream.decode(m + Multistream.encode("na")))
        XCTAssertEqual(text, "/multistream/1.0.0")
        XCTAssertEqual(used, 20)
        XCTAssertNil(try Multistream.decode(Array(m.prefix(5))))
        XCTAssertNil(try Multistream.decode([]))
    }

    func testRejects() {
        XCTAssertThrowsError(try Multistream.decode([3, 0x61, 0x62, 0x63]))  // no newline
        XCTAssertThrowsError(try Multistream.decode([0, 0x0a]))  // empty
        XCTAssertThrowsError(try Multistream.decode([0xff, 0xff, 0x7f]))  // too long
        XCTAssertThrowsError(try Multistream.decode([2, 0xff, 0x0a]))  // not UTF-8
    }

    func testFuzz() {
        let seed = Multistream.encode("/multistream/1.0.0") + Multistream.encode("/noise")
        fuzzFor(1.0, seed: 0x6d73) { rng in
            let input = rng.mutate(seed)
            if let (text, used) = try? Multistream.decode(input) {
                XCTAssertLessThanOrEqual(used, input.count)
                XCTAssertFalse(text.contains("\n"))
            }
        }
    }
}

final class YamuxCodecTests: XCTestCase {
    func testHeaderKnownAnswer() throws {
        let h = YamuxHeader(type: .windowUpdate, flags: YamuxHeader.syn | YamuxHeader.ack, streamID: 0x01020304, length: 0x00040000)
        XCTAssertEqual(Hex.encode(h.bytes), "000100030102030400040000")
        XCTAssertEqual(try YamuxHeader.decode(h.bytes), h)
        XCTAssertThrowsError(try YamuxHeader.decode(Hex.decode("010000000000000000000000")!))  // version
        XCTAssertThrowsError(try YamuxHeader.decode(Hex.decode("000400000000000000000000")!))  // type
        XCTAssertThrowsError(try YamuxHeader.decode([0, 0, 0]))
    }

    func testFuzzHeaders() {
        fuzzFor(0.5, seed: 0x7961) { rng in
            let b = rng.bytes(12)
            if let h = try? YamuxHeader.decode(b) { XCTAssertEqual(h.bytes, b) }
        }
    }
}

final class NoiseTests: XCTestCase {
    func handshake() throws -> (NoiseHandshake, NoiseHandshake, [UInt8], [UInt8], [UInt8]) {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate()
        let i = NoiseHandshake(initiator: true, identity: ka)
        let r = NoiseHandshake(initiator: false, identity: kb)
        let m1 = i.writeMessage1()
        try r.readMessage1(m1)
        let m2 = try r.writeMessage2()
        XCTAssertEqual(try i.readMessage2(m2), kb.peerID)
        let m3 = try i.writeMessage3()
        XCTAssertEqual(try r.readMessage3(m3), ka.peerID)
        XCTAssertEqual(i.handshakeHash, r.handshakeHash)
        return (i, r, m1, m2, m3)
    }

    func testHandshakeAndTransport() throws {
        let (i, r, m1, _, _) = try handshake()
        XCTAssertEqual(m1.count, 32)
        let (isend, irecv) = i.split()
        let (rsend, rrecv) = r.split()
        for size in [0, 1, 100, 65519] {
            var plain = [UInt8](repeating: 0, count: size)
            for k in 0..<size { plain[k] = UInt8(truncatingIfNeeded: k) }
            var frame = [UInt8](repeating: 0, count: size + 16)
            plain.withUnsafeBufferPointer { p in frame.withUnsafeMutableBufferPointer { f in isend.seal(p.baseAddress ?? UnsafePointer(f.baseAddress!), size, into: f.baseAddress!) } }
            let n = try frame.withUnsafeMutableBufferPointer { try rrecv.openInPlace($0.baseAddress!, $0.count) }
            XCTAssertEqual(Array(frame.prefix(n)), plain)
            // And the other direction.
            var back = [UInt8](repeating: 0, count: size + 16)
            plain.withUnsafeBufferPointer { p in back.withUnsafeMutableBufferPointer { f in rsend.seal(p.baseAddress ?? UnsafePointer(f.baseAddress!), size, into: f.baseAddress!) } }
            var tampered = back
            tampered[tampered.count - 1] ^= 1
            let irecvCopy = irecv
            XCTAssertThrowsError(try tampered.withUnsafeMutableBufferPointer { try irecvCopy.openInPlace($0.baseAddress!, $0.count) })
        }
    }

    func testPayloadCodec() throws {
        let k = PrivateKey.generate()
        let spub = Sodium.randomBytes(32)
        let p = NoisePayload.make(identity: k, staticPub: spub)
        let d = try NoisePayload.decode(p.encode())
        XCTAssertEqual(d, p)
        XCTAssertEqual(try d.verify(staticPub: spub), k.peerID)
        XCTAssertThrowsError(try d.verify(staticPub: Sodium.randomBytes(32)))
        XCTAssertThrowsError(try NoisePayload.decode([0x0a, 0x01]))
        XCTAssertThrowsError(try NoisePayload.decode([0x08, 0x01]))
    }

    func testHKDFKnownAnswer() {
        // RFC 5869-style two-output HKDF with empty salt semantics as Noise uses it: checked against
        // HMAC-SHA256(key = 32 zero bytes, message = "") = b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad.
        XCTAssertEqual(Hex.encode(NoiseCrypto.hmac([UInt8](repeating: 0, count: 32), [])),
                       "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
        let (a, b) = NoiseCrypto.hkdf2([UInt8](repeating: 1, count: 32), [2, 3])
        XCTAssertEqual(a, NoiseCrypto.hmac(NoiseCrypto.hmac([UInt8](repeating: 1, count: 32), [2, 3]), [1]))
        XCTAssertEqual(b, NoiseCrypto.hmac(NoiseCrypto.hmac([UInt8](repeating: 1, count: 32), [2, 3]), a, [2]))
    }

    func testFuzzHandshakeMessages() throws {
        let (_, _, m1, m2, m3) = try handshake()
        let kb = PrivateKey.generate()
        let payload = NoisePayload.make(identity: kb, staticPub: Sodium.randomBytes(32)).encode()
        try fuzzFor(1.5, seed: 0x6e6f) { rng in
            let r = NoiseHandshake(initiator: false, identity: kb)
            _ = try? r.readMessage1(rng.mutate(m1))
            let i = NoiseHandshake(initiator: true, identity: kb)
            _ = i.writeMessage1()
            XCTAssertThrowsError(try i.readMessage2(rng.mutate(m2)))
            let r2 = NoiseHandshake(initiator: false, identity: kb)
            try? r2.readMessage1(m1)
            _ = try? r2.writeMessage2()
            XCTAssertThrowsError(try r2.readMessage3(rng.mutate(m3)))
            _ = try? NoisePayload.decode(rng.mutate(payload))
        }
    }
}

final class IdentifyCodecTests: XCTestCase {
    func sample() throws -> IdentifyInfo {
        IdentifyInfo(protocolVersion: "ipfs/0.1.0", agentVersion: "p2pos/test", publicKey: PrivateKey.generate().publicKey.protobuf,
                     listenAddrs: [try Multiaddr("/ip4/127.0.0.1/tcp/4001"), try Multiaddr("/ip6/::1/tcp/4001")],
                     observedAddr: try Multiaddr("/ip4/1.2.3.4/tcp/5"), protocols: ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"])
    }

    func testRoundTripBothFramings() throws {
        let info = try sample()
        let enc = info.encode()
        XCTAssertEqual(try IdentifyInfo.decode(enc), info)
        XCTAssertEqual(try IdentifyInfo.decodeStreamBody(enc), info)
        XCTAssertEqual(try IdentifyInfo.decodeStreamBody(Varint.encode(UInt64(enc.count)) + enc), info)
        XCTAssertNotNil(info.peerID)
    }

    func testFuzz() throws {
        let enc = try sample().encode()
        fuzzFor(1.0, seed: 0x6964) { rng in
            _ = try? IdentifyInfo.decodeStreamBody(rng.mutate(enc))
        }
    }
}

final class NoiseKnownAnswerTests: XCTestCase {
    // Produced by py-libp2p 0.8.1's payload code and the `noiseprotocol` package (tests/interop has
    // the environment): identity seeds 0x01…/0x02…, static keys 0x03…/0x04…, ephemeral 0x05…/0x06….
    let m1 = "50a61409b1ddd0325e9b16b700e719e9772c07000b1bd7786e907c653d20495d"
    let m2 = "f5b2d6e60f9477e310c2982daaa6c9136c108a1777c5947e448fa37d68174557a16cb8fafe6fcec12593015a064545f434c5c48d8d154256ecdd2012848233a50e33d4a3d058e47ae77d4c9bc84d9f93f39e2a53a7c04755fc914813fa50264b70f587f078ce9c34ac5b60070650d6312fe47cbd3d2eeab15d663b4da7b27abbffde13a63b76b5b58ef0133ed2a947862da950f165f3d23ce31ea7b842ffd050193aaabff8d88068ad072fe4f8424aba10c14b7f601c9b3051465f33704078ce545c5da01b74739f"
    let m3 = "c7e957e82bac138ecc5726d23d172ede00b769dba6d9b94d0d9eedf12f63cd78e5cd4c1012b3d4b046f19866170133a47f57440e2f50e0a0bd9d54517a3ab83e31785d37e6f7604cd83a597c7b7c2246d7e7f5db26113d5b0f6ad76469469deb59e69d811aff324889da1eb92d22df7b11ac48052cb16bdbec526ef8dd3c44f13707edb888b47c93d96373c90a467f4240764e1431312a51ccae87272b3a86aa5e6c2214e9644b0c"
    let t1 = "2fd3062d4268facd4561e2a337376963163fbd66b143a50e80f4776c7060307eaa74c121"
    let t2 = "478bcf555237356d1ad1b3afa63973c1a783ca82842b3574c40ba043798aa6ef6af86210"
    let pA = "0a24080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c1240cfb88e685664cc7c0737087db6b15f1244090f930750c235eae4fa48010153c48741b62fd21652ea98d9917258f3410c41d0c9011a66b7b4734d189a0614560d"

    func testMatchesIndependentImplementation() throws {
        let idA = try PrivateKey(seed: [UInt8](repeating: 1, count: 32))
        let idB = try PrivateKey(seed: [UInt8](repeating: 2, count: 32))
        let sA = NoiseCrypto.x25519Keypair(priv: [UInt8](repeating: 3, count: 32))
        let sB = NoiseCrypto.x25519Keypair(priv: [UInt8](repeating: 4, count: 32))
        let eA = NoiseCrypto.x25519Keypair(priv: [UInt8](repeating: 5, count: 32))
        let eB = NoiseCrypto.x25519Keypair(priv: [UInt8](repeating: 6, count: 32))
        XCTAssertEqual(Hex.encode(NoisePayload.make(identity: idA, staticPub: sA.pub).encode()), pA)
        let i = NoiseHandshake(initiator: true, identity: idA, staticKey: sA, ephemeral: eA)
        let r = NoiseHandshake(initiator: false, identity: idB, staticKey: sB, ephemeral: eB)
        XCTAssertEqual(Hex.encode(i.writeMessage1()), m1)
        try r.readMessage1(Hex.decode(m1)!)
        XCTAssertEqual(Hex.encode(try r.writeMessage2()), m2)
        XCTAssertEqual(try i.readMessage2(Hex.decode(m2)!), idB.peerID)
        XCTAssertEqual(Hex.encode(try i.writeMessage3()), m3)
        XCTAssertEqual(try r.readMessage3(Hex.decode(m3)!), idA.peerID)
        let (isend, _) = i.split()
        let (rsend, _) = r.split()
        func seal(_ c: TransportCipher, _ text: String) -> String {
            let p = Array(text.utf8)
            var out = [UInt8](repeating: 0, count: p.count + 16)
            p.withUnsafeBufferPointer { pp in out.withUnsafeMutableBufferPointer { c.seal(pp.baseAddress!, p.count, into: $0.baseAddress!) } }
            return Hex.encode(out)
        }
        XCTAssertEqual(seal(isend, "hello from initiator"), t1)
        XCTAssertEqual(seal(rsend, "hello from responder"), t2)
    }
}
