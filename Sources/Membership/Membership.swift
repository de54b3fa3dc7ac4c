import Foundation
import Identity
import Support
import Wire

/// An admin proof: the system key's statement that `peer_id` holds `role` in `cluster_id` for a window.
public struct AdminProof: Codable, Equatable, Sendable {
    public var clusterID: String
    public var peerID: String
    public var role: String
    public var validFrom: String
    public var validTo: String
    public var sig: String

    enum CodingKeys: String, CodingKey {
        case clusterID = "cluster_id", peerID = "peer_id", role, validFrom = "valid_from", validTo = "valid_to", sig
    }

    public init(clusterID: String, peerID: String, role: String, validFrom: String, validTo: String, sig: String = "") {
        self.clusterID = clusterID
        self.peerID = peerID
        self.role = role
        self.validFrom = validFrom
        self.validTo = validTo
        self.sig = sig
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clusterID = try c.decodeIfPresent(String.self, forKey: .clusterID) ?? ""
        peerID = try c.decodeIfPresent(String.self, forKey: .peerID) ?? ""
        role = try c.decodeIfPresent(String.self, forKey: .role) ?? ""
        validFrom = try c.decodeIfPresent(String.self, forKey: .validFrom) ?? ""
        validTo = try c.decodeIfPresent(String.self, forKey: .validTo) ?? ""
        sig = try c.decodeIfPresent(String.self, forKey: .sig) ?? ""
    }

    /// True when every field is empty (an absent proof in config).
    public var isEmpty: Bool { clusterID.isEmpty && peerID.isEmpty && role.isEmpty && sig.isEmpty }

    /// `cluster_id|peer_id|role|valid_from|valid_to`, times normalised to Go RFC3339Nano.
    public func signedBytes() throws -> [UInt8] {
        guard let from = Timestamp(rfc3339: validFrom) else { throw MembershipError.invalid("admin_proof.valid_from is not RFC 3339: \(validFrom)") }
        guard let to = Timestamp(rfc3339: validTo) else { throw MembershipError.invalid("admin_proof.valid_to is not RFC 3339: \(validTo)") }
        return Array("\(clusterID)|\(peerID)|\(role)|\(from.rfc3339Nano)|\(to.rfc3339Nano)".utf8)
    }

    /// Sign with the system key.
    public static func issue(systemKey: PrivateKey, clusterID: String, peerID: String, role: String = "admin",
                             validFrom: Timestamp, validTo: Timestamp) -> AdminProof {
        var p = AdminProof(clusterID: clusterID, peerID: peerID, role: role, validFrom: validFrom.rfc3339Nano, validTo: validTo.rfc3339Nano)
        p.sig = Base64.encode(systemKey.sign(try! p.signedBytes()))
        return p
    }

    /// Check signature under the system key, role, cluster, issuer and validity window at `now`.
    public func verify(systemKey: PublicKey, clusterID expectedCluster: String, issuer: String, now: Timestamp) throws {
        guard role == "admin" else { throw MembershipError.rejected("admin proof role is \"\(role)\", not \"admin\"") }
        guard clusterID == expectedCluster else { throw MembershipError.rejected("admin proof is for cluster \"\(clusterID)\", not \"\(expectedCluster)\"") }
        guard peerID == issuer else { throw MembershipError.rejected("admin proof names peer \(peerID), but the snapshot was issued by \(issuer)") }
        let bytes = try signedBytes()
        guard let s = Base64.decode(sig), s.count == 64, systemKey.verify(signature: s, message: bytes) else {
            throw MembershipError.rejected("admin proof signature does not verify under the system key")
        }
        let from = Timestamp(rfc3339: validFrom)!, to = Timestamp(rfc3339: validTo)!
        guard now >= from else { throw MembershipError.rejected("admin proof is not valid before \(validFrom)") }
        guard now <= to else { throw MembershipError.rejected("admin proof expired at \(validTo)") }
    }
}

/// Why a snapshot or proof was not accepted.
public enum MembershipError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)
    case rejected(String)

    public var description: String {
        switch self {
        case .invalid(let s): return s
        case .rejected(let s): return s
        }
    }
}

/// The admin-signed list of cluster members.
public struct MembershipSnapshot: Codable, Equatable, Sendable {
    public var clusterID: String
    public var issuedAt: String
    public var issuerPeerID: String
    public var members: [String]
    public var adminProof: AdminProof?
    public var sig: String

    enum CodingKeys: String, CodingKey {
        case clusterID = "cluster_id", issuedAt = "issued_at", issuerPeerID = "issuer_peer_id", members
        case adminProof = "admin_proof", sig
    }

