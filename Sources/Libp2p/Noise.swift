import CSodium
import Identity
import Wire

/// Errors in the Noise secure channel.
public enum NoiseError: Error, Equatable, Sendable, CustomStringConvertible {
    case decryptFailed
    case badMessage(String)
    case badPayload(String)
    case badSignature
    case peerMismatch(expected: String, got: String)
    case weakKey

    public var description: String {
        switch self {
        case .decryptFailed: return "noise: decryption failed (wrong key or corrupted frame)"
        case .badMessage(let s): return "noise: malformed handshake message (\(s))"
        case .badPayload(let s): return "noise: malformed handshake payload (\(s))"
        case .badSignature: return "noise: identity signature over static key does not verify"
        case .peerMismatch(let e, let g): return "noise: dialed \(e) but remote is \(g)"
        case .weakKey: return "noise: Diffie-Hellman produced an all-zero shared secret"
        }
    }
}

/// Noise primitives for Noise_XX_25519_ChaChaPoly_SHA256.
enum NoiseCrypto {
    static func hmac(_ key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        var st = crypto_auth_hmacsha256_state()
        _ = crypto_auth_hmacsha256_init(&st, key, key.count)
        for p in parts { _ = crypto_auth_hmacsha256_update(&st, p, UInt64(p.count)) }
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_auth_hmacsha256_final(&st, &out)
        return out
    }

    /// HKDF as the Noise spec defines it, two outputs.
    static func hkdf2(_ ck: [UInt8], _ ikm: [UInt8]) -> ([UInt8], [UInt8]) {
        let temp = hmac(ck, ikm)
        let o1 = hmac(temp, [1])
        let o2 = hmac(temp, o1, [2])
        return (o1, o2)
    }

    static func x25519Keypair() -> (priv: [UInt8], pub: [UInt8]) {
        x25519Keypair(priv: Sodium.randomBytes(32))
    }

    static func x25519Keypair(priv: [UInt8]) -> (priv: [UInt8], pub: [UInt8]) {
        var pub = [UInt8](repeating: 0, count: 32)
        _ = crypto_scalarmult_base(&pub, priv)
        return (priv, pub)
    }

    static func dh(_ priv: [UInt8], _ pub: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        guard crypto_scalarmult(&out, priv, pub) == 0 else { throw NoiseError.weakKey }
        return out
    }

    static func nonce(_ n: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { out[4 + i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
        return out
    }

    static func seal(_ key: [UInt8], _ n: UInt64, _ ad: [UInt8], _ plain: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plain.count + 16)
        let np = nonce(n)
        out.withUnsafeMutableBufferPointer { o in
            _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                o.baseAddress!, o.baseAddress! + plain.count, nil,
                plain, UInt64(plain.count), ad, UInt64(ad.count), nil, np, key)
        }
        return out
    }

    static func open(_ key: [UInt8], _ n: UInt64, _ ad: [UInt8], _ cipher: [UInt8]) throws -> [UInt8] {
        guard cipher.count >= 16 else { throw NoiseError.decryptFailed }
        let len = cipher.count - 16
        var out = [UInt8](repeating: 0, count: len)
        let np = nonce(n)
        let rc = cipher.withUnsafeBufferPointer { c in
            crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                &out, nil, c.baseAddress!, UInt64(len), c.baseAddress! + len, ad, UInt64(ad.count), np, key)
        }
        guard rc == 0 else { throw NoiseError.decryptFailed }
        return out
    }
}

/// A transport cipher (one direction) that encrypts and decrypts in place with detached tags.
final class TransportCipher {
    private let key: UnsafeMutablePointer<UInt8>
    private var n: UInt64 = 0
    private var nonce = [UInt8](repeating: 0, count: 12)

    init(key k: [UInt8]) {
        key = .allocate(capacity: 32)
        for i in 0..<32 { key[i] = k[i] }
    }

    deinit {
        sodium_memzero(key, 32)
        key.deallocate()
    }

