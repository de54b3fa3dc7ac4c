import XCTest
import Identity
import Wire

/// Vectors computed with PyNaCl + the base58 package (independent implementations) and RFC 8032.
final class IdentityTests: XCTestCase {
    let seed: [UInt8] = Array(1...32)
    let privB64 = "CAESQAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
    let pubB64 = "CAESIHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"
    let peer = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"
    let cid = "k51qzi5uqu5dj7skeind43o1an76ns1q5g2bupqw6o1hmcccenbkvalzo2olt0"

    func testRFC8032Vector1() throws {
        let k = try PrivateKey(seed: Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!)
        XCTAssertEqual(Hex.encode(k.publicKey.raw), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        XCTAssertEqual(Hex.encode(k.sign([])), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    }

    func testKeyEncodingsMatchPyNaCl() throws {
        let k = try PrivateKey(seed: seed)
        XCTAssertEqual(k.base64, privB64)
        XCTAssertEqual(k.publicKey.base64, pubB64)
        XCTAssertEqual(k.peerID.base58, peer)
        XCTAssertEqual(k.peerID.cidBase36, cid)
        XCTAssertEqual(Hex.encode(k.sign(Array("hello".utf8))), "6970dad564d940df9017a22431bc2d52fae0b56ce07b860fbe3819fe7128653ccb4ce6c05aef0141e84b1428cc6289fd6e1d5a0941e2005f4dfe534cdbb1990e")
        XCTAssertEqual(try PrivateKey(base64: privB64).seed, seed)
        XCTAssertEqual(try PublicKey(base64: pubB64), k.publicKey)
    }

    func testPeerIDParsesBothForms() throws {
        let a = try PeerID(string: peer)
        let b = try PeerID(string: cid)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.publicKey?.base64, pubB64)
        XCTAssertThrowsError(try PeerID(string: "12D3KooWnotreally"))
        XCTAssertThrowsError(try PeerID(string: "hello"))
        XCTAssertThrowsError(try PeerID(string: ""))
    }

    func testSignVerify() {
        let k = PrivateKey.generate()
        let sig = k.sign([1, 2, 3])
        XCTAssertTrue(k.publicKey.verify(signature: sig, message: [1, 2, 3]))
        XCTAssertFalse(k.publicKey.verify(signature: sig, message: [1, 2, 4]))
        var bad = sig; bad[0] ^= 1
        XCTAssertFalse(k.publicKey.verify(signature: bad, message: [1, 2, 3]))
        XCTAssertFalse(k.publicKey.verify(signature: Array(sig.prefix(63)), message: [1, 2, 3]))
    }

    func testSHA256() {
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testBadKeysRejected() {
        XCTAssertThrowsError(try PrivateKey(base64: "CAESQAECAwQF")) { XCTAssertEqual("\($0)", "not a libp2p protobuf key (truncated protobuf bytes)") }  // truncated
        XCTAssertThrowsError(try PrivateKey(base64: "CAESQAECAwQ")) { XCTAssertEqual($0 as? KeyError, .badBase64) }
        XCTAssertThrowsError(try PrivateKey(base64: "not base64!!"))
        XCTAssertThrowsError(try PrivateKey(base64: String(privB64.dropLast(8)) + "AAAAAAA="))  // garbled tail → inconsistent pair or length
        // Type 0 (RSA) instead of Ed25519.
        var w = ProtobufWriter(); w.varint(field: 1, 0); w.bytes(field: 2, Array(repeating: 1, count: 64))
        XCTAssertThrowsError(try PrivateKey(protobuf: w.bytes)) { XCTAssertEqual($0 as? KeyError, .unsupportedKeyType(0)) }
        // Seed and public key that do not belong together.
        var inconsistent = Base64.decode(privB64)!; inconsistent[inconsistent.count - 1] ^= 1
        XCTAssertThrowsError(try PrivateKey(protobuf: inconsistent)) { XCTAssertEqual($0 as? KeyError, .inconsistentKeyPair) }
        XCTAssertThrowsError(try PublicKey(raw: [1, 2, 3]))
    }

    func testPeerIDOrderIsByteOrder() throws {
        var ids = (0..<200).map { _ in PrivateKey.generate().peerID }
        ids.append(ids[0])
        for a in ids.prefix(40) {
            for b in ids {
                XCTAssertEqual(a < b, a.bytes.lexicographicallyPrecedes(b.bytes))
            }
        }
        XCTAssertEqual(ids.sorted().map(\.bytes), ids.map(\.bytes).sorted { $0.lexicographicallyPrecedes($1) })
    }
}
