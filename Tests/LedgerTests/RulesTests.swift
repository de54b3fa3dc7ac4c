import XCTest
import Identity
import Storage
import Support
import Wire
@testable import Ledger

final class RulesTests: XCTestCase {
    let owner = Keys.owner, alice = Keys.alice, bob = Keys.bob, mallory = Keys.mallory
    let create = "{\"session_id\":\"s1\",\"title\":\"Release\",\"steps\":[{\"step_id\":\"a\",\"title\":\"A\"},{\"step_id\":\"b\",\"title\":\"B\"}]}"

    /// Owner creates s1 (steps a, b); alice and bob join.
    func setUp3() throws -> Harness {
        let h = try Harness()
        try h.ok(owner, .sessionCreate, create)
        try h.ok(alice, .participantJoin, "{\"session_id\":\"s1\"}")
        try h.ok(bob, .participantJoin, "{\"session_id\":\"s1\"}")
        return h
    }

    func testSessionCreateAndJoin() throws {
        let h = try Harness()
        try h.ok(owner, .sessionCreate, create)
        let s = try XCTUnwrap(h.ledger.session(id: "s1"))
        XCTAssertEqual(s["owner"]?.stringValue, owner.publicKey.base64)
        XCTAssertEqual(s["status"]?.stringValue, "open")
        XCTAssertEqual(s["steps"]?.arrayValue?.compactMap { $0["step_id"]?.stringValue }, ["a", "b"])
        XCTAssertEqual(s["participant_count"], .int(1), "the owner is a participant")
        try h.reject(.alreadyExists, alice, .sessionCreate, create)
        try h.reject(.alreadyExists, alice, .sessionCreate, "{\"session_id\":\"s2\",\"title\":\"t\",\"steps\":[{\"step_id\":\"c\",\"title\":\"C\"},{\"step_id\":\"b\",\"title\":\"B\"}]}")
        XCTAssertNil(try h.ledger.session(id: "s2"), "a rejected create leaves nothing behind")
        XCTAssertNil(try h.ledger.step(id: "c"))
        try h.ok(alice, .participantJoin, "{\"session_id\":\"s1\"}")
        try h.reject(.alreadyExists, alice, .participantJoin, "{\"session_id\":\"s1\"}")
        try h.reject(.alreadyExists, owner, .participantJoin, "{\"session_id\":\"s1\"}")
        try h.reject(.notFound, alice, .participantJoin, "{\"session_id\":\"nope\"}")
        let p = try XCTUnwrap(h.ledger.participants(sessionID: "s1"))
        XCTAssertEqual(p["participants"]?.arrayValue?.compactMap { $0["public_key"]?.stringValue },
                       [owner.publicKey.base64, alice.publicKey.base64])
        XCTAssertNil(try h.ledger.participants(sessionID: "nope"))
    }

    /// A create whose session or a later step id is taken leaves none of its rows behind (the
    /// steps inserted before the taken one included), and its free ids stay free.
    func testRejectedSessionCreateLeavesNothing() throws {
        let h = try Harness()
        try h.ok(owner, .sessionCreate, create)     // s1 with steps a, b
        let r = try h.reject(.alreadyExists, alice, .sessionCreate,
                             "{\"session_id\":\"s2\",\"title\":\"t\",\"steps\":[{\"step_id\":\"c\",\"title\":\"C\"},{\"step_id\":\"d\",\"title\":\"D\"},{\"step_id\":\"a\",\"title\":\"A\"},{\"step_id\":\"b\",\"title\":\"B\"}]}")
        XCTAssertEqual(r.message, "step \"a\" already exists", "the first taken id in payload order")
        XCTAssertNil(try h.ledger.session(id: "s2"))
        XCTAssertNil(try h.ledger.step(id: "c"))
        XCTAssertNil(try h.ledger.step(id: "d"))
        XCTAssertEqual(try h.ledger.session(id: "s1")?["steps"]?.arrayValue?.count, 2, "the other session's steps are untouched")
        let taken = try h.reject(.alreadyExists, alice, .sessionCreate, "{\"session_id\":\"s1\",\"title\":\"t\",\"steps\":[{\"step_id\":\"e\",\"title\":\"E\"}]}")
        XCTAssertEqual(taken.message, "session \"s1\" already exists")
        XCTAssertNil(try h.ledger.step(id: "e"))
        // The ids the rejected creates named are free.
        try h.ok(alice, .sessionCreate, "{\"session_id\":\"s2\",\"title\":\"t\",\"steps\":[{\"step_id\":\"c\",\"title\":\"C\"},{\"step_id\":\"e\",\"title\":\"E\"}]}")
        XCTAssertEqual(try h.ledger.session(id: "s2")?["steps"]?.arrayValue?.compactMap { $0["step_id"]?.stringValue }, ["c", "e"])
        XCTAssertEqual(try h.ledger.session(id: "s2")?["owner"]?.stringValue, alice.publicKey.base64)
    }

