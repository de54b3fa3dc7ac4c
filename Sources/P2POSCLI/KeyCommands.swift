import Foundation
import Identity
import Membership
import Node
import Support
import Wire

let keygenCommand = CommandSpec(
    ["keygen"], "generate node, system and admin keys",
    details: "Prints KEY=VALUE lines with the Go P2POS names (NODE_PRIV_B64, NODE_PEER_ID, NODE_PEER_CID36, and with --new-system SYSTEM_PRIV_B64, SYSTEM_PUB_B64, ADMIN_PRIV_B64, ADMIN_PEER_ID, ADMIN_PEER_CID36 and the ADMIN_PROOF_* fields), so installer scripts can source them.",
    options: [
        OptionSpec("--new-system", "also generate a system key, an admin key and an admin proof"),
        OptionSpec("--cluster-id", value: "ID", "cluster of the admin proof (default: a random p2pos-… id)"),
        OptionSpec("--admin-valid-to", value: "TIME", "end of the admin proof: RFC 3339 time or a duration like 8760h (default 8760h)"),
        OptionSpec("--node-priv", value: "B64", "use this node key instead of generating one"),
        OptionSpec("--out", value: "FILE", "write to FILE (mode 0600) instead of stdout", complete: ["file"]),
        Common.force, Common.json,
    ],
    examples: ["p2pos keygen --new-system --cluster-id prod > keys.env"],
    handler: keygen)

let initCommand = CommandSpec(
    ["init"], "create a node: a new system or a node that joins one",
    details: "--new-system writes config.json, the node key, the system and admin keys (separate 0600 files), an admin proof and a first membership snapshot listing this node, then prints the _dnsaddr TXT records to publish and an admin bundle. --join writes the node identity and config only and prints the command an admin runs to let it in. Existing keys are never replaced without --force. Asks interactively only on a terminal.",
    options: [
        OptionSpec("--new-system", "create a new system with this node as its first member"),
        OptionSpec("--join", "create a node that joins an existing system"),
        OptionSpec("--cluster-id", value: "ID", "cluster id (new system: default random; join: learned from the first snapshot if omitted)"),
        OptionSpec("--system-pubkey", value: "KEY", "system public key of the system to join (SYSTEM_PUB_B64)"),
        OptionSpec("--bootstrap", value: "ADDR", "bootstrap multiaddr or dns:DOMAIN", repeatable: true),
        OptionSpec("--listen", value: "HOST:PORT", "listen address (default 0.0.0.0:4100 and [::]:4100)", repeatable: true),
        OptionSpec("--admin-valid-to", value: "TIME", "end of the admin proof (RFC 3339 or duration, default 8760h)"),
        Common.dataDir, Common.config, Common.force, Common.json,
    ],
    examples: ["p2pos init --new-system --cluster-id prod --data-dir /var/lib/p2pos",
               "p2pos init --join --system-pubkey CAESI... --bootstrap dns:example.org"],
    handler: initHandler)

let idCommand = CommandSpec(
    ["id"], "print this node's peer ID",
    options: [Common.config, Common.dataDir, Common.json],
    handler: { p in
        let c = try Paths.loadConfig(p)
        let key = try c.nodeKey()
        if p.json {
            Out.print(Out.json(["peer_id": key.peerID.base58, "peer_cid": key.peerID.cidBase36,
                                "public_key": key.publicKey.base64, "cluster_id": c.clusterID], pretty: false))
        } else {
            Out.print(key.peerID.base58)
            Out.print(key.peerID.cidBase36)
        }
        return ExitCode.success
    })

/// Parse an RFC 3339 time or a duration from now.
func parseTimeOrDuration(_ text: String, cmd: String, flag: String, now: Timestamp) throws -> Timestamp {
    if let t = Timestamp(rfc3339: text) { return t }
    var t = text
    var mult = 1.0
    if t.hasSuffix("d") { t.removeLast(); mult = 86400 }
    if let d = (mult == 1 ? parseDuration(t) : Double(t).map { $0 * mult }), d > 0 {
        return now.adding(seconds: Int64(d))
    }
    throw CLIError.usage(cmd, "\(flag) must be an RFC 3339 time or a duration like 8760h, got \"\(text)\"")
}

