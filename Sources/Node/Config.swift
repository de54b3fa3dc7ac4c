import Foundation
import Identity
import Membership
import Support
import Wire

/// One `init_connections` entry: a DNS name to resolve or a multiaddr to dial.
public struct InitConnection: Equatable, Sendable {
    public enum Kind: String, Sendable { case dns, multiaddr }
    public var type: Kind
    public var address: String
    public init(type: Kind, address: String) { self.type = type; self.address = address }
}

/// The node's configuration: Go P2POS `config.json` fields plus this project's additions.
public struct NodeConfig: Sendable {
    public var initConnections: [InitConnection] = []
    public var listen: [String] = NodeConfig.defaultListen
    public var networkMode: String = "auto"
    public var clusterID: String = ""
    public var systemPubkey: String = ""
    public var adminProof: AdminProof? = nil
    public var nodePrivateKey: String = ""
    public var dataDir: String = ""
    public var apiSocket: String = ""
    public var apiListen: String = ""
    /// Control API connections served at once (`api.max_connections`).
    public var apiMaxConnections: Int = NodeConfig.defaultAPIMaxConnections
    public var raftMaxVoters: Int = 5
    public var raftElectionTimeoutMs: Int = 1000
    public var raftHeartbeatMs: Int = 100
    /// Applied entries between Raft snapshots (log compaction).
    public var raftSnapshotEntries: Int = 8192
    public var heartbeatInterval: Double = 30
    public var heartbeatWindow: Double = 300
    public var logLevel: String = "info"
    public var logFormat: String = "kv"
    /// Fields this version does not understand; kept verbatim on rewrite.
    public var unknownFields: [String: Any] { _unknown.value }
    var _unknown = Box([:])
    /// Path the config was loaded from (empty when built in memory).
    public var path: String = ""

    public static let defaultListen = ["0.0.0.0:4100", "[::]:4100"]
    public static let defaultAPIMaxConnections = 128
    public static let knownTopLevel: Set<String> = [
        "init_connections", "listen", "network_mode", "cluster_id", "system_pubkey", "admin_proof",
        "node_private_key", "data_dir", "api", "raft", "heartbeat", "log",
    ]

    public init() {}

    /// Wraps a non-Sendable JSON dictionary (only ever read after load).
    final class Box: @unchecked Sendable {
        let value: [String: Any]
        init(_ v: [String: Any]) { value = v }
    }

    /// Node identity decoded from `node_private_key`.
    public func nodeKey() throws -> PrivateKey {
        guard !nodePrivateKey.isEmpty else {
            throw P2POSError("CONFIG_INVALID", "\(path): field node_private_key: missing", hint: "run 'p2pos init' or 'p2pos keygen'")
        }
        do { return try PrivateKey(base64: nodePrivateKey) } catch {
            throw P2POSError("CONFIG_INVALID", "\(path): field node_private_key: \(error)")
        }
    }

    /// System public key, if configured.
    public func systemKey() throws -> PublicKey? {
        guard !systemPubkey.isEmpty else { return nil }
        do { return try PublicKey(base64: systemPubkey) } catch {
            throw P2POSError("CONFIG_INVALID", "\(path): field system_pubkey: \(error)")
        }
    }

    public var socketPath: String { apiSocket.isEmpty ? dataDir + "/p2pos.sock" : apiSocket }

    // MARK: loading

