import XCTest
@testable import P2POSCLI
@testable import Node
import Raft
import RaftStorage
import Support

final class CLITests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    func committed(_ rel: String) -> String {
        (try? String(contentsOfFile: CLITests.root + "/" + rel, encoding: .utf8)) ?? "<missing \(rel)>"
    }

    /// The committed man page and completions must equal what the table generates (regenerate: scripts/gen-docs).
    func testGeneratedFilesDoNotDrift() {
        XCTAssertEqual(committed("man/p2pos.1"), Docs.manPage(), "man/p2pos.1 drifted; run scripts/gen-docs")
        XCTAssertEqual(committed("completions/p2pos.bash"), Docs.completion("bash"), "run scripts/gen-docs")
        XCTAssertEqual(committed("completions/_p2pos"), Docs.completion("zsh"), "run scripts/gen-docs")
        XCTAssertEqual(committed("completions/p2pos.fish"), Docs.completion("fish"), "run scripts/gen-docs")
    }

    func testEveryCommandOfTheSpecIsInTheTable() {
        let names = Set(CommandTable.visible.map { $0.name })
        for n in ["init", "keygen", "node run", "tx sign", "tx submit", "snapshot publish", "dns resolve", "status",
                  "bench net", "bench raft", "bench tx", "id", "peers", "ping", "completions", "version", "help", "api", "snapshot push"] {
            XCTAssertTrue(names.contains(n), "missing \(n)")
        }
        for c in CommandTable.all {
            XCTAssertTrue(Docs.help(c).hasPrefix("Usage: p2pos \(c.name)"))
            XCTAssertTrue(Docs.help(c).contains("Exit codes:"))
        }
    }

    func testParser() throws {
        let spec = CommandTable.find(["keygen"])!.0
        let p = try ParsedArgs.parse(spec, ["--new-system", "--cluster-id=abc", "--json"])
        XCTAssertTrue(p.has("--new-system"))
        XCTAssertEqual(p.value("--cluster-id"), "abc")
        XCTAssertThrowsError(try ParsedArgs.parse(spec, ["--nope"])) { XCTAssertEqual(($0 as? CLIError)?.code, 2) }
        XCTAssertThrowsError(try ParsedArgs.parse(spec, ["--cluster-id"])) { XCTAssertEqual(($0 as? CLIError)?.code, 2) }
        XCTAssertThrowsError(try ParsedArgs.parse(spec, ["--json=1"]))
        XCTAssertThrowsError(try ParsedArgs.parse(spec, ["extra"]))
        XCTAssertEqual(CommandTable.find(["node", "run", "--dev"])?.1, 2)
    }

    func testExitCodes() {
        XCTAssertEqual(P2POSCLI.run(["p2pos", "nosuchcommand"]), 2)
        XCTAssertEqual(P2POSCLI.run(["p2pos", "node"]), 2)
        XCTAssertEqual(P2POSCLI.run(["p2pos", "completions", "tcsh"]), 2)
    }
}

final class ConfigTests: XCTestCase {
    /// A Go P2POS config file loads unchanged; unknown fields survive a rewrite.
    func testGoConfigLoadsAndKeepsUnknownFields() throws {
        let go = """
        {"init_connections":[{"type":"dns","address":"example.org"},{"type":"multiaddr","address":"/ip4/127.0.0.1/tcp/4100"},{"type":"dns","address":"example.org"}],
         "listen":["0.0.0.0:4100","[::]:4100"],"network_mode":"weird","cluster_id":" c1 ",
         "system_pubkey":"CAESIHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk",
         "admin_proof":{"cluster_id":"c1","peer_id":"P","role":"admin","valid_from":"2026-01-01T00:00:00Z","valid_to":"2027-01-01T00:00:00Z","sig":"x"},
         "node_private_key":"CAESQAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=",
         "auto_tls":true,"update_channel":"stable"}
        """
        let c = try NodeConfig.parse(Data(go.utf8), path: "config.json")
        XCTAssertEqual(c.initConnections.count, 2)
        XCTAssertEqual(c.networkMode, "auto")
        XCTAssertEqual(c.clusterID, "c1")
        XCTAssertEqual(try c.nodeKey().peerID.base58, "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf")
        XCTAssertEqual(Set(c.unknownFields.keys), ["auto_tls", "update_channel"])
        let again = try NodeConfig.parse(Data(c.jsonText().utf8), path: "x")
        XCTAssertEqual(again.unknownFields["update_channel"] as? String, "stable")
        XCTAssertEqual(again.adminProof, c.adminProof)
    }

