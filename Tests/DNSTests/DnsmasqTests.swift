import XCTest
import Foundation
@testable import DNS
#if canImport(Glibc)
import Glibc
#endif

/// A private dnsmasq on 127.0.0.1:<ephemeral> that answers only from `--txt-record` lines and
/// never forwards (no resolv.conf, no servers, `.test` is local-only).
final class Dnsmasq {
    static let candidates = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq", "/usr/local/sbin/dnsmasq"]
    static var binary: String? { candidates.first { FileManager.default.isExecutableFile(atPath: $0) } }

    let process: Process
    let port: Int
    let stderr: Pipe

    /// `records`: (name, [character-strings]) — one entry per TXT record.
    convenience init(records: [(String, [String])]) throws {
        guard let bin = Dnsmasq.binary else { throw XCTSkip("dnsmasq is not installed (apt-get install -y dnsmasq-base); skipping the real-DNS tests") }
        try self.init(executable: bin) { port in
            var args = ["--no-daemon", "--conf-file=/dev/null", "--port=\(port)", "--listen-address=127.0.0.1",
                        "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-poll", "--pid-file",
                        "--local=/test/", "--cache-size=0", "--log-facility=-"]
            for (name, strings) in records {
                args.append("--txt-record=" + ([name] + strings).joined(separator: ","))  // values must not contain commas
            }
            return args
        }
    }

    /// Start `executable` with the arguments for a free port; wait until it answers DNS.
    init(executable: String, arguments: (Int) -> [String]) throws {
        var lastError = ""
        for _ in 0..<5 {
            let port = Dnsmasq.freePort()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = arguments(port)
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            // Ready when it answers a query for a name it holds (or NXDOMAIN for one it does not).
            let resolver = DNSResolver(server: try DNSServer("127.0.0.1:\(port)"), timeout: 1, attempts: 1)
            let deadline = Date().addingTimeInterval(5)
            var ready = false
            while Date() < deadline && p.isRunning {
                do {
                    _ = try resolver.lookupTXT("ready-probe.test")
                    ready = true
                } catch DNSError.nxdomain {
                    ready = true
                } catch {
                    Thread.sleep(forTimeInterval: 0.05)
                }
                if ready { break }
            }
            if ready {
                self.process = p
                self.port = port
                self.stderr = err
                return
            }
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
            lastError = String(decoding: err.fileHandleForReading.availableData, as: UTF8.self)
        }
        throw NSError(domain: "Dnsmasq", code: 1, userInfo: [NSLocalizedDescriptionKey: "dnsmasq did not start: \(lastError)"])
    }

    var server: String { "127.0.0.1:\(port)" }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }

    /// A port free for both UDP and TCP on loopback right now.
    static func freePort() -> Int {
        for _ in 0..<20 {
            let u = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(u, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(u, $0, &len) } }
            let port = Int(UInt16(bigEndian: addr.sin_port))
            close(u)
            let t = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            addr.sin_port = UInt16(port).bigEndian
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(t, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
            close(t)
            if ok { return port }
        }
        return 53535
    }
}

final class DnsmasqTests: XCTestCase {
    static let peerA = "12D3KooWAbFVbstA3Y5h5WYeHuhMDQ4QbQv5XTvnZq3sLLNBDLJk"
    static let peerB = "12D3KooWBp9HKhVGd6i7xWXWQ5YuZVmuhhcH5TsJWzqZ7vaMbHLc"
    static let peerC = "12D3KooWCq5t8dKrmZTbtVW1mTzDhwWbJAAqkx5P5EzpBvBv5gqQ"
    static let peerD = "12D3KooWDx1tePvtMJ2bCbK4EqjMpjFdhUxzhXvVMRv2K7XGPt8Z"
    static let peerE = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"

    var dns: Dnsmasq!