    func testClaimAndRelease() throws {
        let h = try setUp3()
        try h.reject(.notParticipant, mallory, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.notFound, alice, .stepClaim, "{\"step_id\":\"zz\"}")
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        XCTAssertEqual(try h.stepStatus("a"), "claimed")
        XCTAssertEqual(try h.claimant("a"), .string(alice.publicKey.base64))
        try h.reject(.stepClaimed, bob, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.stepClaimed, alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.notClaimant, bob, .stepRelease, "{\"step_id\":\"a\"}")
        try h.reject(.notClaimant, bob, .stepRelease, "{\"step_id\":\"b\"}")
        try h.ok(alice, .stepRelease, "{\"step_id\":\"a\"}")
        XCTAssertEqual(try h.stepStatus("a"), "open")
        XCTAssertEqual(try h.claimant("a"), .null)
        // Only the claimant releases (SPEC §9): not the session's owner, not an unclaimed step.
        try h.ok(bob, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.notClaimant, owner, .stepRelease, "{\"step_id\":\"a\"}")
        XCTAssertEqual(try h.claimant("a"), .string(bob.publicKey.base64))
        try h.ok(bob, .stepRelease, "{\"step_id\":\"a\"}")
        XCTAssertEqual(try h.stepStatus("a"), "open")
        try h.reject(.notClaimant, owner, .stepRelease, "{\"step_id\":\"a\"}")
        try h.reject(.notFound, owner, .stepRelease, "{\"step_id\":\"zz\"}")
    }

