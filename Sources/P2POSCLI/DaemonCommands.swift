import ControlAPI
import DNS
import Foundation
import Identity
import Libp2p
import Membership
import Node
import Support
import Wire

/// Find a daemon that answers on one of the candidate sockets, or fail with exit 3 naming them.
func daemonClient(_ p: ParsedArgs) throws -> ControlClient {
    do {
        return try ControlClient.firstReachable(socketPaths: Paths.socketCandidates(p), connectTimeout: 2, readTimeout: 30)
    } catch let e as ControlClientError {
        throw CLIError(ExitCode.unreachable, "p2pos \(p.commandName): no daemon answered (\(e)); start one with 'p2pos node run' or pass --socket PATH")
    }
}

/// Call a route and return the decoded JSON object, turning API errors into one-line CLI errors.
func callJSON(_ client: ControlClient, _ method: String, _ path: String, body: [UInt8]? = nil, cmd: String) throws -> [String: Any] {
    let r: ControlClientResponse
    do { r = try client.request(method, path, body: body) } catch let e as ControlClientError where e.isNotReachable {
        throw CLIError(ExitCode.unreachable, "p2pos \(cmd): daemon stopped answering (\(e))")
    }
    if let (code, message) = r.apiError {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): \(code): \(message)")
    }
    guard r.status < 300, let obj = r.json as? [String: Any] else {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): unexpected answer (HTTP \(r.status))")
    }
    return obj
}