    override func setUpWithError() throws {
        let a = DnsmasqTests.peerA, b = DnsmasqTests.peerB, c = DnsmasqTests.peerC, d = DnsmasqTests.peerD, e = DnsmasqTests.peerE
        dns = try Dnsmasq(records: [
            // Several dnsaddr records for one peer, plus another peer, junk and a duplicate.
            ("_dnsaddr.multi.test", ["dnsaddr=/ip4/10.0.0.1/tcp/4100/p2p/\(a)"]),
            ("_dnsaddr.multi.test", ["dnsaddr=/ip6/fd00::1/tcp/4100/p2p/\(a)"]),
            ("_dnsaddr.multi.test", ["dnsaddr=/dns4/node-a.multi.test/tcp/4100/p2p/\(a)"]),
            ("_dnsaddr.multi.test", ["dnsaddr=/ip4/10.0.0.2/tcp/4100/p2p/\(b)"]),
            ("_dnsaddr.multi.test", ["v=spf1 -all"]),
            ("_dnsaddr.multi.test", ["dnsaddr=not-a-multiaddr"]),
            // Bare multiaddr strings at the bare name only (no _dnsaddr. name at all).
            ("bare.test", ["/ip4/10.0.1.1/tcp/4100/p2p/\(c)"]),
            ("bare.test", ["dnsaddr=/ip4/10.0.1.2/tcp/4100/p2p/\(c)"]),
            ("bare.test", ["google-site-verification=abc"]),
            // A value split over two character-strings in one record, with the legacy /ipfs/ key.
            ("_dnsaddr.split.test", ["dnsaddr=/ip4/10.0.2.1/tcp/4100", "/ipfs/\(e)"]),
            // Only unrelated TXT.
            ("_dnsaddr.junk.test", ["hello world"]),
            ("junk.test", ["some=thing"]),
            // Nested dnsaddr: root → region (all), root → other filtered by peer ID, and a cycle.
            ("_dnsaddr.root.test", ["dnsaddr=/dnsaddr/region.test"]),
            ("_dnsaddr.root.test", ["dnsaddr=/dnsaddr/other.test/p2p/\(b)"]),
            ("_dnsaddr.root.test", ["dnsaddr=/dnsaddr/root.test"]),
            ("_dnsaddr.region.test", ["dnsaddr=/ip4/10.0.3.1/tcp/4100/p2p/\(d)"]),
            ("_dnsaddr.region.test", ["dnsaddr=/ip4/10.0.3.2/tcp/4100/p2p/\(a)"]),
            ("_dnsaddr.other.test", ["dnsaddr=/ip4/10.0.4.1/tcp/4100/p2p/\(b)"]),
            ("_dnsaddr.other.test", ["dnsaddr=/ip4/10.0.4.2/tcp/4100/p2p/\(c)"]),
        ])
    }

    override func tearDown() {
        dns?.stop()
        dns = nil
    }

    func testSeveralRecordsForOnePeerAreMerged() throws {
        let r = try DNSTool.resolve(domain: "multi.test", server: dns.server)
        XCTAssertEqual(r.server, dns.server)
        XCTAssertEqual(r.peers, [
            DNSPeer(peerID: DnsmasqTests.peerA, addrs: [
                "/dns4/node-a.multi.test/tcp/4100/p2p/\(DnsmasqTests.peerA)",
                "/ip4/10.0.0.1/tcp/4100/p2p/\(DnsmasqTests.peerA)",
                "/ip6/fd00::1/tcp/4100/p2p/\(DnsmasqTests.peerA)",
            ]),
            DNSPeer(peerID: DnsmasqTests.peerB, addrs: ["/ip4/10.0.0.2/tcp/4100/p2p/\(DnsmasqTests.peerB)"]),
        ])
        XCTAssertEqual(r.warnings, [])
    }

    func testFallbackToBareNameWithBareMultiaddrs() throws {
        let r = try DNSTool.resolve(domain: "bare.test", server: dns.server)
        XCTAssertEqual(r.peers, [DNSPeer(peerID: DnsmasqTests.peerC, addrs: [
            "/ip4/10.0.1.1/tcp/4100/p2p/\(DnsmasqTests.peerC)",
            "/ip4/10.0.1.2/tcp/4100/p2p/\(DnsmasqTests.peerC)",
        ])])
    }

