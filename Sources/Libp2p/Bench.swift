import Foundation
import Glibc
import Identity
import Support
import Wire

extension Libp2pTool {
    /// Latency percentiles of a sample, in milliseconds.
    static func percentiles(_ samples: [Double]) -> (p50: Double, p95: Double, p99: Double, max: Double) {
        let s = samples.sorted()
        func at(_ q: Double) -> Double { s[min(s.count - 1, Int((Double(s.count) * q).rounded(.up)) - 1)] * 1000 }
        return (at(0.50), at(0.95), at(0.99), (s.last ?? 0) * 1000)
    }

    /// Sequential request/response round trips of `size` bytes on one echo stream.
    static func benchRoundTrips(_ host: Libp2pHost, _ peer: PeerID, count: Int, size: Int) async throws -> [Double] {
        let s = try await host.openStream(to: peer, protocols: [Protocols.echo])
        let msg = [UInt8](repeating: 0x5a, count: size)
        for _ in 0..<20 { try await s.write(msg); _ = try await s.readExactly(size) }  // warm-up
        var rtts: [Double] = []
        rtts.reserveCapacity(count)
        for _ in 0..<count {
            let t0 = Monotonic.nanos()
            try await s.write(msg)
            _ = try await s.readExactly(size)
            rtts.append(Double(Monotonic.nanos() - t0) / 1e9)
        }
        try await s.closeWrite()
        await s.close()
        return rtts
    }

    static func benchPerf(_ host: Libp2pHost, _ peer: PeerID, bytes: UInt64) async throws -> (up: Double, down: Double) {
        let s1 = try await host.openStream(to: peer, protocols: [Protocols.perf])
        let (up, _) = try await Protocols.perfClient(s1, upload: bytes, download: 0)
        let s2 = try await host.openStream(to: peer, protocols: [Protocols.perf])
        let (_, down) = try await Protocols.perfClient(s2, upload: 0, download: bytes)
        return (up, down)
    }

    static func gbit(_ bytes: UInt64, _ seconds: Double) -> String {
        String(format: "%.2f Gbit/s", Double(bytes) * 8 / seconds / 1e9)
    }

    static func runSuite(_ label: String, _ host: Libp2pHost, _ peer: PeerID, roundTrips: Int, perfBytes: UInt64, output: Output) async throws {
        let rtts = try await benchRoundTrips(host, peer, count: roundTrips, size: 256)
        let p = percentiles(rtts)
        output(String(format: "%@ rr256 n=%d p50=%.3fms p95=%.3fms p99=%.3fms max=%.3fms", label, roundTrips, p.p50, p.p95, p.p99, p.max))
        let (up, down) = try await benchPerf(host, peer, bytes: perfBytes)
        output("\(label) perf bytes=\(perfBytes) upload=\(gbit(perfBytes, up)) (\(String(format: "%.2f", up))s) download=\(gbit(perfBytes, down)) (\(String(format: "%.2f", down))s)")
    }

    /// `p2pos bench net [--compare py-libp2p]`: 1,000 sequential 256-byte round trips (p50/p95/p99/max)
    /// and a 1 GiB /perf upload and download between two p2pos hosts on loopback (one process, one loop each).
    /// With `compare == "py-libp2p"`, the same against a py-libp2p peer (64 MiB perf), started with the
    /// interpreter in `P2POS_PYTHON` (default `.venv/bin/python`) and the script in `P2POS_PY_PEER`
    /// (default `tests/interop/py_peer.py`).
    /// With `target` (a `p2pos debug listen --echo --perf` address), the p2pos figures are measured
    /// against that process instead of an in-process host.
    public static func runBenchNet(compare: String? = nil, target: String? = nil, roundTrips: Int = 1000, perfBytes: UInt64 = 1 << 30,
                                   output: @escaping Output, errorOutput: @escaping Output) -> Int32 {
        if let c = compare, c != "py-libp2p" {
            errorOutput("p2pos bench net: --compare supports only py-libp2p")
            return 2
        }
        return runBlocking {
            do {
                var cfg = HostConfig()
                cfg.servePerf = true
                cfg.autoIdentify = false
                let server = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
                server.setHandler(Protocols.echo) { s in await Protocols.serveEcho(s) }
                let client = try Libp2pHost(identity: PrivateKey.generate(), config: cfg)
                defer { server.close(); client.close() }
                let peer: PeerID
                if let t = target {
                    peer = try await client.dial(try Multiaddr(t))
                    output("p2pos -> p2pos process at \(t), Noise+Yamux")
                } else {
                    let addr = try server.listen([try Multiaddr("/ip4/127.0.0.1/tcp/0")])[0]
                    peer = try await client.dial(addr.withPeerID(server.peerID.bytes))
                    output("p2pos<->p2pos loopback, Noise+Yamux, one event loop per host, one process")
                }
                try await runSuite("p2pos", client, peer, roundTrips: roundTrips, perfBytes: perfBytes, output: output)
                if compare == "py-libp2p" {
                    try await comparePy(client, roundTrips: roundTrips, output: output)
                }
                return 0
            } catch {
                errorOutput("p2pos bench net: \(error)")
                return 1
            }
        }
    }

    static func comparePy(_ client: Libp2pHost, roundTrips: Int, output: @escaping Output) async throws {
        let env = ProcessInfo.processInfo.environment
        let python = env["P2POS_PYTHON"] ?? ".venv/bin/python"
        let script = env["P2POS_PY_PEER"] ?? "tests/interop/py_peer.py"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script, "listen"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        defer {
            // Foundation's waitUntilExit needs a run loop; poll instead.
            p.terminate()
            for _ in 0..<100 where p.isRunning { usleep(50_000) }
        }
        let line: String = await withCheckedContinuation { c in
            DispatchQueue.global().async {
                var buf: [UInt8] = []
                let fh = pipe.fileHandleForReading
                while true {
                    let d = fh.readData(ofLength: 1)
                    if d.isEmpty || d[0] == 0x0a { break }
                    buf.append(d[0])
                }
                c.resume(returning: String(decoding: buf, as: UTF8.self))
            }
        }
        let addr = try Multiaddr(line.trimmingCharacters(in: .whitespaces))
        let peer = try await client.dial(addr)
        output("p2pos->py-libp2p (\(line))")
        try await runSuite("py-libp2p", client, peer, roundTrips: roundTrips, perfBytes: 64 << 20, output: output)
    }
}
