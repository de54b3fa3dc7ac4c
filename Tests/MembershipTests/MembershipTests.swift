import XCTest
import Identity
import Membership
import Support

final class MembershipTests: XCTestCase {
    let now = Timestamp(rfc3339: "2026-02-21T11:11:01.508Z")!
    let system = PrivateKey.generate()
    let admin = PrivateKey.generate()
    let node = PrivateKey.generate()

    func proof(cluster: String = "c1", peer: String? = nil, validTo: Timestamp? = nil, by key: PrivateKey? = nil) -> AdminProof {
        AdminProof.issue(systemKey: key ?? system, clusterID: cluster, peerID: peer ?? admin.peerID.base58,
                         validFrom: now.adding(seconds: -60), validTo: validTo ?? now.adding(seconds: 3600))
    }

    func snapshot(at: Timestamp? = nil, cluster: String = "c1", proof p: AdminProof? = nil, signer: PrivateKey? = nil) -> MembershipSnapshot {
        MembershipSnapshot.issue(adminKey: signer ?? admin, clusterID: cluster, members: [node.peerID.base58, " \(node.peerID.base58) "],
                                 proof: p ?? proof(), at: at ?? now)
    }

    func reason(_ body: () throws -> Void) -> String {
        do { try body(); return "accepted" } catch { return "\(error)" }
    }

    func testGoTimeFormat() {
        XCTAssertEqual(Timestamp(rfc3339: "2026-02-21T11:11:01.508000000Z")!.rfc3339Nano, "2026-02-21T11:11:01.508Z")
        XCTAssertEqual(Timestamp(rfc3339: "2026-02-21T11:11:01.000Z")!.rfc3339Nano, "2026-02-21T11:11:01Z")
        XCTAssertEqual(Timestamp(rfc3339: "2026-02-21T12:11:01+01:00")!.rfc3339Nano, "2026-02-21T11:11:01Z")
        XCTAssertNil(Timestamp(rfc3339: "2026-02-30T11:11:01Z"))
        XCTAssertNil(Timestamp(rfc3339: "yesterday"))
    }

    func testSignedBytesExact() throws {
        let s = MembershipSnapshot(clusterID: "c1", issuedAt: "2026-02-21T11:11:01.50800Z", issuerPeerID: "P",
                                   members: ["b", "a", "b", " c"], adminProof: nil)
        XCTAssertEqual(String(decoding: try s.signedBytes(), as: UTF8.self), "c1|2026-02-21T11:11:01.508Z|P|a,b,c")
        let p = AdminProof(clusterID: "c1", peerID: "P", role: "admin", validFrom: "2026-01-01T00:00:00.000Z", validTo: "2027-01-01T00:00:00Z")
        XCTAssertEqual(String(decoding: try p.signedBytes(), as: UTF8.self), "c1|P|admin|2026-01-01T00:00:00Z|2027-01-01T00:00:00Z")
    }

    func testAcceptsValidAndLastWriterWins() throws {
        let s1 = snapshot()
        XCTAssertEqual(s1.members.count, 1)
        try s1.validate(clusterID: "c1", systemKey: system.publicKey, current: nil, now: now)
        let s2 = snapshot(at: now.adding(seconds: 1))
        try s2.validate(clusterID: "c1", systemKey: system.publicKey, current: s1, now: now)
        // Round trip through JSON keeps it valid.
        let back = try MembershipSnapshot.decode(s2.jsonData())
        try back.validate(clusterID: "c1", systemKey: system.publicKey, current: s1, now: now)
    }

    func testRejections() {
        let s1 = snapshot()
        var forged = snapshot(at: now.adding(seconds: 5)); forged.members.append(PrivateKey.generate().peerID.base58)
        XCTAssertTrue(reason { try forged.validate(clusterID: "c1", systemKey: self.system.publicKey, current: nil, now: self.now) }.contains("signature does not verify"))
        XCTAssertTrue(reason { try s1.validate(clusterID: "c1", systemKey: self.system.publicKey, current: s1, now: self.now) }.contains("stale"))
        XCTAssertTrue(reason { try s1.validate(clusterID: "other", systemKey: self.system.publicKey, current: nil, now: self.now) }.contains("cluster"))
        let expired = snapshot(proof: proof(validTo: now.adding(seconds: -1)))
        XCTAssertTrue(reason { try expired.validate(clusterID: "c1", systemKey: self.system.publicKey, current: nil, now: self.now) }.contains("expired"))
        let otherSystem = snapshot(proof: proof(by: PrivateKey.generate()))
        XCTAssertTrue(reason { try otherSystem.validate(clusterID: "c1", systemKey: self.system.publicKey, current: nil, now: self.now) }.contains("system key"))
        let notIssuer = snapshot(proof: proof(peer: node.peerID.base58))
        XCTAssertTrue(reason { try notIssuer.validate(clusterID: "c1", systemKey: self.system.publicKey, current: nil, now: self.now) }.contains("issued by"))
        var noSig = s1; noSig.sig = ""
        XCTAssertTrue(reason { try noSig.validate(clusterID: "c1", systemKey: nil, current: nil, now: self.now) }.contains("no sig"))
        var badMember = s1; badMember.members = ["zzz"]
        XCTAssertTrue(reason { try badMember.validate(clusterID: "c1", systemKey: nil, current: nil, now: self.now) }.contains("not a peer ID"))
        XCTAssertThrowsError(try MembershipSnapshot.decode(Data("{\"members\": 5}".utf8)))
        XCTAssertThrowsError(try MembershipSnapshot.decode(Data("garbage".utf8)))
    }
}