    func testHandoff() throws {
        let h = try setUp3()
        let toBob = "{\"step_id\":\"a\",\"to\":\"\(bob.publicKey.base64)\"}"
        try h.reject(.notClaimant, alice, .stepHandoff, toBob)
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.notClaimant, bob, .stepHandoff, toBob)
        try h.reject(.notParticipant, alice, .stepHandoff, "{\"step_id\":\"a\",\"to\":\"\(mallory.publicKey.base64)\"}")
        try h.reject(.malformed, alice, .stepHandoff, "{\"step_id\":\"a\",\"to\":\"\(alice.publicKey.base64)\"}")
        try h.reject(.notFound, alice, .stepHandoff, "{\"step_id\":\"zz\",\"to\":\"\(bob.publicKey.base64)\"}")
        try h.ok(alice, .stepHandoff, toBob)
        XCTAssertEqual(try h.claimant("a"), .string(bob.publicKey.base64))
        XCTAssertEqual(try h.stepStatus("a"), "claimed")
        try h.reject(.notClaimant, alice, .stepRelease, "{\"step_id\":\"a\"}")
    }

    func testArtifacts() throws {
        let h = try setUp3()
        let add = "{\"step_id\":\"a\",\"artifact_id\":\"art1\",\"kind\":\"doc\",\"uri\":\"https://x/y\",\"sha256\":\"\(String(repeating: "0f", count: 32))\"}"
        try h.reject(.notClaimant, alice, .artifactAdd, add)
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.notClaimant, bob, .artifactAdd, add)
        try h.ok(alice, .artifactAdd, add)
        try h.reject(.alreadyExists, alice, .artifactAdd, add)
        try h.ok(alice, .artifactAdd, "{\"step_id\":\"a\",\"artifact_id\":\"art2\",\"kind\":\"log\",\"uri\":\"file:///l\"}")
        let arts = try XCTUnwrap(h.ledger.artifacts(stepID: "a"))["artifacts"]?.arrayValue ?? []
        XCTAssertEqual(arts.compactMap { $0["artifact_id"]?.stringValue }, ["art1", "art2"])
        XCTAssertEqual(arts.first?["added_by"]?.stringValue, alice.publicKey.base64)
        XCTAssertEqual(arts.last?["sha256"], .null)
        XCTAssertNil(try h.ledger.artifacts(stepID: "zz"))
        try h.reject(.notFound, alice, .artifactAdd, "{\"step_id\":\"zz\",\"artifact_id\":\"art3\",\"kind\":\"doc\",\"uri\":\"u\"}")
        try h.ok(alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"done\"}")
        try h.reject(.stepResolved, alice, .artifactAdd, "{\"step_id\":\"a\",\"artifact_id\":\"art3\",\"kind\":\"doc\",\"uri\":\"u\"}")
    }

    func decision(_ id: String, step: String = "a", quorum: Int = 2) -> String {
        "{\"step_id\":\"\(step)\",\"decision_id\":\"\(id)\",\"question\":\"Ship?\",\"options\":[\"yes\",\"no\",\"later\"],\"quorum\":\(quorum)}"
    }

    func testDecisionsAndVotes() throws {
        let h = try setUp3()
        // Neither claimant nor owner.
        try h.reject(.notOwner, alice, .decisionOpen, decision("d1"))
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.notOwner, bob, .decisionOpen, decision("d1"))
        try h.reject(.notFound, alice, .decisionOpen, decision("d1", step: "zz"))
        // The claimant may open one; a second open decision on the step is refused.
        try h.ok(alice, .decisionOpen, decision("d1"))
        try h.reject(.decisionOpen, owner, .decisionOpen, decision("d2"))
        try h.reject(.alreadyExists, owner, .decisionOpen, decision("d1", step: "b"))
        // The owner may open one on a step it does not claim.
        try h.ok(owner, .decisionOpen, decision("d3", step: "b", quorum: 1))
        // Votes.
        try h.reject(.notFound, alice, .voteCast, "{\"decision_id\":\"zz\",\"option\":\"yes\"}")
        try h.reject(.notParticipant, mallory, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"yes\"}")
        try h.reject(.badOption, alice, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"maybe\"}")
        try h.ok(alice, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"yes\"}")
        try h.reject(.alreadyVoted, alice, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"no\"}")
        try h.ok(bob, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"no\"}")
        var d = try XCTUnwrap(h.ledger.step(id: "a"))["decisions"]?.arrayValue?.first
        XCTAssertEqual(d?["status"], .string("open"), "one vote each for yes and no: quorum 2 not reached")
        XCTAssertEqual(d?["votes"], .obj([("yes", .int(1)), ("no", .int(1)), ("later", .int(0))]))
        // Resolving while the decision is open is refused.
        try h.reject(.decisionOpen, alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"yes\"}")
        try h.ok(owner, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"yes\"}")
        d = try XCTUnwrap(h.ledger.step(id: "a"))["decisions"]?.arrayValue?.first
        XCTAssertEqual(d?["status"], .string("decided"))
        XCTAssertEqual(d?["outcome"], .string("yes"))
        XCTAssertEqual(d?["quorum"], .int(2))
        try h.reject(.decisionClosed, owner, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"no\"}")
        // The outcome must match the decided option.
        try h.reject(.notClaimant, bob, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"yes\"}")
        try h.reject(.outcomeMismatch, alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"no\"}")
        // A new decision may follow a decided one; then it is the one that counts.
        try h.ok(alice, .decisionOpen, decision("d4", quorum: 1))
        try h.ok(bob, .voteCast, "{\"decision_id\":\"d4\",\"option\":\"later\"}")
        try h.reject(.outcomeMismatch, alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"yes\"}")
        try h.ok(alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"later\"}")
        XCTAssertEqual(try h.ledger.step(id: "a")?["outcome"], .string("later"))
        try h.reject(.stepResolved, owner, .decisionOpen, decision("d5"))
    }

    func testOptionsAreComparedByteForByte() throws {
        let h = try setUp3()
        try h.ok(owner, .decisionOpen, "{\"step_id\":\"a\",\"decision_id\":\"d\",\"question\":\"q\",\"options\":[\"caf\\u00e9\",\"cafe\\u0301\"],\"quorum\":1}")
        try h.reject(.badOption, alice, .voteCast, "{\"decision_id\":\"d\",\"option\":\"CAF\\u00c9\"}")
        try h.ok(alice, .voteCast, "{\"decision_id\":\"d\",\"option\":\"cafe\\u0301\"}")
        let d = try XCTUnwrap(h.ledger.step(id: "a"))["decisions"]?.arrayValue?.first
        XCTAssertEqual(d?["outcome"], .string("cafe\u{301}"))
        XCTAssertEqual(d?["votes"]?["caf\u{e9}"], .int(0))
        XCTAssertEqual(d?["votes"]?["cafe\u{301}"], .int(1))
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.outcomeMismatch, alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"caf\\u00e9\"}")
        try h.ok(alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"cafe\\u0301\"}")
    }

    func testResolveAndComplete() throws {
        let h = try setUp3()
        try h.reject(.notClaimant, alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"ok\"}")
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.ok(bob, .stepClaim, "{\"step_id\":\"b\"}")
        try h.ok(alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"ok\"}")
        XCTAssertEqual(try h.ledger.session(id: "s1")?["status"], .string("open"))
        XCTAssertEqual(try h.ledger.openSteps(sessionID: "s1")?["steps"]?.arrayValue?.compactMap { $0["step_id"]?.stringValue }, ["b"])
        try h.reject(.stepResolved, alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"again\"}")
        try h.reject(.stepResolved, alice, .stepClaim, "{\"step_id\":\"a\"}")
        try h.reject(.stepResolved, alice, .stepRelease, "{\"step_id\":\"a\"}")
        try h.reject(.stepResolved, alice, .stepHandoff, "{\"step_id\":\"a\",\"to\":\"\(bob.publicKey.base64)\"}")
        let r = try h.ok(bob, .stepResolve, "{\"step_id\":\"b\",\"outcome\":\"ok\"}")
        XCTAssertTrue(r.message.contains("completed"), r.message)
        let s = try XCTUnwrap(h.ledger.session(id: "s1"))
        XCTAssertEqual(s["status"], .string("completed"))
        XCTAssertEqual(s["completed_index"], .int(Int64(h.index)))
        XCTAssertEqual(s["resolved_count"], .int(2))
        XCTAssertEqual(try h.ledger.openSteps(sessionID: "s1")?["steps"], .array([]))
        try h.reject(.sessionCompleted, mallory, .participantJoin, "{\"session_id\":\"s1\"}")
    }

    func testIdempotencyAndReplay() throws {
        let h = try setUp3()
        let tx = try h.sign(alice, .stepClaim, "{\"step_id\":\"a\"}", nonce: "claim-1")
        let first = try h.applyBytes(tx.encoded)
        XCTAssertEqual(first.status, .applied)
        XCTAssertFalse(first.duplicate)
        let events = try h.ledger.events(sessionID: nil)?["events"]?.arrayValue?.count
        // The same tx again (a client retry, or a second leader's proposal): the original result.
        let again = try h.applyBytes(Array(tx.envelope.prettyString.utf8))
        XCTAssertTrue(again.duplicate)
        XCTAssertEqual(again.status, .applied)
        XCTAssertEqual(again.raftIndex, first.raftIndex)
        XCTAssertEqual(again.eventSeq, first.eventSeq)
        XCTAssertEqual(again.message, first.message)
        XCTAssertEqual(try h.ledger.events(sessionID: nil)?["events"]?.arrayValue?.count, events, "no new event")
        XCTAssertEqual(try h.ledger.result(of: tx)?.eventSeq, first.eventSeq)
        // A different tx with the same signer and nonce.
        let replay = try h.sign(alice, .stepRelease, "{\"step_id\":\"a\"}", nonce: "claim-1")
        let r = try h.applyBytes(replay.encoded)
        XCTAssertEqual(r.code, .replayed)
        XCTAssertEqual(try h.stepStatus("a"), "claimed")
        let r2 = try h.applyBytes(replay.encoded)
        XCTAssertEqual(r2.code, .replayed)
        XCTAssertTrue(r2.duplicate)
        XCTAssertEqual(r2.raftIndex, r.raftIndex)
        // Another signer may use the same nonce.
        XCTAssertEqual(try h.apply(bob, .stepClaim, "{\"step_id\":\"b\"}", nonce: "claim-1").status, .applied)
        // A rejected tx consumes its nonce too, and its retry returns the same rejection.
        let bad = try h.sign(mallory, .stepClaim, "{\"step_id\":\"b\"}", nonce: "m1")
        XCTAssertEqual(try h.applyBytes(bad.encoded).code, .notParticipant)
        try h.ok(mallory, .participantJoin, "{\"session_id\":\"s1\"}")
        let retry = try h.applyBytes(bad.encoded)
        XCTAssertEqual(retry.code, .notParticipant)
        XCTAssertTrue(retry.duplicate)
        XCTAssertEqual(try h.apply(mallory, .stepClaim, "{\"step_id\":\"a\"}", nonce: "m1").code, .replayed)
    }

    func testPrecheck() throws {
        let h = try setUp3()
        let tx = try h.sign(alice, .stepClaim, "{\"step_id\":\"a\"}", nonce: "p1")
        XCTAssertNil(try h.ledger.precheck(tx))
        try h.applyBytes(tx.encoded)
        XCTAssertEqual(try h.ledger.precheck(tx)?.duplicate, true)
        XCTAssertEqual(try h.ledger.precheck(tx)?.status, .applied)
        let reuse = try h.sign(alice, .stepRelease, "{\"step_id\":\"a\"}", nonce: "p1")
        XCTAssertEqual(try h.ledger.precheck(reuse)?.code, .replayed)
        XCTAssertNil(try h.ledger.result(of: reuse), "precheck records nothing")

        // A lone non-tx object is rejected by admission with a precise message.
        XCTAssertThrowsError(try Tx.admit(Array("{\"v\":1}".utf8), clusterID: Harness.cluster, now: Harness.now))
    }

    func testApplyTimeEnvelopeRejections() throws {
        let h = try setUp3()
        let before = try h.stateDigest()
        let stats = try h.ledger.stats()
        let good = try h.sign(alice, .stepClaim, "{\"step_id\":\"a\"}")
        let other = try h.sign(alice, .stepClaim, "{\"step_id\":\"a\"}", cluster: "other-cluster")
        XCTAssertEqual(try h.applyBytes(other.encoded).code, .wrongCluster)
        // Apply has no clock: a ts far in the past is not EXPIRED there (admission checks it).
        let old = try h.sign(alice, .stepClaim, "{\"step_id\":\"b\"}", ts: Timestamp(seconds: 0))
        let canon = good.encodedString
        let cases: [(String, RejectCode)] = [
            (canon.replacingOccurrences(of: "\"v\":1", with: "\"v\":1.5"), .malformed),
            (canon.replacingOccurrences(of: "\"v\":1", with: "\"v\":1,\"v\":1"), .malformed),
            (canon.replacingOccurrences(of: "\"step_id\":\"a\"", with: "\"step_id\":\"b\""), .badSignature),
            (String(repeating: " ", count: Tx.maxBytes + 1), .tooLarge),
            ("not json", .malformed),
        ]
        for (text, code) in cases {
            let r = try h.applyBytes(Array(text.utf8))
            XCTAssertEqual(r.code, code, text.prefix(80).description)
            XCTAssertNil(r.txID)
        }
        XCTAssertEqual(try h.stateDigest(), before)
        var s = try h.ledger.stats().objectValue!
        XCTAssertEqual(s["last_applied_index"], .int(Int64(h.index)), "the index still advances")
        s["last_applied_index"] = stats["last_applied_index"]
        XCTAssertEqual(JSONValue.object(s), stats, "nothing recorded")
        XCTAssertEqual(try h.applyBytes(old.encoded).status, .applied)
    }

    /// Every rejection code is produced by some input (the tests above assert the details).
    func testEveryRejectionCodeIsReachable() throws {
        let h = try setUp3()
        var seen = Set<RejectCode>()
        func note(_ r: TxResult) { if let c = r.code { seen.insert(c) } }
        func noteBytes(_ b: [UInt8]) throws { note(try h.applyBytes(b)) }
        let good = try h.sign(alice, .stepClaim, "{\"step_id\":\"a\"}")
        try noteBytes(Array(good.encodedString.replacingOccurrences(of: "\"step_id\":\"a\"", with: "\"step_id\":\"b\"").utf8))
        try noteBytes(Array("{".utf8))
        try noteBytes([UInt8](repeating: 0x20, count: Tx.maxBytes + 1))
        try noteBytes(try h.sign(alice, .stepClaim, "{\"step_id\":\"a\"}", cluster: "x").encoded)
        do { _ = try Tx.admit(good.encoded, clusterID: Harness.cluster, now: Harness.now.adding(seconds: 3600)) } catch { seen.insert(error.code) }
        note(try h.apply(mallory, .stepClaim, "{\"step_id\":\"a\"}"))                        // NOT_PARTICIPANT
        note(try h.apply(alice, .stepClaim, "{\"step_id\":\"zz\"}"))                          // NOT_FOUND
        note(try h.apply(alice, .participantJoin, "{\"session_id\":\"s1\"}"))                 // ALREADY_EXISTS
        note(try h.apply(alice, .decisionOpen, decision("d1")))                               // NOT_OWNER
        note(try h.apply(alice, .stepRelease, "{\"step_id\":\"a\"}"))                         // NOT_CLAIMANT
        try h.ok(alice, .stepClaim, "{\"step_id\":\"a\"}")
        note(try h.apply(bob, .stepClaim, "{\"step_id\":\"a\"}"))                             // STEP_CLAIMED
        try h.ok(alice, .decisionOpen, decision("d1", quorum: 1))
        note(try h.apply(alice, .decisionOpen, decision("d2")))                               // DECISION_OPEN
        note(try h.apply(alice, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"nah\"}"))    // BAD_OPTION
        try h.ok(alice, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"no\"}")
        note(try h.apply(bob, .voteCast, "{\"decision_id\":\"d1\",\"option\":\"no\"}"))       // DECISION_CLOSED
        try h.ok(alice, .decisionOpen, decision("d2", quorum: 2))
        try h.ok(alice, .voteCast, "{\"decision_id\":\"d2\",\"option\":\"no\"}")
        note(try h.apply(alice, .voteCast, "{\"decision_id\":\"d2\",\"option\":\"no\"}"))     // ALREADY_VOTED
        try h.ok(bob, .voteCast, "{\"decision_id\":\"d2\",\"option\":\"no\"}")
        note(try h.apply(alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"yes\"}"))     // OUTCOME_MISMATCH
        try h.ok(alice, .stepResolve, "{\"step_id\":\"a\",\"outcome\":\"no\"}")
        note(try h.apply(alice, .stepClaim, "{\"step_id\":\"a\"}"))                           // STEP_RESOLVED
        try h.ok(bob, .stepClaim, "{\"step_id\":\"b\"}")
        try h.ok(bob, .stepResolve, "{\"step_id\":\"b\",\"outcome\":\"ok\"}")
        note(try h.apply(mallory, .participantJoin, "{\"session_id\":\"s1\"}"))               // SESSION_COMPLETED
        let dupNonce = try h.sign(bob, .participantJoin, "{\"session_id\":\"s9\"}", nonce: "fixed")
        note(try h.applyBytes(dupNonce.encoded))
        note(try h.applyBytes(try h.sign(bob, .participantJoin, "{\"session_id\":\"s8\"}", nonce: "fixed").encoded))
        XCTAssertEqual(seen, Set(RejectCode.allCases), "missing: \(Set(RejectCode.allCases).subtracting(seen).map(\.rawValue))")
    }
}