@Sendable func nodeRunHandler(_ p: ParsedArgs) throws -> Int32 {
    var config: NodeConfig
    var dev = false
    if p.has("--dev") {
        let dir = Paths.explicitDataDir(p) ?? Paths.absolute("p2pos-dev")
        let cfgPath = dir + "/config.json"
        if !FileManager.default.fileExists(atPath: cfgPath) {
            let now = Timestamp.now()
            _ = try createNewSystem(dataDir: dir, configPath: cfgPath, clusterID: "dev-" + Hex.encode(Sodium.randomBytes(3)),
                                    listen: ["127.0.0.1:0"], validTo: now.adding(seconds: 365 * 86400), now: now, force: false)
            Out.err("p2pos node run --dev: created a throwaway one-node system in \(dir)")
        }
        config = try NodeConfig.load(path: cfgPath)
        config.dataDir = dir
        dev = true
    } else {
        config = try Paths.loadConfig(p)
    }
    if let l = LogLevel(name: config.logLevel) { Log.shared.level = l }
    let daemon = try Daemon(config: config)
    // Signal sources before anything starts: a SIGTERM that arrives while the daemon starts (the
    // service manager has been told READY by then) waits in its source and is handled once the
    // main queue runs. Set up after start, a signal in between was ignored and lost, and the
    // node ran on until killed (seen once in CI: test_sd_notify_ready_and_stopping).
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    var sources: [DispatchSourceSignal] = []
    for sig in [SIGTERM, SIGINT] {
        let s = DispatchSource.makeSignalSource(signal: sig, queue: .main)
        s.setEventHandler {
            Log.info("node", "signal", ["signal": sig == SIGTERM ? "SIGTERM" : "SIGINT"])
            daemon.stop()
            exit(0)
        }
        s.resume()
        sources.append(s)
    }
    do { try daemon.start() } catch {
        daemon.stop()
        throw P2POSError("START_FAILED", "\(error)", hint: "check the listen addresses and the data directory")
    }
    if dev {
        let sock = config.socketPath
        Out.print("""
        p2pos dev node \(daemon.peerID) is running (cluster \(daemon.clusterID)).
        Control socket: \(sock)
        Try, in another terminal:
          p2pos status --socket \(sock)
          p2pos id --data-dir \(config.dataDir)
          curl --unix-socket \(sock) http://p2pos/v1/membership
        Stop with Ctrl-C.
        """)
    }
    withExtendedLifetime(sources) { dispatchMain() }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

func ago(_ rfc: String) -> String {
    guard let t = Timestamp(rfc3339: rfc) else { return "-" }
    let s = Timestamp.now().interval(since: t)
    if s < 1 { return "now" }
    if s < 120 { return "\(Int(s))s ago" }
    if s < 7200 { return "\(Int(s / 60))m ago" }
    return "\(Int(s / 3600))h ago"
}

func renderStatus(_ obj: [String: Any]) -> String {
    let n = obj["node"] as? [String: Any] ?? [:]
    var out = "node     \(n["peer_id"] ?? "?")\n"
    out += "cluster  \((n["cluster_id"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? "(none)")\n"
    out += "state    \(n["state"] ?? "?") (\(n["members_online"] ?? 0)/\(n["members_total"] ?? 0) members online)\n"
    let peers = obj["peers"] as? [[String: Any]] ?? []
    out += "\n" + pad("PEER", 54) + pad("STATE", 14) + pad("LAST SEEN", 12) + pad("RTT", 10) + "ADDRESS\n"
    for r in peers {
        let rtt = (r["rtt_ms"] as? Double).map { String(format: "%.2fms", $0) } ?? "-"
        out += pad(r["peer_id"] as? String ?? "?", 54) + pad(r["state"] as? String ?? (r["reachability"] as? String ?? "?"), 14)
        out += pad(ago(r["last_seen_at"] as? String ?? ""), 12) + pad(rtt, 10) + (r["last_remote_addr"] as? String ?? "") + "\n"
    }
    return out
}

@Sendable func statusHandler(_ p: ParsedArgs) throws -> Int32 {
    let client = try daemonClient(p)
    let path = p.has("--cluster") ? "/v1/status?scope=cluster" : "/v1/status"
    repeat {
        let obj = try callJSON(client, "GET", path, cmd: "status")
        if p.json {
            Out.print(Out.json(obj, pretty: !p.has("--watch")))
        } else {
            if p.has("--watch") { Out.print("\u{1b}[H\u{1b}[2J", terminator: "") }
            Out.print(renderStatus(obj), terminator: "")
        }
        if p.has("--watch") { Thread.sleep(forTimeInterval: 2) }
    } while p.has("--watch")
    return ExitCode.success
}

@Sendable func peersHandler(_ p: ParsedArgs) throws -> Int32 {
    let obj = try callJSON(try daemonClient(p), "GET", "/v1/peers", cmd: "peers")
    if p.json { Out.print(Out.json(obj)); return ExitCode.success }
    let peers = obj["peers"] as? [[String: Any]] ?? []
    if peers.isEmpty { Out.print("no connected peers"); return ExitCode.success }
    Out.print(pad("PEER", 54) + pad("MEMBER", 8) + pad("AGENT", 22) + "ADDRESS")
    for r in peers {
        Out.print(pad(r["peer_id"] as? String ?? "?", 54) + pad((r["member"] as? Bool ?? false) ? "yes" : "no", 8)
                  + pad(r["agent"] as? String ?? "", 22) + (r["addr"] as? String ?? ""))
    }
    return ExitCode.success
}

@Sendable func snapshotPublishHandler(_ p: ParsedArgs) throws -> Int32 {
    let cmd = "snapshot publish"
    let modes = [p.value("--members") != nil, !p.all("--add").isEmpty || !p.all("--remove").isEmpty]
    guard modes.filter({ $0 }).count == 1 else { throw CLIError.usage(cmd, "give either --members ID,… or --add/--remove ID") }
    let config = try Paths.loadConfig(p)
    let keyPath = p.value("--admin-key").map(Paths.absolute) ?? config.dataDir + "/keys/admin.key"
    let adminKey: PrivateKey
    do { adminKey = try PrivateKey(base64: try keyFileBase64(keyPath, what: "admin key file", prefer: "ADMIN_PRIV_B64")) } catch let e as KeyError {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): admin key file \(keyPath): \(e)")
    }
    guard let proof = config.adminProof else {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): \(config.path) has no admin_proof; run this on a node created with 'p2pos init --new-system' or add the proof")
    }
    guard proof.peerID == adminKey.peerID.base58 else {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): the admin proof is for \(proof.peerID) but the key in \(keyPath) is \(adminKey.peerID.base58)")
    }
    let cluster = config.clusterID.isEmpty ? proof.clusterID : config.clusterID
    var client: ControlClient? = nil
    var current: MembershipSnapshot? = nil
    if p.value("--to") == nil || p.value("--members") == nil {
        client = try daemonClient(p)
        let obj = try callJSON(client!, "GET", "/v1/membership", cmd: cmd)
        if let s = obj["snapshot"], !(s is NSNull) {
            current = try? MembershipSnapshot.decode(JSONSerialization.data(withJSONObject: s))
        }
    }
    var members: [String]
    if let list = p.value("--members") {
        members = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    } else {
        members = current?.members ?? []
        members += p.all("--add")
        let remove = Set(p.all("--remove"))
        members.removeAll { remove.contains($0) }
    }
    members = MembershipSnapshot.normalize(members)
    guard !members.isEmpty else { throw CLIError.usage(cmd, "the new member list would be empty") }
    for m in members {
        do { _ = try PeerID(string: m) } catch { throw CLIError.usage(cmd, "\"\(m)\" is not a peer ID (\(error))") }
    }
    var now = Timestamp.now()
    if let cur = current?.issuedAtTimestamp, now <= cur {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): this machine's clock (\(now.rfc3339Nano)) is not after the current snapshot's issued_at \(cur.rfc3339Nano); fix the clock")
    }
    now = Timestamp(seconds: now.seconds, nanos: now.nanos / 1000 * 1000)
    let snap = MembershipSnapshot.issue(adminKey: adminKey, clusterID: cluster, members: members, proof: proof, at: now)
    if let to = p.value("--to") {
        let answer = try pushDirect(snap, to: to, identity: adminKey)
        let applied = answer["applied"] as? Bool ?? false
        if p.json { Out.print(Out.json(answer)) }
        guard applied else {
            throw CLIError(ExitCode.failure, "p2pos \(cmd): \(to) rejected the snapshot: \(answer["error"] as? String ?? "unknown reason")")
        }
        if !p.json { Out.print("applied by \(to): snapshot \(snap.issuedAt) with \(members.count) members") }
        return ExitCode.success
    }
    let obj = try callJSON(client!, "POST", "/v1/membership", body: [UInt8](snap.jsonData()), cmd: cmd)
    if p.json { Out.print(Out.json(obj)) } else {
        Out.print("applied: snapshot \(snap.issuedAt) with \(members.count) members, pushed to connected peers")
        for m in members { Out.print("  \(m)") }
    }
    return ExitCode.success
}