    func testErrorsNameFileFieldAndReason() {
        func err(_ json: String) -> String {
            do { _ = try NodeConfig.parse(Data(json.utf8), path: "/etc/p.json"); return "ok" } catch { return "\(error)" }
        }
        XCTAssertTrue(err("{\"listen\": \"0.0.0.0:4100\"}").contains("/etc/p.json: field listen: must be an array"))
        XCTAssertTrue(err("{\"cluster_id\": 5}").contains("field cluster_id: must be a string, got a number"))
        XCTAssertTrue(err("{\"init_connections\":[{\"type\":\"carrier-pigeon\",\"address\":\"x\"}]}").contains("init_connections[0].type"))
        XCTAssertTrue(err("{\"node_private_key\": \"AAAA\"}").contains("node_private_key"))
        XCTAssertTrue(err("{\"heartbeat\": {\"interval\": \"soon\"}}").contains("heartbeat.interval"))
        XCTAssertTrue(err("{\"raft\": {\"max_voters\": true}}").contains("raft.max_voters"))
        XCTAssertTrue(err("{oops").contains("not valid JSON"))
        XCTAssertTrue(err("[]").contains("top level"))
    }

    /// `api.max_connections`: the control API's connection limit, bounded, written back only
    /// when it differs from the default.
    func testAPIMaxConnections() throws {
        func err(_ json: String) -> String {
            do { _ = try NodeConfig.parse(Data(json.utf8), path: "/etc/p.json"); return "ok" } catch { return "\(error)" }
        }
        XCTAssertEqual(try NodeConfig.parse(Data("{}".utf8), path: "x").apiMaxConnections, 128)
        let c = try NodeConfig.parse(Data("{\"api\": {\"max_connections\": 300}}".utf8), path: "x")
        XCTAssertEqual(c.apiMaxConnections, 300)
        XCTAssertEqual(try NodeConfig.parse(Data(c.jsonText().utf8), path: "x").apiMaxConnections, 300)
        XCTAssertNil(NodeConfig().jsonObject()["api"], "the default is not written out")
        for bad in ["0", "-5", "1.5", "16385", "\"many\"", "true"] {
            XCTAssertTrue(err("{\"api\": {\"max_connections\": \(bad)}}").contains("/etc/p.json: field api.max_connections: must be"), bad)
        }
    }

    /// The open-file soft limit is raised toward what is wanted, never lowered, never past the hard limit.
    func testFileLimitRaise() throws {
        let (soft, hard) = try XCTUnwrap(FileLimits.current())
        XCTAssertEqual(FileLimits.raiseSoftLimit(to: 1), soft, "never lowered")
        try XCTSkipUnless(soft < hard, "the soft limit is already the hard limit")
        XCTAssertEqual(FileLimits.raiseSoftLimit(to: soft + 1), soft + 1)
        XCTAssertEqual(FileLimits.current()?.soft, soft + 1)
        let top = try XCTUnwrap(FileLimits.raiseSoftLimit(to: hard &+ 1))
        XCTAssertTrue(top >= soft + 1 && top <= hard, "\(top)")
        XCTAssertEqual(FileLimits.current()?.hard, hard, "the hard limit is untouched")
    }