    func testSplitCharacterStringsAndIpfsKey() throws {
        let r = try DNSTool.resolve(domain: "split.test", server: dns.server)
        XCTAssertEqual(r.tuples.map { $0.peerID }, [DnsmasqTests.peerE])
        XCTAssertEqual(r.peers[0].addrs, ["/ip4/10.0.2.1/tcp/4100/ipfs/\(DnsmasqTests.peerE)"])
    }

    func testUnrelatedTXTIgnored() throws {
        XCTAssertThrowsError(try DNSTool.resolve(domain: "junk.test", server: dns.server)) { e in
            XCTAssertEqual(e as? DNSError, .noUsableRecords(domain: "junk.test", server: dns.server, queried: ["_dnsaddr.junk.test", "junk.test"]))
            XCTAssertTrue("\(e)".contains("junk.test"))
        }
    }

    func testNXDomainIsAClearError() throws {
        XCTAssertThrowsError(try DNSTool.resolve(domain: "missing.test", server: dns.server)) { e in
            XCTAssertEqual(e as? DNSError, .nxdomain(name: "missing.test", server: dns.server))
            XCTAssertEqual("\(e)", "DNS name missing.test does not exist (NXDOMAIN from \(dns.server))")
        }
        // Raw lookups distinguish NXDOMAIN from an existing name without TXT (NODATA).
        let resolver = DNSResolver(server: try DNSServer(dns.server), timeout: 1, attempts: 1)
        XCTAssertEqual(try resolver.lookupTXT("multi.test"), [])
        XCTAssertThrowsError(try resolver.lookupTXT("nothing.multi.test")) { e in
            XCTAssertEqual((e as? DNSError)?.code, "DNS_NXDOMAIN")
        }
    }

    func testNestedDnsaddrFollowed() throws {
        let r = try DNSTool.resolve(domain: "root.test", server: dns.server)
        XCTAssertEqual(r.peers, [
            DNSPeer(peerID: DnsmasqTests.peerA, addrs: ["/ip4/10.0.3.2/tcp/4100/p2p/\(DnsmasqTests.peerA)"]),
            DNSPeer(peerID: DnsmasqTests.peerB, addrs: ["/ip4/10.0.4.1/tcp/4100/p2p/\(DnsmasqTests.peerB)"]),
            DNSPeer(peerID: DnsmasqTests.peerD, addrs: ["/ip4/10.0.3.1/tcp/4100/p2p/\(DnsmasqTests.peerD)"]),
        ])
        XCTAssertEqual(r.warnings.count, 1)
        XCTAssertTrue(r.warnings[0].contains("cycle"), r.warnings[0])
        XCTAssertTrue(DNSTool.formatHuman(r).hasPrefix("root.test: 3 peers, 3 addresses (via \(dns.server))\n"))
    }

