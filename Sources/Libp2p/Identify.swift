import Identity
import Wire

/// What a peer told us about itself through `/ipfs/id/1.0.0`.
public struct IdentifyInfo: Equatable, Sendable {
    public var protocolVersion: String = ""
    public var agentVersion: String = ""
    public var publicKey: [UInt8] = []
    public var listenAddrs: [Multiaddr] = []
    public var observedAddr: Multiaddr? = nil
    public var protocols: [String] = []

    public init(protocolVersion: String = "", agentVersion: String = "", publicKey: [UInt8] = [],
                listenAddrs: [Multiaddr] = [], observedAddr: Multiaddr? = nil, protocols: [String] = []) {
        self.protocolVersion = protocolVersion
        self.agentVersion = agentVersion
        self.publicKey = publicKey
        self.listenAddrs = listenAddrs
        self.observedAddr = observedAddr
        self.protocols = protocols
    }

    public static let maxSize = 64 * 1024

    /// Protobuf encoding (without a length prefix).
    public func encode() -> [UInt8] {
        var w = ProtobufWriter()
        if !publicKey.isEmpty { w.bytes(field: 1, publicKey) }
        for a in listenAddrs { w.bytes(field: 2, a.bytes) }
        for p in protocols { w.string(field: 3, p) }
        if let o = observedAddr { w.bytes(field: 4, o.bytes) }
        w.string(field: 5, protocolVersion)
        w.string(field: 6, agentVersion)
        return w.bytes
    }

    /// Decode a protobuf message; addresses this implementation cannot parse are skipped.
    public static func decode(_ bytes: [UInt8]) throws -> IdentifyInfo {
        var r = try ProtobufReader(bytes, maxSize: maxSize)
        var info = IdentifyInfo()
        func text(_ b: [UInt8]) throws -> String {
            guard let s = String(bytes: b, encoding: .utf8) else { throw WireError.invalid("identify string (not UTF-8)") }
            return s
        }
        while let (f, v) = try r.next() {
            switch (f, v) {
            case (1, .bytes(let b)): info.publicKey = b
            case (2, .bytes(let b)):
                if info.listenAddrs.count < 64, let a = try? Multiaddr(bytes: b) { info.listenAddrs.append(a) }
            case (3, .bytes(let b)):
                if info.protocols.count < 256 { info.protocols.append(try text(b)) }
            case (4, .bytes(let b)): info.observedAddr = try? Multiaddr(bytes: b)
            case (5, .bytes(let b)): info.protocolVersion = try text(b)
            case (6, .bytes(let b)): info.agentVersion = try text(b)
            case (1...6, _): throw WireError.invalid("identify field \(f) wire type")
            default: continue
            }
        }
        return info
    }

    /// Decode a whole stream body: either one uvarint-prefixed message or a bare message.
    public static func decodeStreamBody(_ body: [UInt8]) throws -> IdentifyInfo {
        if let (len, n) = try? Varint.decode(body, at: 0), len > 0, len == UInt64(body.count - n) {
            if let info = try? decode(Array(body[n...])) { return info }
        }
        return try decode(body)
    }

    /// The peer ID of the advertised public key, if valid.
    public var peerID: PeerID? { (try? PublicKey(protobuf: publicKey))?.peerID }
}