func randomClusterID() -> String { "p2pos-" + Hex.encode(Sodium.randomBytes(4)) }

func validateClusterID(_ id: String, cmd: String) throws {
    guard !id.isEmpty, id.count <= 128, !id.contains("|"),
          id.unicodeScalars.allSatisfy({ $0.value > 32 && $0.value < 127 }) else {
        throw CLIError.usage(cmd, "--cluster-id must be 1–128 printable ASCII characters without spaces or '|'")
    }
}

/// System material of a new system.
struct NewSystem {
    let clusterID: String
    let system: PrivateKey
    let admin: PrivateKey
    let proof: AdminProof

    static func make(clusterID: String, validTo: Timestamp, now: Timestamp) -> NewSystem {
        let system = PrivateKey.generate()
        let admin = PrivateKey.generate()
        let proof = AdminProof.issue(systemKey: system, clusterID: clusterID, peerID: admin.peerID.base58,
                                     validFrom: Timestamp(seconds: now.seconds), validTo: Timestamp(seconds: validTo.seconds))
        return NewSystem(clusterID: clusterID, system: system, admin: admin, proof: proof)
    }
}

@Sendable func keygen(_ p: ParsedArgs) throws -> Int32 {
    let now = Timestamp.now()
    let node: PrivateKey
    if let b = p.value("--node-priv") {
        do { node = try PrivateKey(base64: b) } catch { throw CLIError.usage("keygen", "--node-priv: \(error)") }
    } else {
        node = PrivateKey.generate()
    }
    var pairs: [(String, String)] = [
        ("NODE_PRIV_B64", node.base64), ("NODE_PEER_ID", node.peerID.base58), ("NODE_PEER_CID36", node.peerID.cidBase36),
    ]
    if p.has("--new-system") {
        let cluster = p.value("--cluster-id") ?? randomClusterID()
        try validateClusterID(cluster, cmd: "keygen")
        let validTo = try parseTimeOrDuration(p.value("--admin-valid-to") ?? "8760h", cmd: "keygen", flag: "--admin-valid-to", now: now)
        guard validTo > now else { throw CLIError.usage("keygen", "--admin-valid-to is in the past") }
        let sys = NewSystem.make(clusterID: cluster, validTo: validTo, now: now)
        pairs += [
            ("SYSTEM_PRIV_B64", sys.system.base64), ("SYSTEM_PUB_B64", sys.system.publicKey.base64),
            ("ADMIN_PRIV_B64", sys.admin.base64), ("ADMIN_PEER_ID", sys.admin.peerID.base58), ("ADMIN_PEER_CID36", sys.admin.peerID.cidBase36),
            ("ADMIN_PROOF_CLUSTER_ID", sys.proof.clusterID), ("ADMIN_PROOF_PEER_ID", sys.proof.peerID), ("ADMIN_PROOF_ROLE", sys.proof.role),
            ("ADMIN_PROOF_VALID_FROM", sys.proof.validFrom), ("ADMIN_PROOF_VALID_TO", sys.proof.validTo), ("ADMIN_PROOF_SIG", sys.proof.sig),
        ]
    } else if p.value("--cluster-id") != nil || p.value("--admin-valid-to") != nil {
        throw CLIError.usage("keygen", "--cluster-id and --admin-valid-to need --new-system")
    }
    let text: String
    if p.json {
        var o: [String: String] = [:]
        for (k, v) in pairs { o[k] = v }
        text = Out.json(o) + "\n"
    } else {
        text = pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "\n") + "\n"
    }
    if let out = p.value("--out") {
        try SecureFile.write(Paths.absolute(out), text, overwrite: p.has("--force"))
        Out.err("p2pos keygen: wrote \(out) (mode 0600); it holds private keys")
    } else {
        Out.print(text, terminator: "")
    }
    return ExitCode.success
}

