import XCTest
import CSodium
@testable import Identity

/// The project's Ed25519 verifier against libsodium: group arithmetic, then signatures (valid,
/// mutated, malformed, small-order, torsion), one at a time and in batches.
final class Ed25519Tests: XCTestCase {
    override func setUp() { Sodium.initialize() }

    func randomScalar() -> [UInt8] {
        var s = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_random(&s)
        return s
    }

    func sodiumBaseMul(_ k: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        XCTAssertEqual(crypto_scalarmult_ed25519_base_noclamp(&out, k), 0)
        return out
    }

    func testBasePointAndScalarMultiplicationMatchLibsodium() {
        var one = [UInt8](repeating: 0, count: 32)
        one[0] = 1
        XCTAssertEqual(P3.base.encoded, sodiumBaseMul(one))
        XCTAssertTrue(P3.identity.isIdentity)
        XCTAssertFalse(P3.base.isIdentity)
        for _ in 0..<40 {
            let k = randomScalar()
            // [k]B through the width-8 base table.
            var bTerms = Straus.Terms(capacity: 2)
            bTerms.addSplit(k, BaseTable.low, BaseTable.high, width: 8)
            XCTAssertEqual(bTerms.run().encoded, sodiumBaseMul(k))
            // [k]P for a random P through a key's width-7 tables, and decode(encode(P)) round trip.
            let pEnc = sodiumBaseMul(randomScalar())
            guard let p = P3.decode(pEnc) else { return XCTFail("decode of a valid point failed") }
            XCTAssertEqual(p.encoded, pEnc)
            var expect = [UInt8](repeating: 0, count: 32)
            XCTAssertEqual(crypto_scalarmult_ed25519_noclamp(&expect, k, pEnc), 0)
            let tables = KeyTables(p)
            var pTerms = Straus.Terms(capacity: 2)
            pTerms.addSplit(k, tables.low, tables.high, width: KeyTables.width)
            XCTAssertEqual(withExtendedLifetime(tables) { pTerms.run() }.encoded, expect)    // the terms point into `tables`
            // A 128-bit scalar through one width-5 table.
            let k128 = Array(k[0..<16]) + [UInt8](repeating: 0, count: 16)
            XCTAssertEqual(crypto_scalarmult_ed25519_noclamp(&expect, k128, pEnc), 0)
            var hTerms = Straus.Terms(capacity: 1)
            hTerms.add(k128, Cached8(p))
            XCTAssertEqual(hTerms.run().encoded, expect)
            // P − P = O, P + (−P) = O, 2P = P + P.
            XCTAssertTrue(p.sub(p.cached).isIdentity)
            XCTAssertTrue(p.add(p.negated.cached).isIdentity)
            XCTAssertEqual(p.double().encoded, p.add(p.cached).encoded)
        }
    }

    /// Width-w NAF digits of 128-bit scalars: odd, bounded, at most one non-zero in any w
    /// consecutive slots, and they add up to the scalar (all-ones and 2^127 included).
    func testNAFDigitsReconstructTheScalar() {
        var cases: [[UInt8]] = [[UInt8](repeating: 0xff, count: 16), [UInt8](repeating: 0, count: 15) + [0x80], [UInt8](repeating: 0, count: 16), [1] + [UInt8](repeating: 0, count: 15)]
        for _ in 0..<300 { cases.append(Sodium.randomBytes(16)) }
        for w in [5, 7, 8] {
            for c in cases {
                let r = UnsafeMutablePointer<Int8>.allocate(capacity: 130)
                defer { r.deallocate() }
                Scalar.naf(c + [UInt8](repeating: 0, count: 16), width: w, into: r)
                var k: UInt128 = 0
                for i in stride(from: 15, through: 0, by: -1) { k = (k << 8) | UInt128(c[i]) }
                var lastNonZero = -1000
                for i in 0..<130 where r[i] != 0 {
                    let d = Int(r[i])
                    XCTAssertEqual(abs(d) % 2, 1)
                    XCTAssertLessThanOrEqual(abs(d), (1 << (w - 1)) - 1)
                    XCTAssertGreaterThanOrEqual(i - lastNonZero, w, "non-adjacency")
                    lastNonZero = i
                }
                // Σ d_i·2^i exactly (digits at 128 and 129 included): carried into bits, it must be
                // k's 128 bits with nothing above.
                var bits: [Int] = []
                var carry = 0
                for i in 0..<140 {
                    let v = (i < 130 ? Int(r[i]) : 0) + carry
                    let bit = ((v % 2) + 2) % 2
                    bits.append(bit)
                    carry = (v - bit) / 2
                }
                XCTAssertEqual(carry, 0)
                XCTAssertEqual(bits[0..<128].map { $0 }, (0..<128).map { Int((k >> $0) & 1) }, "width \(w), scalar \(c)")
                XCTAssertEqual(bits[128...].filter { $0 != 0 }.count, 0, "width \(w), scalar \(c)")
            }
        }
    }

