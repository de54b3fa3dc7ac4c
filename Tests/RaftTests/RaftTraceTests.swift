import Raft
import XCTest

/// Data-driven scenarios: each script reads like a trace of inputs and expected state.
///
/// Commands: `cluster ID…` (founding voters) · `joiner ID` · `tick ID [N]` · `tick-all [N]` ·
/// `isolate ID` · `partition A,B | C,D` · `heal` · `propose ID DATA` · `propose ID DATA -> ERROR` ·
/// `conf ID add-learner|promote|add-voter|remove TARGET` · `transfer ID TARGET` ·
/// `expect role|term|leader|commit|applied|voters ID VALUE`.
final class RaftTraceTests: XCTestCase {
    func run(_ script: String, file: StaticString = #filePath, line: UInt = #line) {
        var c: TestCluster?
        var joiners: [NodeID] = []
        for (n, raw) in script.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let w = text.split(separator: " ").map(String.init)
            guard let cmd = w.first else { continue }
            let at = "script line \(n + 1): \(text.trimmingCharacters(in: .whitespaces))"
            if cmd == "joiner" { joiners.append(w[1]); continue }
            if cmd == "cluster" { c = TestCluster(voters: Array(w.dropFirst()), joiners: joiners); continue }
            guard let c else { return XCTFail("\(at): no cluster yet", file: file, line: line) }
            func count(_ i: Int) -> Int { w.count > i ? Int(w[i]) ?? 1 : 1 }
            switch cmd {
            case "tick": c.tick(w[1], count(2))
            case "tick-all": c.tickAll(count(1))
            case "isolate": c.isolate(w[1])
            case "heal": c.heal()
            case "partition":
                let sides = w.dropFirst().joined(separator: " ").split(separator: "|")
                let a = sides[0].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                let b = sides[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                c.partition(a, b)
            case "propose":
                do {
                    try c.propose(w[1], w[2])
                    if w.count > 3 { XCTFail("\(at): expected an error", file: file, line: line) }
                } catch {
                    let expected = w.count > 4 ? w[4...].joined(separator: " ") : "success"
                    if "\(error)" != expected { XCTFail("\(at): got \(error)", file: file, line: line) }
                }
            case "conf":
                let change: ConfChange
                switch w[2] {
                case "add-learner": change = .addLearner(w[3])
                case "promote": change = .promoteLearner(w[3])
                case "add-voter": change = .addVoter(w[3])
                default: change = .removeNode(w[3])
                }
                do { try c.nodes[w[1]]!.proposeConfChange(change); c.stabilize() } catch {
                    XCTFail("\(at): \(error)", file: file, line: line)
                }
            case "transfer":
                do { try c.nodes[w[1]]!.transferLeadership(to: w[2]); c.stabilize() } catch {
                    XCTFail("\(at): \(error)", file: file, line: line)
                }
            case "expect":
                let node = c.nodes[w[2]]!
                let want = w.count > 3 ? w[3...].joined(separator: " ") : ""
                let got: String
                switch w[1] {
                case "role": got = node.role.rawValue
                case "term": got = "\(node.term)"
                case "leader": got = node.leader ?? "none"
                case "commit": got = "\(node.commitIndex)"
                case "applied": got = c.appliedData(w[2]).map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",")
                case "voters": got = node.conf.voters.joined(separator: ",")
                default: got = "unknown expectation \(w[1])"
                }
                if got != want { XCTFail("\(at): got '\(got)'", file: file, line: line) }
            default:
                XCTFail("\(at): unknown command", file: file, line: line)
            }
        }
    }

    func testElectionReplicationAndPreVote() {
        run("""
        cluster a b c
        tick a 21               # a times out first and wins pre-vote then vote
        expect role a leader
        expect term a 2
        expect leader c a
        propose a x
        propose a y
        tick-all 2
        expect applied c x,y
        expect commit b 4       # bootstrap config, no-op, x, y
        propose b z -> NOT_LEADER leader=a
        isolate c
        tick c 100              # pre-vote: c never raises its term
        expect role c preCandidate
        expect term c 2
        heal
        tick-all 20
        expect role a leader
        expect term a 2
        expect applied c x,y
        """)
    }

    func testMembershipAndTransfer() {
        run("""
        joiner d
        cluster a b c
        tick a 21
        conf a add-learner d
        tick-all 3
        propose a hello
        tick-all 2
        expect applied d hello
        expect role d follower
        conf a promote d
        tick-all 3
        expect voters d a,b,c,d
        transfer a d
        tick-all 3
        expect role d leader
        expect leader a d
        conf d remove a
        tick-all 3
        expect voters b b,c,d
        propose d after
        tick-all 2
        expect applied b hello,after
        """)
    }

    func testMinorityPartitionThenHeal() {
        run("""
        cluster a b c d e
        tick a 21
        partition a,b | c,d,e
        propose a lost          # accepted by the leader, never committed
        tick-all 40             # a loses check-quorum; the majority elects someone
        heal
        tick-all 40
        expect applied a
        """)
    }
}