/// Ask a question on the terminal; nil when stdin is not a TTY.
func prompt(_ question: String, default d: String = "") -> String? {
    guard isatty(0) != 0 else { return nil }
    FileHandle.standardError.write((question + (d.isEmpty ? ": " : " [\(d)]: ")).data(using: .utf8)!)
    guard let line = readLine() else { return nil }
    let t = line.trimmingCharacters(in: .whitespaces)
    return t.isEmpty ? d : t
}

@Sendable func initHandler(_ p: ParsedArgs) throws -> Int32 {
    var mode: String
    if p.has("--new-system") && p.has("--join") { throw CLIError.usage("init", "choose one of --new-system and --join") }
    if p.has("--new-system") { mode = "new" } else if p.has("--join") { mode = "join" } else {
        guard let a = prompt("Create a new system or join an existing one? (new/join)", default: "new") else {
            throw CLIError.usage("init", "pass --new-system or --join (no terminal to ask on)")
        }
        mode = a.lowercased().hasPrefix("j") ? "join" : "new"
    }
    let dataDir = Paths.explicitDataDir(p) ?? (Paths.explicitConfig(p).map { ($0 as NSString).deletingLastPathComponent } ?? Paths.defaultDataDir())
    let configPath = Paths.explicitConfig(p) ?? dataDir + "/config.json"
    var listen = p.all("--listen")
    for l in listen where HostPort.parse(l) == nil {
        throw CLIError.usage("init", "--listen \"\(l)\" is not host:port (e.g. 0.0.0.0:4100 or [::]:4100)")
    }
    if listen.isEmpty { listen = NodeConfig.defaultListen }
    let now = Timestamp.now()
    let force = p.has("--force")
    let keysDir = dataDir + "/keys"
    let existing = [configPath, keysDir + "/system.key", keysDir + "/admin.key"].filter { FileManager.default.fileExists(atPath: $0) }
    if !existing.isEmpty && !force {
        throw CLIError(ExitCode.failure, "p2pos init: \(existing[0]) already exists; refusing to overwrite keys (pass --force to replace them)")
    }
    if mode == "new" {
        var cluster = p.value("--cluster-id") ?? ""
        if cluster.isEmpty { cluster = prompt("Cluster id", default: randomClusterID()) ?? randomClusterID() }
        try validateClusterID(cluster, cmd: "init")
        let validTo = try parseTimeOrDuration(p.value("--admin-valid-to") ?? "8760h", cmd: "init", flag: "--admin-valid-to", now: now)
        guard validTo > now else { throw CLIError.usage("init", "--admin-valid-to is in the past") }
        if p.value("--system-pubkey") != nil || !p.all("--bootstrap").isEmpty {
            throw CLIError.usage("init", "--system-pubkey and --bootstrap are for --join")
        }
        let result = try createNewSystem(dataDir: dataDir, configPath: configPath, clusterID: cluster, listen: listen, validTo: validTo, now: now, force: force)
        if p.json {
            Out.print(Out.json(result.json))
        } else {
            Out.print(result.human, terminator: "")
        }
        return ExitCode.success
    }
    // join
    var sysKey = p.value("--system-pubkey") ?? ""
    if sysKey.isEmpty { sysKey = prompt("System public key (SYSTEM_PUB_B64)") ?? "" }
    guard !sysKey.isEmpty else { throw CLIError.usage("init", "--join needs --system-pubkey KEY") }
    do { _ = try PublicKey(base64: sysKey) } catch { throw CLIError.usage("init", "--system-pubkey: \(error)") }
    var boots = p.all("--bootstrap")
    if boots.isEmpty, let b = prompt("Bootstrap address (multiaddr or dns:DOMAIN)") , !b.isEmpty { boots = [b] }
    guard !boots.isEmpty else { throw CLIError.usage("init", "--join needs at least one --bootstrap ADDR or dns:DOMAIN") }
    var conns: [InitConnection] = []
    for b in boots {
        if b.hasPrefix("dns:") {
            let d = String(b.dropFirst(4))
            guard !d.isEmpty, !d.contains("/") else { throw CLIError.usage("init", "--bootstrap \"\(b)\": expected dns:DOMAIN") }
            conns.append(InitConnection(type: .dns, address: d))
        } else if b.hasPrefix("/") {
            conns.append(InitConnection(type: .multiaddr, address: b))
        } else {
            throw CLIError.usage("init", "--bootstrap \"\(b)\" is neither a multiaddr (/ip4/…) nor dns:DOMAIN")
        }
    }
    let cluster = p.value("--cluster-id") ?? ""
    if !cluster.isEmpty { try validateClusterID(cluster, cmd: "init") }
    if p.has("--admin-valid-to") { throw CLIError.usage("init", "--admin-valid-to is for --new-system") }
    let node = PrivateKey.generate()
    var c = NodeConfig()
    c.clusterID = cluster
    c.systemPubkey = sysKey
    c.initConnections = conns
    c.listen = listen
    c.nodePrivateKey = node.base64
    c.dataDir = dataDir
    try SecureFile.makeDirectory(dataDir)
    try SecureFile.write(configPath, c.jsonText(), overwrite: force)
    let publish = "p2pos snapshot publish --add \(node.peerID.base58)"
    if p.json {
        Out.print(Out.json(["peer_id": node.peerID.base58, "peer_cid": node.peerID.cidBase36, "config": configPath,
                            "data_dir": dataDir, "admin_command": publish]))
    } else {
        Out.print("""
        Created a node that joins \(cluster.isEmpty ? "the system" : "cluster \"\(cluster)\"") in \(dataDir)
          peer id: \(node.peerID.base58)
          config:  \(configPath)

        Ask an admin to let it in by running, on a machine with the admin key:
          \(publish)

        Then start it:
          p2pos node run --data-dir \(dataDir)
        """)
    }
    return ExitCode.success
}