    func testDurations() throws {
        let c = try NodeConfig.parse(Data("{\"heartbeat\":{\"interval\":\"10s\",\"window\":\"5m\"}}".utf8), path: "x")
        XCTAssertEqual(c.heartbeatInterval, 10)
        XCTAssertEqual(c.heartbeatWindow, 300)
    }
}

/// `init --new-system` writes the founding Raft configuration, so the first start bootstraps
/// whatever membership snapshot arrives first (a race that used to leave a cluster leaderless).
final class GenesisTests: XCTestCase {
    func testNewSystemWritesTheFoundingRaftConfiguration() throws {
        let dir = NSTemporaryDirectory() + "genesis-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try createNewSystem(dataDir: dir, configPath: dir + "/config.json", clusterID: "g1", listen: ["127.0.0.1:0"],
                                    validTo: Timestamp.now().adding(seconds: 3600), now: Timestamp.now(), force: false)
        let me = try XCTUnwrap(r.json["peer_id"] as? String)
        let state = try RaftStorage(path: dir + "/raft.db").load()
        XCTAssertEqual(state.hardState.term, 1)
        XCTAssertEqual(state.hardState.commit, 1)
        XCTAssertEqual(state.entries.count, 1)
        XCTAssertEqual(state.entries.first?.kind, .config)
        XCTAssertEqual(try ConfState.decode(state.entries[0].data).voters, [me])
        // A Raft node built from it is a one-voter group that elects itself.
        var cfg = RaftConfig(id: me)
        cfg.electionTick = 3
        var n = try RaftNode(config: cfg, state: state)
        for _ in 0..<20 { n.tick(); while n.hasReady { let rd = n.ready(); n.advance(rd) } }
        XCTAssertEqual(n.role, .leader)
        // An existing log is never overwritten.
        try Consensus.writeGenesisLog(dataDir: dir, selfID: "someone-else")
        XCTAssertEqual(try ConfState.decode(try RaftStorage(path: dir + "/raft.db").load().entries[0].data).voters, [me])
    }
}

/// The raft stream's frame splitter (runs on the event loop on bytes from a peer).
final class RaftFrameReaderTests: XCTestCase {
    func frames(_ msgs: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for m in msgs {
            var n = UInt64(m.count)
            while n >= 0x80 { out.append(UInt8(n & 0x7f) | 0x80); n >>= 7 }
            out.append(UInt8(n))
            out += m
        }
        return out
    }

    func testAnyChunkingGivesTheSameFrames() throws {
        var g = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let msgs = (0..<Int.random(in: 1...20, using: &g)).map { _ in (0..<Int.random(in: 0...3000, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) } }
            let bytes = frames(msgs)
            let r = RaftFrameReader(maxFrame: 1 << 20)
            var got: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let n = min(bytes.count - i, Int.random(in: 1...700, using: &g))
                got += try bytes[i..<(i + n)].withUnsafeBufferPointer { try r.feed($0) }
                i += n
            }
            XCTAssertEqual(got, msgs)
        }
    }

    func testBadInputIsAnErrorNotACrash() {
        let r = RaftFrameReader(maxFrame: 1024)
        XCTAssertThrowsError(try frames([[UInt8](repeating: 1, count: 2000)]).withUnsafeBufferPointer { try r.feed($0) }, "oversized frame")
        let r2 = RaftFrameReader(maxFrame: 1024)
        XCTAssertThrowsError(try [UInt8](repeating: 0xff, count: 12).withUnsafeBufferPointer { try r2.feed($0) }, "endless varint")
        // Garbage never traps: random bytes either parse as frames or throw.
        var g = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let r3 = RaftFrameReader(maxFrame: 4096)
            let junk = (0..<Int.random(in: 0...64, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            _ = try? junk.withUnsafeBufferPointer { try r3.feed($0) }
        }
    }
}

