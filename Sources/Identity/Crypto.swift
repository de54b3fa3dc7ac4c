import Foundation
import CSodium
import Wire

/// libsodium must be initialised once before use; every entry point here calls this.
public enum Sodium {
    private static let ready: Bool = { sodium_init() >= 0 }()

    /// Initialise libsodium (idempotent, thread-safe).
    @discardableResult
    public static func initialize() -> Bool { ready }

    /// Cryptographically secure random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        initialize()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }
}

/// SHA-256 through libsodium.
public enum SHA256 {
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        Sodium.initialize()
        var out = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { b in
            _ = crypto_hash_sha256(&out, b.baseAddress, UInt64(b.count))
        }
        return out
    }

    public static func hex(_ bytes: [UInt8]) -> String { Hex.encode(hash(bytes)) }

    /// SHA-256 of bytes that arrive in pieces (e.g. a file written a chunk at a time).
    public struct Hasher {
        private var state = crypto_hash_sha256_state()

        public init() {
            Sodium.initialize()
            _ = crypto_hash_sha256_init(&state)
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            _ = crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
        }

        public mutating func finalize() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            _ = crypto_hash_sha256_final(&state, &out)
            return out
        }

        /// `finalize()` as lowercase hex.
        public mutating func finalizeHex() -> String { Hex.encode(finalize()) }
    }
}

/// BLAKE2b with a 32-byte digest (libsodium's `crypto_generichash`), for checksums of large
/// local files: about three times faster here than libsodium's SHA-256 (16 MiB: 23 ms against
/// 67 ms), whose portable code dominated building a compaction snapshot.
public enum Blake2b256 {
    public static func hex(_ bytes: [UInt8]) -> String {
        let h = Hasher()
        bytes.withUnsafeBytes { h.update($0) }
        return h.finalizeHex()
    }

    /// The first 8 bytes (little-endian) of a 16-byte BLAKE2b digest of `bytes`: a short lookup key
    /// for index entries. Not a commitment: collisions must be expected and told apart by whoever
    /// looks the key up.
    public static func key64(_ bytes: [UInt8]) -> UInt64 {
        Sodium.initialize()
        var out = (UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &out) { o in
            _ = crypto_generichash(o.baseAddress!.assumingMemoryBound(to: UInt8.self), 16, bytes, UInt64(bytes.count), nil, 0)
        }
        return UInt64(littleEndian: out.0)
    }

    /// Incremental hashing. libsodium's state must be 64-byte aligned, so it lives in its own
    /// allocation (hence a class). One thread uses it at a time.
    public final class Hasher {
        private let state: UnsafeMutableRawPointer

        public init() {
            Sodium.initialize()
            state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
            _ = crypto_generichash_init(OpaquePointer(state), nil, 0, 32)
        }

        deinit { state.deallocate() }

        public func update(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            _ = crypto_generichash_update(OpaquePointer(state), base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
        }

        /// The digest; the hasher is spent afterwards.
        public func finalize() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            _ = crypto_generichash_final(OpaquePointer(state), &out, 32)
            return out
        }

        public func finalizeHex() -> String { Hex.encode(finalize()) }
    }
}

/// Why a key could not be decoded.
public enum KeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case badBase64
    case badProtobuf(String)
    case unsupportedKeyType(UInt64)
    case badLength(expected: Int, got: Int)
    case inconsistentKeyPair
    case badPeerID(String)

    public var description: String {
        switch self {
        case .badBase64: return "not valid standard base64"
        case .badProtobuf(let why): return "not a libp2p protobuf key (\(why))"
        case .unsupportedKeyType(let t): return "unsupported key type \(t) (only Ed25519 = 1 is supported)"
        case .badLength(let e, let g): return "Ed25519 key data must be \(e) bytes, got \(g)"
        case .inconsistentKeyPair: return "private key data does not match its embedded public key"
        case .badPeerID(let why): return "invalid peer ID (\(why))"
        }
    }
}

/// Decode a libp2p protobuf key message {1: type, 2: data}.
func decodeKeyMessage(_ bytes: [UInt8]) throws -> [UInt8] {
    var reader: ProtobufReader
    do { reader = try ProtobufReader(bytes, maxSize: 4096) } catch { throw KeyError.badProtobuf("too large") }
    var type: UInt64? = nil
    var data: [UInt8]? = nil
    do {
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .varint(let v)): type = v
            case (2, .bytes(let b)): data = b
            case (1, _), (2, _): throw KeyError.badProtobuf("field \(field) has the wrong wire type")
            default: continue
            }
        }
    } catch let e as KeyError {
        throw e
    } catch {
        throw KeyError.badProtobuf("\(error)")
    }
    guard let t = type else { throw KeyError.badProtobuf("missing key type") }
    guard t == 1 else { throw KeyError.unsupportedKeyType(t) }
    guard let d = data else { throw KeyError.badProtobuf("missing key data") }
    return d
}