    /// Parse and validate config JSON. Errors name the file, the field and the reason.
    public static func parse(_ data: Data, path: String) throws -> NodeConfig {
        func fail(_ field: String, _ why: String) -> P2POSError {
            P2POSError("CONFIG_INVALID", "\(path): field \(field): \(why)", hint: "fix the field and retry")
        }
        guard data.count <= 1 << 20 else { throw P2POSError("CONFIG_INVALID", "\(path): larger than 1 MiB") }
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data, options: []) } catch {
            throw P2POSError("CONFIG_INVALID", "\(path): not valid JSON (\(NodeConfig.describeJSONError(error)))", hint: "fix the syntax and retry")
        }
        guard let root = obj as? [String: Any] else { throw P2POSError("CONFIG_INVALID", "\(path): top level must be a JSON object") }
        var c = NodeConfig()
        c.path = path

        func string(_ dict: [String: Any], _ key: String, _ name: String) throws -> String? {
            guard let v = dict[key], !(v is NSNull) else { return nil }
            guard let s = v as? String, !isBool(v) else { throw fail(name, "must be a string, got \(typeName(v))") }
            return s
        }
        func number(_ dict: [String: Any], _ key: String, _ name: String) throws -> Double? {
            guard let v = dict[key], !(v is NSNull) else { return nil }
            if let n = v as? NSNumber, !isBool(v) { return n.doubleValue }
            throw fail(name, "must be a number, got \(typeName(v))")
        }
        func duration(_ dict: [String: Any], _ key: String, _ name: String) throws -> Double? {
            guard let v = dict[key], !(v is NSNull) else { return nil }
            if let n = v as? NSNumber, !isBool(v) {
                // Go's time.Duration in JSON is nanoseconds; small numbers are read as seconds.
                let d = n.doubleValue
                let secs = d >= 1_000_000 ? d / 1e9 : d
                guard secs > 0 else { throw fail(name, "must be positive") }
                return secs
            }
            if let s = v as? String {
                guard let d = parseDuration(s), d > 0 else { throw fail(name, "\"\(s)\" is not a duration like 30s or 5m") }
                return d
            }
            throw fail(name, "must be a duration string like \"30s\", got \(typeName(v))")
        }
        func object(_ dict: [String: Any], _ key: String, _ name: String) throws -> [String: Any]? {
            guard let v = dict[key], !(v is NSNull) else { return nil }
            guard let o = v as? [String: Any] else { throw fail(name, "must be an object, got \(typeName(v))") }
            return o
        }

        if let v = root["init_connections"], !(v is NSNull) {
            guard let arr = v as? [Any] else { throw fail("init_connections", "must be an array, got \(typeName(v))") }
            for (i, e) in arr.enumerated() {
                guard let o = e as? [String: Any] else { throw fail("init_connections[\(i)]", "must be an object") }
                let t = try string(o, "type", "init_connections[\(i)].type") ?? ""
                guard let kind = InitConnection.Kind(rawValue: t.lowercased()) else {
                    throw fail("init_connections[\(i)].type", "must be \"dns\" or \"multiaddr\", got \"\(t)\"")
                }
                let a = (try string(o, "address", "init_connections[\(i)].address") ?? "").trimmingCharacters(in: .whitespaces)
                guard !a.isEmpty else { throw fail("init_connections[\(i)].address", "must not be empty") }
                if kind == .multiaddr && !a.hasPrefix("/") { throw fail("init_connections[\(i)].address", "\"\(a)\" is not a multiaddr (must start with /)") }
                if !c.initConnections.contains(InitConnection(type: kind, address: a)) {
                    c.initConnections.append(InitConnection(type: kind, address: a))
                }
            }
        }
        if let v = root["listen"], !(v is NSNull) {
            guard let arr = v as? [Any] else { throw fail("listen", "must be an array of \"host:port\" strings, got \(typeName(v))") }
            var out: [String] = []
            for (i, e) in arr.enumerated() {
                guard let s = e as? String else { throw fail("listen[\(i)]", "must be a string") }
                let t = s.trimmingCharacters(in: .whitespaces)
                guard HostPort.parse(t) != nil else { throw fail("listen[\(i)]", "\"\(s)\" is not host:port (e.g. 0.0.0.0:4100 or [::]:4100)") }
                if !out.contains(t) { out.append(t) }
            }
            if !out.isEmpty { c.listen = out }
        }
        if let m = try string(root, "network_mode", "network_mode") {
            let lm = m.lowercased()
            c.networkMode = ["auto", "public", "private"].contains(lm) ? lm : "auto"
        }
        c.clusterID = (try string(root, "cluster_id", "cluster_id") ?? "").trimmingCharacters(in: .whitespaces)
        c.systemPubkey = (try string(root, "system_pubkey", "system_pubkey") ?? "").trimmingCharacters(in: .whitespaces)
        if !c.systemPubkey.isEmpty {
            do { _ = try PublicKey(base64: c.systemPubkey) } catch { throw fail("system_pubkey", "\(error)") }
        }
        if let p = try object(root, "admin_proof", "admin_proof") {
            for k in ["cluster_id", "peer_id", "role", "valid_from", "valid_to", "sig"] { _ = try string(p, k, "admin_proof.\(k)") }
            let proof = try JSONDecoder().decode(AdminProof.self, from: JSONSerialization.data(withJSONObject: p))
            if !proof.isEmpty {
                if Timestamp(rfc3339: proof.validFrom) == nil { throw fail("admin_proof.valid_from", "\"\(proof.validFrom)\" is not an RFC 3339 time") }
                if Timestamp(rfc3339: proof.validTo) == nil { throw fail("admin_proof.valid_to", "\"\(proof.validTo)\" is not an RFC 3339 time") }
                c.adminProof = proof
            }
        }
        c.nodePrivateKey = (try string(root, "node_private_key", "node_private_key") ?? "").trimmingCharacters(in: .whitespaces)
        if !c.nodePrivateKey.isEmpty {
            do { _ = try PrivateKey(base64: c.nodePrivateKey) } catch { throw fail("node_private_key", "\(error)") }
        }
        c.dataDir = try string(root, "data_dir", "data_dir") ?? ""
        if let api = try object(root, "api", "api") {
            c.apiSocket = try string(api, "socket", "api.socket") ?? ""
            c.apiListen = try string(api, "listen", "api.listen") ?? ""
            if !c.apiListen.isEmpty && HostPort.parse(c.apiListen) == nil { throw fail("api.listen", "\"\(c.apiListen)\" is not host:port") }
            if let v = try number(api, "max_connections", "api.max_connections") {
                guard v >= 1, v <= 16384, v == v.rounded() else { throw fail("api.max_connections", "must be an integer 1…16384") }
                c.apiMaxConnections = Int(v)
            }
        }
        if let raft = try object(root, "raft", "raft") {
            if let v = try number(raft, "max_voters", "raft.max_voters") {
                guard v >= 1, v <= 15, v == v.rounded() else { throw fail("raft.max_voters", "must be an integer 1…15") }
                c.raftMaxVoters = Int(v)
            }
            if let v = try duration(raft, "election_timeout", "raft.election_timeout") { c.raftElectionTimeoutMs = Int(v * 1000) }
            if let v = try duration(raft, "heartbeat_interval", "raft.heartbeat_interval") { c.raftHeartbeatMs = Int(v * 1000) }
            if let v = try number(raft, "snapshot_entries", "raft.snapshot_entries") {
                guard v >= 16, v <= 10_000_000, v == v.rounded() else { throw fail("raft.snapshot_entries", "must be an integer 16…10000000") }
                c.raftSnapshotEntries = Int(v)
            }
        }
        if let hb = try object(root, "heartbeat", "heartbeat") {
            if let v = try duration(hb, "interval", "heartbeat.interval") { c.heartbeatInterval = v }
            if let v = try duration(hb, "window", "heartbeat.window") { c.heartbeatWindow = v }
        }
        if let log = try object(root, "log", "log") {
            if let l = try string(log, "level", "log.level") {
                guard LogLevel(name: l) != nil else { throw fail("log.level", "must be debug, info, warn or error, got \"\(l)\"") }
                c.logLevel = l.lowercased()
            }
            if let f = try string(log, "format", "log.format") {
                guard ["kv", "text"].contains(f) else { throw fail("log.format", "must be \"kv\", got \"\(f)\"") }
                c.logFormat = f
            }
        }
        var unknown: [String: Any] = [:]
        for (k, v) in root where !knownTopLevel.contains(k) { unknown[k] = v }
        c._unknown = Box(unknown)
        return c
    }

    /// Load from a file; a config holding a private key must not be group/world-readable.
    public static func load(path: String) throws -> NodeConfig {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw P2POSError("CONFIG_MISSING", "\(path): \(String(cString: strerror(errno)))", hint: "run 'p2pos init' first or pass --config")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw P2POSError("CONFIG_UNREADABLE", "\(path): cannot be read", hint: "check its owner and permissions")
        }
        let c = try parse(data, path: path)
        if !c.nodePrivateKey.isEmpty && st.st_mode & 0o077 != 0 {
            throw P2POSError("KEY_PERMISSIONS",
                             "\(path) holds node_private_key but is accessible by group or others (mode \(String(st.st_mode & 0o777, radix: 8)))",
                             hint: "run: chmod 600 \(path)")
        }
        return c
    }

    /// JSON for writing back: known fields in Go names, unknown fields preserved.
    public func jsonObject() -> [String: Any] {
        var o = unknownFields
        o["init_connections"] = initConnections.map { ["type": $0.type.rawValue, "address": $0.address] }
        o["listen"] = listen
        o["network_mode"] = networkMode
        o["cluster_id"] = clusterID
        o["system_pubkey"] = systemPubkey
        if let p = adminProof {
            o["admin_proof"] = ["cluster_id": p.clusterID, "peer_id": p.peerID, "role": p.role,
                                "valid_from": p.validFrom, "valid_to": p.validTo, "sig": p.sig]
        }
        o["node_private_key"] = nodePrivateKey
        if !dataDir.isEmpty { o["data_dir"] = dataDir }
        var api: [String: Any] = [:]
        if !apiSocket.isEmpty { api["socket"] = apiSocket }
        if !apiListen.isEmpty { api["listen"] = apiListen }
        if apiMaxConnections != NodeConfig.defaultAPIMaxConnections { api["max_connections"] = apiMaxConnections }
        if !api.isEmpty { o["api"] = api }
        o["raft"] = ["max_voters": raftMaxVoters, "election_timeout": "\(raftElectionTimeoutMs)ms", "heartbeat_interval": "\(raftHeartbeatMs)ms",
                     "snapshot_entries": raftSnapshotEntries]
        o["heartbeat"] = ["interval": NodeConfig.formatDuration(heartbeatInterval), "window": NodeConfig.formatDuration(heartbeatWindow)]
        o["log"] = ["level": logLevel, "format": logFormat]
        return o
    }

    public func jsonText() -> String {
        let d = try! JSONSerialization.data(withJSONObject: jsonObject(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: d, as: UTF8.self) + "\n"
    }

    static func formatDuration(_ s: Double) -> String {
        if s == s.rounded() {
            let i = Int(s)
            if i % 3600 == 0 { return "\(i / 3600)h" }
            if i % 60 == 0 { return "\(i / 60)m" }
            return "\(i)s"
        }
        return "\(Int(s * 1000))ms"
    }

    static func isBool(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return String(describing: type(of: n)).contains("Boolean") || String(cString: n.objCType) == "c"
    }

    static func typeName(_ v: Any) -> String {
        if isBool(v) { return "a boolean" }
        if v is NSNumber { return "a number" }
        if v is String { return "a string" }
        if v is [Any] { return "an array" }
        if v is [String: Any] { return "an object" }
        if v is NSNull { return "null" }
        return "an unsupported value"
    }

    static func describeJSONError(_ e: Error) -> String {
        let ns = e as NSError
        if let d = ns.userInfo[NSDebugDescriptionErrorKey] as? String { return d }
        return "syntax error"
    }
}

/// `host:port` / `[v6]:port` as used by `listen` and `api.listen`.
public struct HostPort: Equatable, Sendable {
    public var host: String
    public var port: UInt16
    public var isIPv6: Bool { host.contains(":") }

    public init(host: String, port: UInt16) { self.host = host; self.port = port }

    public static func parse(_ s: String) -> HostPort? {
        let host: String, portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = String(s[..<colon])
            guard !host.contains(":") else { return nil }
            portText = s[s.index(after: colon)...]
        }
        guard let p = UInt16(portText), !host.isEmpty else { return nil }
        return HostPort(host: host, port: p)
    }

    /// `/ip4/…/tcp/N` or `/ip6/…/tcp/N` (or `/dns/…` for names).
    public var multiaddr: String {
        if isIPv6 { return "/ip6/\(host)/tcp/\(port)" }
        if host.allSatisfy({ $0.isNumber || $0 == "." }) { return "/ip4/\(host)/tcp/\(port)" }
        return "/dns/\(host)/tcp/\(port)"
    }
}