    private func setNonce() {
        for i in 0..<8 { nonce[4 + i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
        n &+= 1
    }

    /// Encrypt `len` bytes at `src` into `dst`, writing the 16-byte tag after the ciphertext.
    func seal(_ src: UnsafePointer<UInt8>, _ len: Int, into dst: UnsafeMutablePointer<UInt8>) {
        setNonce()
        _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(dst, dst + len, nil, src, UInt64(len), nil, 0, nil, nonce, key)
    }

    /// Decrypt in place a frame of `len` bytes (ciphertext + tag); returns the plaintext length.
    func openInPlace(_ p: UnsafeMutablePointer<UInt8>, _ len: Int) throws -> Int {
        guard len >= 16 else { throw NoiseError.decryptFailed }
        setNonce()
        let m = len - 16
        guard crypto_aead_chacha20poly1305_ietf_decrypt_detached(p, nil, p, UInt64(m), p + m, nil, 0, nonce, key) == 0 else {
            throw NoiseError.decryptFailed
        }
        return m
    }
}

/// The libp2p Noise handshake payload: identity key, signature over the static key, extensions.
public struct NoisePayload: Equatable, Sendable {
    public static let sigPrefix = Array("noise-libp2p-static-key:".utf8)
    public var identityKey: [UInt8]
    public var identitySig: [UInt8]
    public var extensions: [UInt8]?

    public init(identityKey: [UInt8], identitySig: [UInt8], extensions: [UInt8]? = nil) {
        self.identityKey = identityKey
        self.identitySig = identitySig
        self.extensions = extensions
    }

    public func encode() -> [UInt8] {
        var w = ProtobufWriter()
        w.bytes(field: 1, identityKey)
        w.bytes(field: 2, identitySig)
        if let e = extensions { w.bytes(field: 4, e) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> NoisePayload {
        var r: ProtobufReader
        do { r = try ProtobufReader(bytes, maxSize: 8192) } catch { throw NoiseError.badPayload("too large") }
        var key: [UInt8]? = nil, sig: [UInt8]? = nil, ext: [UInt8]? = nil
        do {
            while let (f, v) = try r.next() {
                switch (f, v) {
                case (1, .bytes(let b)): key = b
                case (2, .bytes(let b)): sig = b
                case (4, .bytes(let b)): ext = b
                case (1, _), (2, _), (4, _): throw NoiseError.badPayload("field \(f) has the wrong wire type")
                default: continue
                }
            }
        } catch let e as NoiseError { throw e } catch { throw NoiseError.badPayload("\(error)") }
        guard let k = key, let s = sig else { throw NoiseError.badPayload("missing identity key or signature") }
        return NoisePayload(identityKey: k, identitySig: s, extensions: ext)
    }

    static func make(identity: PrivateKey, staticPub: [UInt8]) -> NoisePayload {
        NoisePayload(identityKey: identity.publicKey.protobuf, identitySig: identity.sign(sigPrefix + staticPub))
    }

    /// Verify the signature and return the remote peer ID.
    func verify(staticPub: [UInt8]) throws -> PeerID {
        let pk: PublicKey
        do { pk = try PublicKey(protobuf: identityKey) } catch { throw NoiseError.badPayload("identity key: \(error)") }
        guard pk.verify(signature: identitySig, message: NoisePayload.sigPrefix + staticPub) else { throw NoiseError.badSignature }
        return pk.peerID
    }
}

/// The XX handshake state machine (messages without the 2-byte length prefix).
final class NoiseHandshake {
    static let protocolName = Array("Noise_XX_25519_ChaChaPoly_SHA256".utf8)
    let initiator: Bool
    private let identity: PrivateKey
    private var h: [UInt8]
    private var ck: [UInt8]
    private var k: [UInt8]? = nil
    private var n: UInt64 = 0
    private let s: (priv: [UInt8], pub: [UInt8])
    private let e: (priv: [UInt8], pub: [UInt8])
    private var re: [UInt8] = []
    private var rs: [UInt8] = []
    /// Remote identity after the payload is verified.
    private(set) var remotePeer: PeerID? = nil
    private(set) var step = 0

    init(initiator: Bool, identity: PrivateKey, staticKey: (priv: [UInt8], pub: [UInt8])? = nil,
         ephemeral: (priv: [UInt8], pub: [UInt8])? = nil) {
        self.initiator = initiator
        self.identity = identity
        s = staticKey ?? NoiseCrypto.x25519Keypair()
        e = ephemeral ?? NoiseCrypto.x25519Keypair()
        h = NoiseHandshake.protocolName  // exactly 32 bytes: used as-is
        ck = h
        mixHash([])  // empty prologue
    }

    private func mixHash(_ data: [UInt8]) { h = SHA256.hash(h + data) }

    private func mixKey(_ ikm: [UInt8]) {
        let (a, b) = NoiseCrypto.hkdf2(ck, ikm)
        ck = a
        k = b
        n = 0
    }

    private func encryptAndHash(_ plain: [UInt8]) -> [UInt8] {
        guard let key = k else { mixHash(plain); return plain }
        let c = NoiseCrypto.seal(key, n, h, plain)
        n += 1
        mixHash(c)
        return c
    }

    private func decryptAndHash(_ c: [UInt8]) throws -> [UInt8] {
        guard let key = k else { mixHash(c); return c }
        let p = try NoiseCrypto.open(key, n, h, c)
        n += 1
        mixHash(c)
        return p
    }

    private var payload: [UInt8] { NoisePayload.make(identity: identity, staticPub: s.pub).encode() }

    /// Initiator, message 1: `e`.
    func writeMessage1() -> [UInt8] {
        step = 1
        mixHash(e.pub)
        return e.pub + encryptAndHash([])
    }

    /// Responder reads message 1.
    func readMessage1(_ m: [UInt8]) throws {
        guard m.count >= 32 else { throw NoiseError.badMessage("message 1 shorter than 32 bytes") }
        re = Array(m[0..<32])
        mixHash(re)
        _ = try decryptAndHash(Array(m[32...]))
        step = 1
    }

    /// Responder, message 2: `e, ee, s, es` + payload.
    func writeMessage2() throws -> [UInt8] {
        mixHash(e.pub)
        mixKey(try NoiseCrypto.dh(e.priv, re))
        let encS = encryptAndHash(s.pub)
        mixKey(try NoiseCrypto.dh(s.priv, re))
        step = 2
        return e.pub + encS + encryptAndHash(payload)
    }

    /// Initiator reads message 2; returns the responder's peer ID.
    func readMessage2(_ m: [UInt8]) throws -> PeerID {
        guard m.count >= 32 + 48 + 16 else { throw NoiseError.badMessage("message 2 too short") }
        re = Array(m[0..<32])
        mixHash(re)
        mixKey(try NoiseCrypto.dh(e.priv, re))
        rs = try decryptAndHash(Array(m[32..<80]))
        mixKey(try NoiseCrypto.dh(e.priv, rs))
        let p = try NoisePayload.decode(try decryptAndHash(Array(m[80...])))
        let peer = try p.verify(staticPub: rs)
        remotePeer = peer
        step = 2
        return peer
    }

    /// Initiator, message 3: `s, se` + payload.
    func writeMessage3() throws -> [UInt8] {
        let encS = encryptAndHash(s.pub)
        mixKey(try NoiseCrypto.dh(s.priv, re))
        step = 3
        return encS + encryptAndHash(payload)
    }

    /// Responder reads message 3; returns the initiator's peer ID.
    func readMessage3(_ m: [UInt8]) throws -> PeerID {
        guard m.count >= 48 + 16 else { throw NoiseError.badMessage("message 3 too short") }
        rs = try decryptAndHash(Array(m[0..<48]))
        mixKey(try NoiseCrypto.dh(e.priv, rs))
        let p = try NoisePayload.decode(try decryptAndHash(Array(m[48...])))
        let peer = try p.verify(staticPub: rs)
        remotePeer = peer
        step = 3
        return peer
    }

    /// Transport ciphers (send, receive) after the handshake.
    func split() -> (send: TransportCipher, recv: TransportCipher) {
        let (k1, k2) = NoiseCrypto.hkdf2(ck, [])
        let c1 = TransportCipher(key: k1), c2 = TransportCipher(key: k2)
        return initiator ? (c1, c2) : (c2, c1)
    }

    /// The handshake hash (for tests).
    var handshakeHash: [UInt8] { h }
}