/// The bench's load generator parses response heads as bytes.
final class BenchClientTests: XCTestCase {
    func head(_ s: String) -> (Int, Int)? { KeepAliveClient.parseHead(ArraySlice(Array(s.utf8))) }

    func testStatusAndContentLength() {
        XCTAssertEqual(head("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42")?.0, 200)
        XCTAssertEqual(head("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42")?.1, 42)
        // Any case, optional whitespace, anywhere among the headers; absent means 0.
        XCTAssertEqual(head("HTTP/1.1 503 Service Unavailable\r\ncontent-LENGTH:7\r\nX: y")?.1, 7)
        XCTAssertEqual(head("HTTP/1.1 404 Not Found\r\nX-Content-Length: 9\r\nDate: z")?.1, 0)
        XCTAssertEqual(head("HTTP/1.1 404 Not Found\r\nX-Content-Length: 9\r\nDate: z")?.0, 404)
        XCTAssertEqual(head("HTTP/1.1 204 No Content")?.1, 0)
        // As the client passes it: the head with the blank line that ends it.
        XCTAssertEqual(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")?.1, 5)
    }

    func testMalformedHeadsAreRefused() {
        XCTAssertNil(head(""))
        XCTAssertNil(head("HTTP/1.1 2x0 OK"))
        XCTAssertNil(head("HTTP/1.1"))
        XCTAssertNil(head("HTTP/1.1 200 OK\r\nContent-Length: abc"))
        var g = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let junk = (0..<Int.random(in: 0...80, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            _ = KeepAliveClient.parseHead(ArraySlice(junk))
        }
    }

    /// Percentiles are read from latencies in any order (they are sorted once, when the result is made).
    func testPercentiles() {
        let lat = (1...1000).map(Double.init).shuffled()
        let r = LoadResult(ops: 1000, errors: 0, seconds: 1, latenciesUs: lat)
        XCTAssertEqual(r.pct(0), 1)
        XCTAssertEqual(r.pct(0.5), 500)
        XCTAssertEqual(r.pct(0.99), 990)
        XCTAssertEqual(r.pct(1), 1000)
        XCTAssertTrue(LoadResult(ops: 0, errors: 3, seconds: 1, latenciesUs: []).pct(0.5).isNaN)
        // Ratios against another result use the same percentiles.
        let slower = LoadResult(ops: 500, errors: 0, seconds: 1, latenciesUs: lat.map { $0 * 2 })
        XCTAssertEqual(r.ratios(to: slower).throughput, 2)
        XCTAssertEqual(r.ratios(to: slower).p99, 0.5)
    }
}

final class CompactionPolicyTests: XCTestCase {
    /// The log kept between compaction snapshots: twice a small state, 32 MiB for a middling one,
    /// half a large one, and never more than 256 MiB however large the ledger grows.
    func testCompactionLogIsBoundedForAnyStateSize() {
        let mib = 1 << 20
        XCTAssertEqual(Consensus.compactionLogBytes(after: 0), 0)
        XCTAssertEqual(Consensus.compactionLogBytes(after: 4 * mib), 8 * mib)
        XCTAssertEqual(Consensus.compactionLogBytes(after: 16 * mib), 32 * mib)
        XCTAssertEqual(Consensus.compactionLogBytes(after: 40 * mib), 32 * mib)
        XCTAssertEqual(Consensus.compactionLogBytes(after: 100 * mib), 50 * mib)
        XCTAssertEqual(Consensus.compactionLogBytes(after: 512 * mib), 256 * mib)
        XCTAssertEqual(Consensus.compactionLogBytes(after: 4096 * mib), 256 * mib)
        XCTAssertEqual(Consensus.compactionLogBytes(after: Int.max / 4), 256 * mib)
        for s in stride(from: 0, through: 8192 * mib, by: 7 * mib + 12345) {
            XCTAssertLessThanOrEqual(Consensus.compactionLogBytes(after: s), 256 * mib)
        }
    }
}