struct InitResult {
    var json: [String: Any]
    var human: String
}

/// Local interface addresses for a wildcard listen host (0.0.0.0 / ::).
func interfaceAddresses(ipv6: Bool) -> [String] {
    var out: [String] = []
    var ifap: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&ifap) == 0, let first = ifap else { return out }
    defer { freeifaddrs(ifap) }
    var p: UnsafeMutablePointer<ifaddrs>? = first
    while let cur = p {
        defer { p = cur.pointee.ifa_next }
        guard let sa = cur.pointee.ifa_addr else { continue }
        let flags = Int32(cur.pointee.ifa_flags)
        if flags & Int32(IFF_LOOPBACK) != 0 || flags & Int32(IFF_UP) == 0 { continue }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        if !ipv6 && sa.pointee.sa_family == UInt16(AF_INET) {
            getnameinfo(sa, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
        } else if ipv6 && sa.pointee.sa_family == UInt16(AF_INET6) {
            getnameinfo(sa, socklen_t(MemoryLayout<sockaddr_in6>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
        } else { continue }
        let s = String(decoding: host.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasPrefix("fe80") || s.contains("%") { continue }
        if !out.contains(s) { out.append(s) }
    }
    return out
}

/// Multiaddrs (with /p2p/) others can dial for these listen addresses.
func advertisedAddrs(listen: [String], peer: String) -> [String] {
    var out: [String] = []
    for l in listen {
        guard let hp = HostPort.parse(l) else { continue }
        var hosts = [hp.host]
        if hp.host == "0.0.0.0" { hosts = interfaceAddresses(ipv6: false) }
        if hp.host == "::" { hosts = interfaceAddresses(ipv6: true) }
        for h in hosts {
            let a = HostPort(host: h, port: hp.port).multiaddr + "/p2p/\(peer)"
            if !out.contains(a) { out.append(a) }
        }
    }
    return out
}

func createNewSystem(dataDir: String, configPath: String, clusterID: String, listen: [String], validTo: Timestamp, now: Timestamp, force: Bool) throws -> InitResult {
    let node = PrivateKey.generate()
    let sys = NewSystem.make(clusterID: clusterID, validTo: validTo, now: now)
    let snapshot = MembershipSnapshot.issue(adminKey: sys.admin, clusterID: clusterID, members: [node.peerID.base58], proof: sys.proof, at: now)
    var c = NodeConfig()
    c.clusterID = clusterID
    c.systemPubkey = sys.system.publicKey.base64
    c.adminProof = sys.proof
    c.nodePrivateKey = node.base64
    c.listen = listen
    c.dataDir = dataDir
    let keysDir = dataDir + "/keys"
    try SecureFile.makeDirectory(dataDir)
    try SecureFile.makeDirectory(keysDir)
    try SecureFile.write(keysDir + "/system.key", sys.system.base64 + "\n", overwrite: force)
    try SecureFile.write(keysDir + "/admin.key", sys.admin.base64 + "\n", overwrite: force)
    try SecureFile.write(dataDir + "/membership.json", String(decoding: snapshot.jsonData(pretty: true), as: UTF8.self) + "\n", overwrite: true, mode: 0o644)
    try SecureFile.write(configPath, c.jsonText(), overwrite: force)
    try Consensus.writeGenesisLog(dataDir: dataDir, selfID: node.peerID.base58)
    let addrs = advertisedAddrs(listen: listen, peer: node.peerID.base58)
    let txt = addrs.map { "dnsaddr=\($0)" }
    let bundleObj: [String: Any] = ["v": 1, "cluster_id": clusterID, "bootstrap": addrs, "admin_priv": sys.admin.base64,
                                    "admin_proof": ["cluster_id": sys.proof.clusterID, "peer_id": sys.proof.peerID, "role": sys.proof.role,
                                                    "valid_from": sys.proof.validFrom, "valid_to": sys.proof.validTo, "sig": sys.proof.sig]]
    let bundle = "p2pos-admin://" + Base64.encode(Array(Out.json(bundleObj, pretty: false).utf8))
    var h = """
    Created a new p2pos system "\(clusterID)" in \(dataDir)
      node peer id:   \(node.peerID.base58)
      system pubkey:  \(sys.system.publicKey.base64)
      config:         \(configPath)
      system key:     \(keysDir)/system.key
      admin key:      \(keysDir)/admin.key

    WARNING: system.key and admin.key control the whole cluster. Copy them to offline
    storage and remove them from this machine once you have admitted the members you need.

    Publish these TXT records at _dnsaddr.<your domain> so nodes can bootstrap:

    """
    h += txt.isEmpty ? "  (no routable listen address found; add --listen HOST:PORT)\n" : txt.map { "  \($0)\n" }.joined()
    h += """

    Admin bundle (secret; it holds the admin key):
      \(bundle)

    Start the node:
      p2pos node run --data-dir \(dataDir)
    Let another node in (after it ran 'p2pos init --join --system-pubkey \(sys.system.publicKey.base64) --bootstrap …'):
      p2pos snapshot publish --data-dir \(dataDir) --add <its peer id>

    """
    let json: [String: Any] = [
        "cluster_id": clusterID, "data_dir": dataDir, "config": configPath, "peer_id": node.peerID.base58,
        "peer_cid": node.peerID.cidBase36, "system_pubkey": sys.system.publicKey.base64,
        "system_key_file": keysDir + "/system.key", "admin_key_file": keysDir + "/admin.key",
        "admin_peer_id": sys.admin.peerID.base58, "dnsaddr_txt": txt, "admin_bundle": bundle,
    ]
    return InitResult(json: json, human: h)
}