    func testServerFailures() throws {
        // A name outside the local zone: dnsmasq has no upstream and refuses.
        XCTAssertThrowsError(try DNSResolver(server: try DNSServer(dns.server), timeout: 1, attempts: 1).lookupTXT("example.com")) { e in
            guard case .serverFailure(let n, let s, let reason)? = e as? DNSError else { return XCTFail("\(e)") }
            XCTAssertTrue(reason.hasPrefix("REFUSED"), reason)
            XCTAssertEqual(n, "example.com")
            XCTAssertEqual(s, dns.server)
        }
        // Nothing listening on the port.
        let closed = Dnsmasq.freePort()
        XCTAssertThrowsError(try DNSTool.resolve(domain: "multi.test", server: "127.0.0.1:\(closed)", timeout: 1, attempts: 1)) { e in
            guard case .serverFailure(let n, let s, let reason)? = e as? DNSError else { return XCTFail("\(e)") }
            XCTAssertTrue(reason.contains("connection refused") || reason.contains("no answer"), reason)
            XCTAssertEqual(n, "_dnsaddr.multi.test")
            XCTAssertEqual(s, "127.0.0.1:\(closed)")
        }
        // A server that never answers: a timeout, bounded by timeout x attempts.
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(silent) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(silent, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(silent, $0, &len) } }
        let silentPort = Int(UInt16(bigEndian: addr.sin_port))
        let t0 = Date()
        XCTAssertThrowsError(try DNSTool.resolve(domain: "multi.test", server: "127.0.0.1:\(silentPort)", timeout: 1, attempts: 1)) { e in
            guard case .serverFailure(_, let s, let reason)? = e as? DNSError else { return XCTFail("\(e)") }
            XCTAssertEqual(s, "127.0.0.1:\(silentPort)")
            XCTAssertTrue(reason.contains("no answer"), reason)
        }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5)
    }

    func testServfailIsReportedAsSuch() throws {
        // A tiny UDP responder that answers every query with SERVFAIL (dnsmasq cannot, without forwarding).
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let stop = Failures()
        let responder = Thread {
            var buf = [UInt8](repeating: 0, count: 512)
            while stop.all.isEmpty {
                var peer = sockaddr_storage()
                var plen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &peer) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &plen) }
                }
                guard n >= 12 else { continue }
                var reply = Array(buf[0..<n])
                reply[2] |= 0x80
                reply[3] = (reply[3] & 0xF0) | 2
                _ = withUnsafePointer(to: &peer) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, reply, reply.count, 0, $0, plen) }
                }
            }
        }
        responder.start()
        defer { stop.add("stop"); Thread.sleep(forTimeInterval: 0.3); close(fd) }
        let t0 = Date()
        XCTAssertThrowsError(try DNSTool.resolve(domain: "multi.test", server: "127.0.0.1:\(port)", timeout: 2, attempts: 2)) { e in
            guard case .serverFailure(let n, let s, let reason)? = e as? DNSError else { return XCTFail("\(e)") }
            XCTAssertEqual(n, "_dnsaddr.multi.test")
            XCTAssertEqual(s, "127.0.0.1:\(port)")
            XCTAssertTrue(reason.hasPrefix("SERVFAIL"), reason)
        }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.9, "SERVFAIL is reported at once, not after timeouts")
    }

    func testConcurrentLookupsUsePrivateState() throws {
        let server = dns.server
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for _ in 0..<10 {
                do {
                    let domain = i % 2 == 0 ? "multi.test" : "bare.test"
                    let r = try DNSTool.resolve(domain: domain, server: server)
                    if r.peers.count != (i % 2 == 0 ? 2 : 1) { failures.add("\(domain): \(r.peers)") }
                } catch {
                    failures.add("\(error)")
                }
            }
        }
        XCTAssertEqual(failures.all, [])
    }
}

final class ZoneScriptTests: XCTestCase {
    /// tests/dns/dnsmasq-zone.sh serves tests/dns/sample.zone; resolving through it works end to end.
    func testSampleZoneThroughHelperScript() throws {
        guard Dnsmasq.binary != nil else { throw XCTSkip("dnsmasq is not installed (apt-get install -y dnsmasq-base)") }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("tests/dns/dnsmasq-zone.sh").path
        let zone = root.appendingPathComponent("tests/dns/sample.zone").path
        let dns = try Dnsmasq(executable: "/bin/sh") { port in [script, String(port), zone] }
        defer { dns.stop() }
        let r = try DNSTool.resolve(domain: "cluster.test", server: dns.server)
        XCTAssertEqual(r.peers.map { $0.addrs.count }, [2, 1])
        XCTAssertEqual(r.peers.map { $0.peerID }, ["12D3KooWAbFVbstA3Y5h5WYeHuhMDQ4QbQv5XTvnZq3sLLNBDLJk", "12D3KooWBp9HKhVGd6i7xWXWQ5YuZVmuhhcH5TsJWzqZ7vaMbHLc"])
        XCTAssertEqual(try DNSTool.resolve(domain: "bare.test", server: dns.server).peers.count, 1)
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