    func testFieldEncodingIsCanonical() {
        // p + 1 (≥ p) is not a canonical y; 1 is.
        var pPlus1 = [UInt8](repeating: 0xff, count: 32)
        pPlus1[0] = 0xee
        pPlus1[31] = 0x7f
        XCTAssertNil(P3.decode(pPlus1))
        XCTAssertEqual(FE(bytes: pPlus1).bytes, [1] + [UInt8](repeating: 0, count: 31))
        // Negative zero: y = 1 (x = 0) with the sign bit set.
        var negZero = [UInt8](repeating: 0, count: 32)
        negZero[0] = 1
        XCTAssertNotNil(P3.decode(negZero))
        negZero[31] = 0x80
        XCTAssertNil(P3.decode(negZero))
        // y = 2 is not on the curve.
        var notOnCurve = [UInt8](repeating: 0, count: 32)
        notOnCurve[0] = 2
        XCTAssertNil(P3.decode(notOnCurve))
    }

    func testValidSignaturesVerifyAloneAndInBatches() {
        var items: [Ed25519.Item] = []
        let keys = (0..<5).map { _ in PrivateKey.generate() }
        for i in 0..<70 {
            let k = keys[i % keys.count]
            let msg = Sodium.randomBytes(i * 5 % 301)
            let sig = k.sign(msg)
            XCTAssertTrue(Ed25519.verify(publicKey: k.publicKey.raw, signature: sig, message: msg))
            items.append(Ed25519.Item(publicKey: k.publicKey.raw, signature: sig, message: msg))
        }
        XCTAssertEqual(Ed25519.verify(batch: items), [Bool](repeating: true, count: items.count))
        XCTAssertEqual(Ed25519.verify(batch: []), [])
    }

    /// Random single-bit and byte mutations of key, signature and message: the answer is
    /// libsodium's every time, alone and in batches.
    func testMutationsAgreeWithLibsodium() {
        var items: [Ed25519.Item] = []
        for i in 0..<600 {
            let k = PrivateKey.generate()
            var msg = Sodium.randomBytes(1 + i % 200)
            var sig = k.sign(msg)
            var pk = k.publicKey.raw
            switch i % 5 {
            case 0: sig[Int.random(in: 0..<32)] ^= UInt8(1 << Int.random(in: 0..<8))   // R
            case 1: sig[32 + Int.random(in: 0..<32)] ^= UInt8(1 << Int.random(in: 0..<8))   // S
            case 2: pk[Int.random(in: 0..<32)] ^= UInt8(1 << Int.random(in: 0..<8))
            case 3: msg[Int.random(in: 0..<msg.count)] ^= 0x01
            default: break   // left valid
            }
            let theirs = (try? PublicKey(raw: pk))?.verify(signature: sig, message: msg)
                ?? (crypto_sign_verify_detached(sig, msg, UInt64(msg.count), pk) == 0)
            XCTAssertEqual(Ed25519.verify(publicKey: pk, signature: sig, message: msg), theirs, "case \(i)")
            items.append(Ed25519.Item(publicKey: pk, signature: sig, message: msg))
        }
        let single = items.map { Ed25519.verify(publicKey: $0.publicKey, signature: $0.signature, message: $0.message) }
        XCTAssertEqual(single.filter { $0 }.count, 120, "exactly the unmutated fifth verifies")
        XCTAssertEqual(Ed25519.verify(batch: items), single)
        // Other groupings give the same answers.
        for size in [2, 7, 64] {
            var got: [Bool] = []
            var i = 0
            while i < items.count {
                got += Ed25519.verify(batch: Array(items[i..<min(items.count, i + size)]))
                i += size
            }
            XCTAssertEqual(got, single, "batches of \(size)")
        }
    }