    public init(clusterID: String, issuedAt: String, issuerPeerID: String, members: [String], adminProof: AdminProof?, sig: String = "") {
        self.clusterID = clusterID
        self.issuedAt = issuedAt
        self.issuerPeerID = issuerPeerID
        self.members = members
        self.adminProof = adminProof
        self.sig = sig
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clusterID = try c.decodeIfPresent(String.self, forKey: .clusterID) ?? ""
        issuedAt = try c.decodeIfPresent(String.self, forKey: .issuedAt) ?? ""
        issuerPeerID = try c.decodeIfPresent(String.self, forKey: .issuerPeerID) ?? ""
        members = try c.decodeIfPresent([String].self, forKey: .members) ?? []
        adminProof = try c.decodeIfPresent(AdminProof.self, forKey: .adminProof)
        sig = try c.decodeIfPresent(String.self, forKey: .sig) ?? ""
    }

    /// Members trimmed, de-duplicated and byte-wise sorted.
    public static func normalize(_ members: [String]) -> [String] {
        let trimmed = members.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        return Array(Set(trimmed)).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// `cluster_id|issued_at|issuer_peer_id|members_csv`.
    public func signedBytes() throws -> [UInt8] {
        guard let t = Timestamp(rfc3339: issuedAt) else { throw MembershipError.invalid("issued_at is not RFC 3339: \(issuedAt)") }
        let csv = MembershipSnapshot.normalize(members).joined(separator: ",")
        return Array("\(clusterID)|\(t.rfc3339Nano)|\(issuerPeerID)|\(csv)".utf8)
    }

    /// Build and sign a snapshot with the admin key.
    public static func issue(adminKey: PrivateKey, clusterID: String, members: [String], proof: AdminProof?, at: Timestamp) -> MembershipSnapshot {
        var s = MembershipSnapshot(clusterID: clusterID, issuedAt: at.rfc3339Nano, issuerPeerID: adminKey.peerID.base58,
                                   members: normalize(members), adminProof: proof)
        s.sig = Base64.encode(adminKey.sign(try! s.signedBytes()))
        return s
    }

    public var issuedAtTimestamp: Timestamp? { Timestamp(rfc3339: issuedAt) }

    /// Apply the acceptance rules of SPEC §3 against the current snapshot (if any).
    public func validate(clusterID expected: String, systemKey: PublicKey?, current: MembershipSnapshot?, now: Timestamp) throws {
        guard clusterID == expected else { throw MembershipError.rejected("snapshot is for cluster \"\(clusterID)\", this node is in \"\(expected)\"") }
        guard !issuedAt.isEmpty else { throw MembershipError.invalid("snapshot has no issued_at") }
        guard !members.isEmpty else { throw MembershipError.invalid("snapshot has no members") }
        guard !issuerPeerID.isEmpty else { throw MembershipError.invalid("snapshot has no issuer_peer_id") }
        guard !sig.isEmpty else { throw MembershipError.invalid("snapshot has no sig") }
        guard let issued = issuedAtTimestamp else { throw MembershipError.invalid("issued_at is not RFC 3339: \(issuedAt)") }
        for m in members {
            do { _ = try PeerID(string: m) } catch { throw MembershipError.invalid("member \"\(m)\" is not a peer ID") }
        }
        let issuer: PeerID
        do { issuer = try PeerID(string: issuerPeerID) } catch { throw MembershipError.invalid("issuer_peer_id is not a peer ID: \(error)") }
        guard let issuerKey = issuer.publicKey else { throw MembershipError.invalid("issuer_peer_id does not embed an Ed25519 key") }
        guard let s = Base64.decode(sig), s.count == 64, issuerKey.verify(signature: s, message: try signedBytes()) else {
            throw MembershipError.rejected("snapshot signature does not verify under the issuer's key")
        }
        if let systemKey {
            guard let proof = adminProof, !proof.isEmpty else { throw MembershipError.rejected("snapshot has no admin_proof") }
            try proof.verify(systemKey: systemKey, clusterID: expected, issuer: issuerPeerID, now: now)
        }
        if let current, let cur = current.issuedAtTimestamp {
            guard issued > cur else {
                throw MembershipError.rejected("stale snapshot: issued_at \(issued.rfc3339Nano) is not newer than the current \(cur.rfc3339Nano)")
            }
        }
    }

    /// JSON with the Go field names.
    public func jsonData(pretty: Bool = false) -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return try! enc.encode(self)
    }

    public static func decode(_ data: Data) throws -> MembershipSnapshot {
        guard data.count <= 1 << 20 else { throw MembershipError.invalid("snapshot larger than 1 MiB") }
        do { return try JSONDecoder().decode(MembershipSnapshot.self, from: data) } catch {
            throw MembershipError.invalid("snapshot is not valid JSON of the expected shape")
        }
    }
}