/// Push a snapshot straight to a peer over /p2pos/membership-push/1.0.0 with the admin identity.
func pushDirect(_ snap: MembershipSnapshot, to: String, identity: PrivateKey) throws -> [String: Any] {
    let addr: Multiaddr
    do { addr = try Multiaddr(to) } catch { throw CLIError.usage("snapshot publish", "--to \"\(to)\" is not a multiaddr (\(error))") }
    let box = ResultBox()
    let sem = DispatchSemaphore(value: 0)
    Task {
        do {
            var hc = HostConfig()
            hc.autoIdentify = false
            let host = try Libp2pHost(identity: identity, config: hc)
            defer { host.close() }
            let peer = try await host.dial(addr)
            let s = try await host.openStream(to: peer, protocols: ["/p2pos/membership-push/1.0.0"])
            var line = [UInt8](snap.jsonData()); line.append(0x0a)
            try await s.write(line)
            try await s.closeWrite()
            let reply = try await s.readLine(maxLength: 65536) ?? ""
            await s.close()
            box.set(.success(reply))
        } catch {
            box.set(.failure(error))
        }
        sem.signal()
    }
    if sem.wait(timeout: .now() + 20) == .timedOut { throw CLIError(ExitCode.failure, "p2pos snapshot publish: \(to) did not answer within 20s") }
    switch box.get()! {
    case .success(let line):
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CLIError(ExitCode.failure, "p2pos snapshot publish: \(to) sent an unreadable answer")
        }
        return o
    case .failure(let e):
        throw CLIError(ExitCode.failure, "p2pos snapshot publish: cannot push to \(to): \(e)")
    }
}

/// A thread-safe slot for passing a result out of a Task to a blocked thread.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<String, Error>?
    func set(_ v: Result<String, Error>) { lock.lock(); value = v; lock.unlock() }
    func get() -> Result<String, Error>? { lock.lock(); defer { lock.unlock() }; return value }
}

@Sendable func snapshotPushHandler(_ p: ParsedArgs) throws -> Int32 {
    let cmd = "snapshot push"
    let src = p.positionals.first ?? "-"
    let data: Data
    if src == "-" { data = FileHandle.standardInput.readDataToEndOfFile() } else {
        guard let d = FileManager.default.contents(atPath: src) else { throw CLIError(ExitCode.failure, "p2pos \(cmd): cannot read \(src)") }
        data = d
    }
    let snap: MembershipSnapshot
    do { snap = try MembershipSnapshot.decode(data) } catch {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): \(src) is not a membership snapshot: \(error)")
    }
    if let to = p.value("--to") {
        let answer = try pushDirect(snap, to: to, identity: PrivateKey.generate())
        if p.json { Out.print(Out.json(answer, pretty: false)) }
        guard answer["applied"] as? Bool == true else {
            throw CLIError(ExitCode.failure, "p2pos \(cmd): \(to) rejected the snapshot: \(answer["error"] as? String ?? "unknown reason")")
        }
        if !p.json { Out.print("applied by \(to)") }
        return ExitCode.success
    }
    let obj = try callJSON(try daemonClient(p), "POST", "/v1/membership", body: [UInt8](data), cmd: cmd)
    Out.print(p.json ? Out.json(obj, pretty: false) : "applied: snapshot \(snap.issuedAt)")
    return ExitCode.success
}

@Sendable func dnsResolveHandler(_ p: ParsedArgs) throws -> Int32 {
    let domain = p.positionals[0]
    do {
        let r = try DNSTool.resolve(domain: domain, server: p.value("--server"))
        Out.print(p.json ? DNSTool.formatJSON(r) : DNSTool.formatHuman(r), terminator: p.json ? "\n" : "")
        return ExitCode.success
    } catch let e as DNSError {
        if p.json { Out.print(DNSTool.formatJSONError(e)) }
        throw CLIError(ExitCode.failure, "p2pos dns resolve: \(e)")
    }
}
