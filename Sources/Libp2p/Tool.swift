import Foundation
import Glibc
import Identity
import Support
import Wire

/// Command implementations behind `p2pos ping`, `p2pos debug listen|dial` and `p2pos bench net`.
/// They return a process exit code and write through the given output closures (libraries never print).
public enum Libp2pTool {
    public typealias Output = @Sendable (String) -> Void

    final class Box<T>: @unchecked Sendable { var value: T?; init() {} }

    /// Run async work from synchronous CLI code.
    static func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let box = Box<T>()
        let sem = DispatchSemaphore(value: 0)
        Task.detached {
            box.value = await body()
            sem.signal()
        }
        sem.wait()
        return box.value!
    }

    static func loadKey(_ keyBase64: String?) throws -> PrivateKey {
        guard let k = keyBase64, !k.isEmpty else { return PrivateKey.generate() }
        do { return try PrivateKey(base64: k) } catch {
            throw P2POSError("KEY_INVALID", "private key is not a base64 libp2p protobuf Ed25519 key: \(error)", hint: "generate one with `p2pos keygen`")
        }
    }

    static func fmtMs(_ s: Double) -> String { String(format: "%.3f", s * 1000) }

    /// `p2pos ping MULTIADDR [-n COUNT] [--key FILE]`: ping(8)-like output; 0 when every ping was answered.
    public static func runPing(multiaddr: String, count: Int = 4, keyBase64: String? = nil, interval: Double = 1.0,
                               output: @escaping Output, errorOutput: @escaping Output) -> Int32 {
        runBlocking {
            do {
                let addr = try Multiaddr(multiaddr)
                var cfg = HostConfig()
                cfg.autoIdentify = false
                let host = try Libp2pHost(identity: try loadKey(keyBase64), config: cfg)
                defer { host.close() }
                let peer = try await host.dial(addr)
                output("PING \(addr.withoutPeerID) (\(peer)): 32 data bytes")
                let s = try await host.openStream(to: peer, protocols: [Protocols.ping])
                var rtts: [Double] = []
                var sent = 0
                for seq in 1...max(1, count) {
                    sent += 1
                    do {
                        let rtt = try await Protocols.pingOnce(s)
                        rtts.append(rtt)
                        output("32 bytes from \(peer): seq=\(seq) time=\(fmtMs(rtt)) ms")
                    } catch {
                        errorOutput("ping: seq=\(seq) failed: \(error)")
                        break
                    }
                    if seq < count && interval > 0 { try? await Task.sleep(nanoseconds: UInt64(interval * 1e9)) }
                }
                await s.close()
                output("--- \(peer) ping statistics ---")
                let loss = sent == 0 ? 0 : 100 * (sent - rtts.count) / sent
                output("\(sent) pings transmitted, \(rtts.count) received, \(loss)% packet loss")
                if !rtts.isEmpty {
                    let avg = rtts.reduce(0, +) / Double(rtts.count)
                    output("rtt min/avg/max = \(fmtMs(rtts.min()!))/\(fmtMs(avg))/\(fmtMs(rtts.max()!)) ms")
                }
                return rtts.count == sent ? 0 : 1
            } catch {
                errorOutput("p2pos ping: \(error)")
                return 1
            }
        }
    }

    /// Block until SIGTERM or SIGINT.
    static func waitForTermination() {
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let sem = DispatchSemaphore(value: 0)
        let q = DispatchQueue(label: "p2pos.signals")
        let sources = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: q)
            s.setEventHandler { sem.signal() }
            s.resume()
            return s
        }
        sem.wait()
        for s in sources { s.cancel() }
    }

    /// `p2pos debug listen --listen ADDR… [--echo] [--perf] [--key-b64 K]`: prints each listen
    /// multiaddr with `/p2p/<id>` (one per line), then serves until SIGTERM/SIGINT.
    public static func runListen(listen: [String], echo: Bool, perf: Bool, keyBase64: String? = nil,
                                 printReady: @escaping Output, errorOutput: @escaping Output) -> Int32 {
        do {
            var cfg = HostConfig()
            cfg.servePerf = perf
            let host = try Libp2pHost(identity: try loadKey(keyBase64), config: cfg)
            if echo { host.setHandler(Protocols.echo) { s in await Protocols.serveEcho(s) } }
            let addrs = try (listen.isEmpty ? ["/ip4/127.0.0.1/tcp/0"] : listen).map { try Multiaddr($0) }
            let bound = try host.listen(addrs)
            for b in bound.flatMap({ Sock.expandUnspecified($0) }) { printReady(b.withPeerID(host.peerID.bytes).description) }
            waitForTermination()
            host.close()
            return 0
        } catch {
            errorOutput("p2pos debug listen: \(error)")
            return 1
        }
    }

    static func json(_ obj: [String: Any]) -> String {
        guard let d = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: d, as: UTF8.self)
    }

    /// `p2pos debug dial MULTIADDR [--identify] [--ping N] [--echo-bytes N] [--perf-upload N] [--perf-download N] [--key-b64 K]`:
    /// connects, runs the requested exchanges and prints one JSON object with the results.
    public static func runDebugDial(multiaddr: String, keyBase64: String? = nil, identify: Bool = true, pings: Int = 1,
                                    echoBytes: Int = 0, perfUpload: UInt64 = 0, perfDownload: UInt64 = 0,
                                    output: @escaping Output, errorOutput: @escaping Output) -> Int32 {
        runBlocking {
            var result: [String: Any] = [:]
            do {
                let addr = try Multiaddr(multiaddr)
                var cfg = HostConfig()
                cfg.autoIdentify = false
                let host = try Libp2pHost(identity: try loadKey(keyBase64), config: cfg)
                defer { host.close() }
                result["local_peer"] = host.peerID.base58
                let peer = try await host.dial(addr)
                result["peer"] = peer.base58
                if identify {
                    let info = try await host.identify(peer)
                    result["identify"] = [
                        "protocol_version": info.protocolVersion, "agent_version": info.agentVersion,
                        "protocols": info.protocols, "listen_addrs": info.listenAddrs.map { $0.description },
                        "observed_addr": info.observedAddr?.description ?? "",
                        "peer_matches": info.peerID == peer,
                    ] as [String: Any]
                }
                if pings > 0 {
                    let s = try await host.openStream(to: peer, protocols: [Protocols.ping])
                    var rtts: [Double] = []
                    for _ in 0..<pings { rtts.append(try await Protocols.pingOnce(s) * 1000) }
                    await s.close()
                    result["ping_ms"] = rtts
                }
                if echoBytes > 0 {
                    let s = try await host.openStream(to: peer, protocols: [Protocols.echo])
                    var data = [UInt8](repeating: 0, count: echoBytes)
                    for i in 0..<echoBytes { data[i] = UInt8(truncatingIfNeeded: (i &* 2654435761) >> 13) }
                    let payload = data
                    let t0 = Monotonic.nanos()
                    let writer = Task { try await s.write(payload); try await s.closeWrite() }
                    let back = try await s.readToEnd(maxLength: echoBytes + 1)
                    try await writer.value
                    result["echo_bytes"] = back.count
                    result["echo_ok"] = back == data
                    result["echo_sha256"] = SHA256.hex(back)
                    result["echo_seconds"] = Double(Monotonic.nanos() - t0) / 1e9
                }
                if perfUpload > 0 || perfDownload > 0 {
                    let s = try await host.openStream(to: peer, protocols: [Protocols.perf])
                    let (up, down) = try await Protocols.perfClient(s, upload: perfUpload, download: perfDownload)
                    result["perf_upload_seconds"] = up
                    result["perf_download_seconds"] = down
                }
                result["ok"] = true
                output(json(result))
                return 0
            } catch {
                result["ok"] = false
                result["error"] = "\(error)"
                output(json(result))
                errorOutput("p2pos debug dial: \(error)")
                return 1
            }
        }
    }
}
