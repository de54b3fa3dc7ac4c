import Foundation
import Identity
import Support
import Wire

/// A signed liveness message: `cluster_id|peer_id|ts` signed by the sender's node key.
public struct Heartbeat: Codable, Equatable, Sendable {
    public var clusterID: String
    public var peerID: String
    public var ts: String
    public var sig: String

    enum CodingKeys: String, CodingKey { case clusterID = "cluster_id", peerID = "peer_id", ts, sig }

    public init(clusterID: String, peerID: String, ts: String, sig: String) {
        self.clusterID = clusterID
        self.peerID = peerID
        self.ts = ts
        self.sig = sig
    }

    public static func make(key: PrivateKey, clusterID: String, at: Timestamp) -> Heartbeat {
        var h = Heartbeat(clusterID: clusterID, peerID: key.peerID.base58, ts: at.rfc3339Nano, sig: "")
        h.sig = Base64.encode(key.sign(Array("\(clusterID)|\(h.peerID)|\(h.ts)".utf8)))
        return h
    }

    /// Decode the wire form (a JSON object with the four string fields; other fields are
    /// ignored, as a Codable decoder would) without Foundation's JSONDecoder.
    public static func decode(_ bytes: [UInt8]) throws -> Heartbeat {
        let v: JSONValue
        do { v = try JSONValue.parse(bytes, limits: JSONLimits(maxBytes: 4096, maxDepth: 4)) } catch {
            throw MembershipError.invalid("heartbeat is not valid JSON: \(error)")
        }
        func field(_ k: String) throws -> String {
            guard let f = v[k] else { throw MembershipError.invalid("heartbeat lacks \"\(k)\"") }
            guard let s = f.stringValue else { throw MembershipError.invalid("heartbeat \"\(k)\" must be a string") }
            return s
        }
        guard case .object = v else { throw MembershipError.invalid("heartbeat must be a JSON object") }
        return Heartbeat(clusterID: try field("cluster_id"), peerID: try field("peer_id"), ts: try field("ts"), sig: try field("sig"))
    }

    /// Accept only from `expectedPeer` (the Noise-authenticated sender), a member, signed, within ±window of now.
    /// `senderKey`, when given, is the authenticated sender's public key (saves decoding it
    /// from `peer_id`, which must equal `expectedPeer` anyway).
    public func verify(clusterID expected: String, expectedPeer: String, isMember: Bool, now: Timestamp, window: Double,
                       senderKey: PublicKey? = nil) throws -> Timestamp {
        guard clusterID == expected else { throw MembershipError.rejected("heartbeat for cluster \"\(clusterID)\"") }
        guard peerID == expectedPeer else { throw MembershipError.rejected("heartbeat peer_id \(peerID) is not the sender \(expectedPeer)") }
        guard isMember else { throw MembershipError.rejected("heartbeat from non-member \(peerID)") }
        guard let t = Timestamp(rfc3339: ts) else { throw MembershipError.invalid("heartbeat ts is not RFC 3339") }
        guard abs(t.interval(since: now)) <= window else { throw MembershipError.rejected("heartbeat ts \(ts) outside ±\(Int(window))s") }
        guard let key = senderKey ?? (try? PeerID(string: peerID))?.publicKey,
              let s = Base64.decode(sig), key.verify(signature: s, message: Array("\(clusterID)|\(peerID)|\(t.rfc3339Nano)".utf8)) else {
            throw MembershipError.rejected("heartbeat signature does not verify")
        }
        return t
    }
}

/// Node runtime state from SPEC §4.
public enum RuntimeState: String, Sendable, Codable {
    case unconfigured, degraded, healthy

    /// `online` counts this node plus connected members.
    public static func compute(isMember: Bool, members: Int, online: Int) -> RuntimeState {
        guard isMember, members > 0 else { return .unconfigured }
        return 2 * online > members ? .healthy : .degraded
    }
}