    func testMalformedInputsAreRefused() {
        let k = PrivateKey.generate()
        let msg = Array("hello".utf8)
        let sig = k.sign(msg)
        let pk = k.publicKey.raw
        XCTAssertFalse(Ed25519.verify(publicKey: pk, signature: Array(sig.prefix(63)), message: msg))
        XCTAssertFalse(Ed25519.verify(publicKey: Array(pk.prefix(31)), signature: sig, message: msg))
        XCTAssertFalse(Ed25519.verify(publicKey: pk, signature: sig + [0], message: msg))
        // S + L: the same point equation, a non-canonical scalar. libsodium refuses it too.
        var sPlusL = sig
        var carry = 0
        for i in 0..<32 {
            let v = Int(sig[32 + i]) + Int(Scalar.order[i]) + carry
            sPlusL[32 + i] = UInt8(v & 0xff)
            carry = v >> 8
        }
        XCTAssertEqual(carry, 0)
        XCTAssertFalse(Ed25519.verify(publicKey: pk, signature: sPlusL, message: msg))
        XCTAssertNotEqual(crypto_sign_verify_detached(sPlusL, msg, UInt64(msg.count), pk), 0)
        // Small-order key (the identity) with S = 0, R = identity: [S]B − [h]A − R = O, yet refused.
        var ident = [UInt8](repeating: 0, count: 32)
        ident[0] = 1
        let forged = ident + [UInt8](repeating: 0, count: 32)
        XCTAssertFalse(Ed25519.verify(publicKey: ident, signature: forged, message: msg))
        XCTAssertNotEqual(crypto_sign_verify_detached(forged, msg, UInt64(msg.count), ident), 0)
        // Small-order R with a real key.
        let smallR = ident + Array(sig[32..<64])
        XCTAssertFalse(Ed25519.verify(publicKey: pk, signature: smallR, message: msg))
        XCTAssertEqual(Ed25519.verify(batch: [
            Ed25519.Item(publicKey: pk, signature: sig, message: msg),
            Ed25519.Item(publicKey: ident, signature: forged, message: msg),
            Ed25519.Item(publicKey: pk, signature: smallR, message: msg),
            Ed25519.Item(publicKey: pk, signature: sPlusL, message: msg),
        ]), [true, false, false, false])
    }

    /// The documented difference from libsodium: R carrying a small-order component, signed by the
    /// key's owner, satisfies the cofactored equation only. It is accepted alone and in any batch,
    /// so the answer never depends on the batch.
    func testTorsionComponentIsTheOnlyDifferenceAndIsBatchIndependent() throws {
        let seed = Sodium.randomBytes(32)
        let key = try PrivateKey(seed: seed)
        var hh = [UInt8](repeating: 0, count: 64)
        crypto_hash_sha512(&hh, seed, 32)
        var a = Array(hh[0..<32])
        a[0] &= 248; a[31] &= 127; a[31] |= 64
        var aRed = [UInt8](repeating: 0, count: 32)
        crypto_core_ed25519_scalar_reduce(&aRed, a + [UInt8](repeating: 0, count: 32))
        // An order-8 point.
        let t8: [UInt8] = [0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
                           0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a]
        let t = try XCTUnwrap(P3.decode(t8))
        XCTAssertTrue(t.hasSmallOrder)
        let msg = Array("torsion".utf8)
        let r = randomScalar()
        let rPoint = try XCTUnwrap(P3.decode(sodiumBaseMul(r)))
        let rBytes = rPoint.add(t.cached).encoded
        let h = Scalar.hashReduce(rBytes, key.publicKey.raw, msg)
        let s = Scalar.add(r, Scalar.mul(h, aRed))
        let sig = rBytes + s
        XCTAssertNotEqual(crypto_sign_verify_detached(sig, msg, UInt64(msg.count), key.publicKey.raw), 0)
        XCTAssertTrue(Ed25519.verify(publicKey: key.publicKey.raw, signature: sig, message: msg))
        let good = key.sign(msg)
        let items = [
            Ed25519.Item(publicKey: key.publicKey.raw, signature: sig, message: msg),
            Ed25519.Item(publicKey: key.publicKey.raw, signature: good, message: msg),
            Ed25519.Item(publicKey: key.publicKey.raw, signature: sig, message: msg),
        ]
        XCTAssertEqual(Ed25519.verify(batch: items), [true, true, true])
    }
}