/// An Ed25519 public key (32 bytes).
public struct PublicKey: Hashable, Sendable {
    public let raw: [UInt8]

    public init(raw: [UInt8]) throws {
        guard raw.count == 32 else { throw KeyError.badLength(expected: 32, got: raw.count) }
        self.raw = raw
    }

    /// libp2p protobuf PublicKey {Type = Ed25519, Data = raw}.
    public var protobuf: [UInt8] { PublicKey.protobufHeader + raw }

    /// What precedes the 32 key bytes in `protobuf`: field 1 (varint) = 1 (Ed25519), then field 2
    /// (length-delimited), 32 bytes long.
    static let protobufHeader: [UInt8] = [0x08, 0x01, 0x12, 0x20]

    /// The `system_pubkey` / `SYSTEM_PUB_B64` form.
    public var base64: String { Base64.encode(protobuf) }

    public init(protobuf bytes: [UInt8]) throws {
        try self.init(raw: try decodeKeyMessage(bytes))
    }

    public init(base64 text: String) throws {
        self = try PublicKey.decode(base64: text).key
    }

    /// The key in `text` (as `init(base64:)` reads it), and whether `text` already is its
    /// `base64` — so a caller that needs the canonical text can keep `text` instead of encoding
    /// the key again. It is when `text` is 48 characters (nothing was trimmed; 36 bytes have one
    /// base64 spelling) for exactly the key's `protobuf`.
    public static func decode(base64 text: String) throws -> (key: PublicKey, textIsCanonical: Bool) {
        guard let b = Base64.decode(text), !b.isEmpty else { throw KeyError.badBase64 }
        let key = try PublicKey(protobuf: b)
        // 36 bytes that start with the header are exactly `protobuf` (the rest is the key).
        return (key, text.utf8.count == 48 && b.count == 36 && b.starts(with: protobufHeader))
    }

    /// Verify a detached 64-byte signature.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == 64 else { return false }
        Sodium.initialize()
        return message.withUnsafeBufferPointer { m in
            crypto_sign_verify_detached(signature, m.baseAddress, UInt64(m.count), raw) == 0
        }
    }

    public var peerID: PeerID { PeerID(publicKey: self) }
}

/// An Ed25519 private key (seed + public key, as libp2p stores it).
public struct PrivateKey: Sendable {
    /// 32-byte seed.
    public let seed: [UInt8]
    /// libsodium's 64-byte secret key (seed ‖ public key).
    let secret: [UInt8]
    public let publicKey: PublicKey

    /// Derive from a 32-byte seed.
    public init(seed: [UInt8]) throws {
        guard seed.count == 32 else { throw KeyError.badLength(expected: 32, got: seed.count) }
        Sodium.initialize()
        var pk = [UInt8](repeating: 0, count: 32)
        var sk = [UInt8](repeating: 0, count: 64)
        _ = crypto_sign_seed_keypair(&pk, &sk, seed)
        self.seed = seed
        self.secret = sk
        self.publicKey = try PublicKey(raw: pk)
    }

    /// A fresh random key.
    public static func generate() -> PrivateKey {
        // A 32-byte seed always yields a key.
        return try! PrivateKey(seed: Sodium.randomBytes(32))
    }

    /// libp2p protobuf PrivateKey {Type = Ed25519, Data = seed ‖ public key}.
    public var protobuf: [UInt8] {
        var w = ProtobufWriter()
        w.varint(field: 1, 1)
        w.bytes(field: 2, secret)
        return w.bytes
    }

    /// The `node_private_key` / `NODE_PRIV_B64` form.
    public var base64: String { Base64.encode(protobuf) }

    /// Accepts 64-byte (seed ‖ pub, checked for consistency) and legacy 32-byte seed data.
    public init(protobuf bytes: [UInt8]) throws {
        let data = try decodeKeyMessage(bytes)
        switch data.count {
        case 64:
            try self.init(seed: Array(data[0..<32]))
            guard publicKey.raw == Array(data[32..<64]) else { throw KeyError.inconsistentKeyPair }
        case 32:
            try self.init(seed: data)
        default:
            throw KeyError.badLength(expected: 64, got: data.count)
        }
    }

