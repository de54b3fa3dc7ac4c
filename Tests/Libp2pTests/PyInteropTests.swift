import XCTest
import Foundation
import Identity
import Support
import Wire
@testable import Libp2p

/// In-process p2pos hosts against real py-libp2p 0.8.1 processes (tests/interop/py_peer.py).
/// Skipped when the interop venv is missing (create it with tests/interop/setup.sh).
final class PyInteropTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var python: String { Self.root.appendingPathComponent(".venv/bin/python").path }
    var script: String { Self.root.appendingPathComponent("tests/interop/py_peer.py").path }

    override func setUp() async throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no .venv with py-libp2p (run tests/interop/setup.sh)")
        }
    }

    /// Run the script and return its last stdout line (bounded wait).
    func runPy(_ args: [String], timeout: Double = 120) async throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data: Data = await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: out.fileHandleForReading.readDataToEndOfFile()) }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        if p.isRunning { p.terminate(); usleep(200_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
    }

    func testP2POSDialsPyLibp2p() async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script, "listen"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer {
            p.terminate()
            for _ in 0..<40 where p.isRunning { usleep(50_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }   // never leave a listener behind
        }
        let line: String = await withCheckedContinuation { c in
            DispatchQueue.global().async {
                var buf: [UInt8] = []
                while true {
                    let d = out.fileHandleForReading.readData(ofLength: 1)
                    if d.isEmpty || d[0] == 0x0a { break }
                    buf.append(d[0])
                }
                c.resume(returning: String(decoding: buf, as: UTF8.self))
            }
        }
        let addr = try Multiaddr(line)
        var cfg = HostConfig()
        cfg.autoIdentify = false
        let host = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        defer { host.close() }
        let peer = try await host.dial(addr)
        XCTAssertEqual(peer.bytes, addr.peerIDBytes)
        let info = try await host.identify(peer)
        XCTAssertTrue(info.agentVersion.hasPrefix("py-libp2p"), info.agentVersion)
        XCTAssertEqual(info.protocolVersion, "ipfs/0.1.0")
        XCTAssertEqual(info.peerID, peer)
        XCTAssertTrue(info.protocols.contains(Protocols.ping))
        for _ in 0..<3 { _ = try await host.ping(peer) }
        // 4 MiB through py-libp2p's echo, intact.
        let s = try await host.openStream(to: peer, protocols: [Protocols.echo])
        let data = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 2654435761) >> 13) }
        let writer = Task { try await s.write(data); try await s.closeWrite() }
        let back = try await s.readToEnd(maxLength: 5 << 20)
        try await writer.value
        XCTAssertEqual(back.count, data.count)
        XCTAssertTrue(back == data)
        let ps = try await host.openStream(to: peer, protocols: [Protocols.perf])
        _ = try await Protocols.perfClient(ps, upload: 8 << 20, download: 8 << 20)
    }

    func testPyLibp2pDialsP2POS() async throws {
        var cfg = HostConfig()
        cfg.servePerf = true
        let host = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
        host.setHandler(Protocols.echo) { s in await Protocols.serveEcho(s) }
        defer { host.close() }
        let addr = try host.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0].withPeerID(host.peerID.bytes)
        let events = host.events()
        let firstConnect = Task { () -> PeerID? in
            for await e in events { if case .connected(let p, _, let outbound) = e, !outbound { return p } }
            return nil
        }
        let line = try await runPy(["dial", addr.description, "--identify", "--pings", "3", "--echo-bytes", String(4 << 20),
                                    "--perf-up", String(8 << 20), "--perf-down", String(8 << 20)])
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
        XCTAssertEqual(obj["ok"] as? Bool, true, line)
        XCTAssertEqual(obj["peer"] as? String, host.peerID.base58)
        let ident = try XCTUnwrap(obj["identify"] as? [String: Any])
        XCTAssertEqual(ident["peer_matches"] as? Bool, true)
        XCTAssertEqual(ident["agent_version"] as? String, "p2pos/0.1.0")
        XCTAssertEqual(obj["echo_ok"] as? Bool, true)
        XCTAssertEqual(obj["perf_ok"] as? Bool, true)
        // The py peer's ID is what it authenticated as in Noise (it reports it; our identify got it too).
        let local = try PeerID(string: try XCTUnwrap(obj["local_peer"] as? String))
        let connected = await firstConnect.value
        XCTAssertEqual(connected, local)
    }
}