    public init(base64 text: String) throws {
        guard let b = Base64.decode(text), !b.isEmpty else { throw KeyError.badBase64 }
        try self.init(protobuf: b)
    }

    /// Detached 64-byte Ed25519 signature.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        Sodium.initialize()
        var sig = [UInt8](repeating: 0, count: 64)
        message.withUnsafeBufferPointer { m in
            _ = crypto_sign_detached(&sig, nil, m.baseAddress, UInt64(m.count), secret)
        }
        return sig
    }

    public var peerID: PeerID { publicKey.peerID }
}

/// A libp2p peer ID: the identity multihash of the protobuf public key.
public struct PeerID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Multihash bytes (0x00, length, protobuf public key) — or a sha256 multihash for big keys.
    public let bytes: [UInt8]
    /// Base58btc form, `12D3KooW…` for Ed25519 (computed once).
    public let base58: String

    public init(publicKey: PublicKey) {
        let pb = publicKey.protobuf
        bytes = [0x00, UInt8(pb.count)] + pb
        base58 = Base58.encode(bytes)
    }

    public static func == (a: PeerID, b: PeerID) -> Bool { a.bytes == b.bytes }
    public func hash(into h: inout Hasher) { h.combine(bytes) }

    /// Parse multihash bytes.
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= 2, bytes.count <= 128 else { throw KeyError.badPeerID("wrong length") }
        let (code, n1) = try Self.varint(bytes, 0)
        let (len, n2) = try Self.varint(bytes, n1)
        guard Int(len) == bytes.count - n1 - n2 else { throw KeyError.badPeerID("multihash length mismatch") }
        switch code {
        case 0x00:
            guard len <= 42 else { throw KeyError.badPeerID("identity multihash too long") }
            _ = try PublicKey(protobuf: Array(bytes[(n1 + n2)...]))
        case 0x12:
            guard len == 32 else { throw KeyError.badPeerID("sha256 multihash must be 32 bytes") }
        default:
            throw KeyError.badPeerID("unsupported multihash code \(code)")
        }
        self.bytes = bytes
        self.base58 = Base58.encode(bytes)
    }

    private static func varint(_ b: [UInt8], _ at: Int) throws -> (UInt64, Int) {
        do { return try Varint.decode(b, at: at) } catch { throw KeyError.badPeerID("bad varint") }
    }

    /// Accepts base58btc (`12D3KooW…`, `Qm…`) and CIDv1 multibase (`k…` base36, `b…` base32 not supported).
    public init(string text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty else { throw KeyError.badPeerID("empty") }
        if t.hasPrefix("1") || t.hasPrefix("Qm") {
            guard let b = Base58.decode(t) else { throw KeyError.badPeerID("not base58btc") }
            try self.init(bytes: b)
        } else if t.hasPrefix("k") {
            guard let b = Base36.decode(String(t.dropFirst())) else { throw KeyError.badPeerID("not base36") }
            // CIDv1: version 1, codec libp2p-key 0x72, then the multihash.
            guard b.count > 3, b[0] == 0x01, b[1] == 0x72 else { throw KeyError.badPeerID("not a libp2p-key CIDv1") }
            try self.init(bytes: Array(b[2...]))
        } else {
            throw KeyError.badPeerID("expected base58btc (12D3KooW…) or base36 CID (k…)")
        }
    }

    public var description: String { base58 }

    /// CIDv1 (libp2p-key) in multibase base36, `k51…`.
    public var cidBase36: String { "k" + Base36.encode([0x01, 0x72] + bytes) }

    /// The embedded public key, when the peer ID is an identity multihash.
    public var publicKey: PublicKey? {
        guard bytes.count > 2, bytes[0] == 0x00 else { return nil }
        return try? PublicKey(protobuf: Array(bytes[2...]))
    }

    /// Byte-wise order of the multihashes (cheap; any stable order serves sorting).
    public static func < (a: PeerID, b: PeerID) -> Bool {
        // Byte order, as lexicographicallyPrecedes, through memcmp.
        a.bytes.withUnsafeBufferPointer { x in
            b.bytes.withUnsafeBufferPointer { y in
                let n = min(x.count, y.count)
                let c = n == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, n)
                return c != 0 ? c < 0 : x.count < y.count
            }
        }
    }
}
