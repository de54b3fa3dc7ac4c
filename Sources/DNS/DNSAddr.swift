import Foundation

/// Minimal multiaddr-as-text helpers for dnsaddr handling. Deliberately small and isolated:
/// when Wire's Multiaddr type lands, these three functions switch to it.
public enum MultiaddrText {
    /// Longest multiaddr string accepted from a TXT record.
    public static let maxLength = 1024

    /// `/proto/value/...`: starts with `/`, no empty components, printable ASCII without spaces.
    public static func isPlausible(_ s: String) -> Bool {
        guard s.hasPrefix("/"), s.utf8.count >= 2, s.utf8.count <= maxLength,
              s.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else { return false }
        return components(s).allSatisfy { !$0.isEmpty }
    }

    /// Components after the leading `/`.
    public static func components(_ s: String) -> [String] {
        s.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
    }

    /// Value of the last `/p2p/<id>` or `/ipfs/<id>` component, nil when absent.
    public static func peerID(_ s: String) -> String? {
        let c = components(s)
        var found: String? = nil
        var i = 0
        while i + 1 < c.count {
            if c[i] == "p2p" || c[i] == "ipfs" {
                found = c[i + 1]
                i += 2
            } else {
                i += 1
            }
        }
        return found
    }

    /// The domain of a leading `/dnsaddr/<domain>` component, nil otherwise.
    public static func dnsaddrDomain(_ s: String) -> String? {
        let c = components(s)
        guard c.count >= 2, c[0] == "dnsaddr" else { return nil }
        return c[1]
    }
}

/// One peer found through DNS and all of its addresses.
public struct DNSPeer: Sendable, Equatable, Codable {
    /// Peer ID string from `/p2p/<id>`; "" for addresses without one.
    public var peerID: String
    /// Sorted, de-duplicated multiaddr strings.
    public var addrs: [String]

    public init(peerID: String, addrs: [String]) {
        self.peerID = peerID
        self.addrs = addrs
    }

    enum CodingKeys: String, CodingKey {
        case peerID = "peer_id"
        case addrs
    }
}

/// Outcome of resolving one bootstrap domain.
public struct DNSResolution: Sendable, Equatable, Codable {
    public var domain: String
    public var server: String
    /// Peers sorted by peer ID (byte-wise), "" (no peer ID) first.
    public var peers: [DNSPeer]
    /// Non-fatal problems: ignored nested names, cycles, depth limit.
    public var warnings: [String]

    /// The `[(peerID, addrs)]` view.
    public var tuples: [(peerID: String, addrs: [String])] { peers.map { ($0.peerID, $0.addrs) } }
}

/// The SPEC §6 algorithm over any TXT lookup function (libresolv in production, a table in tests).
public struct DNSAddrResolver: Sendable {
    /// TXT strings at a name; [] when the name has no TXT; throws `DNSError`.
    public typealias Lookup = @Sendable (String) throws -> [String]

    public let lookup: Lookup
    public let serverDescription: String
    /// Levels of nested `/dnsaddr/` followed below the queried domain.
    public var maxDepth: Int

    public init(serverDescription: String, maxDepth: Int = 4, lookup: @escaping Lookup) {
        self.lookup = lookup
        self.serverDescription = serverDescription
        self.maxDepth = maxDepth
    }

    /// Multiaddr strings of one TXT string: `dnsaddr=/…` or bare `/…`; nil for anything else.
    public static func multiaddr(fromTXT txt: String) -> String? {
        var s = txt.trimmingCharacters(in: .whitespaces)
        if s.hasPrefix("dnsaddr=") { s = String(s.dropFirst("dnsaddr=".count)) }
        return MultiaddrText.isPlausible(s) ? s : nil
    }

    /// Resolve `domain`: `_dnsaddr.<domain>` first, then `<domain>`; nested `/dnsaddr/` followed.
    public func resolve(_ domain0: String) throws -> DNSResolution {
        let domain = DNSAddrResolver.normalize(domain0)
        try DNSResolver.validate(domain)
        var warnings: [String] = []
        var queried: [String] = []
        let addrs = try expand(domain, depth: 0, path: [domain], warnings: &warnings, queried: &queried)
        guard !addrs.isEmpty else {
            throw DNSError.noUsableRecords(domain: domain, server: serverDescription, queried: queried)
        }
        return DNSResolution(domain: domain, server: serverDescription, peers: DNSAddrResolver.group(addrs), warnings: warnings)
    }

    static func normalize(_ d: String) -> String {
        var s = d.trimmingCharacters(in: .whitespaces)
        if s.hasSuffix(".") { s.removeLast() }
        return s.lowercased()
    }

    /// Usable multiaddrs directly at a domain (with the `_dnsaddr.` → bare-name fallback).
    func records(_ domain: String, queried: inout [String]) throws -> [String] {
        let primary = "_dnsaddr." + domain
        queried.append(primary)
        var primaryMissing = false
        do {
            let found = try lookup(primary).compactMap(DNSAddrResolver.multiaddr(fromTXT:))
            if !found.isEmpty { return found }
        } catch DNSError.nxdomain {
            primaryMissing = true
        }
        queried.append(domain)
        do {
            return try lookup(domain).compactMap(DNSAddrResolver.multiaddr(fromTXT:))
        } catch DNSError.nxdomain(let n, let s) {
            // Both names missing: report the domain the operator asked for.
            throw DNSError.nxdomain(name: primaryMissing ? domain : n, server: s)
        }
    }

    func expand(_ domain: String, depth: Int, path: [String], warnings: inout [String], queried: inout [String]) throws -> [String] {
        var out: [String] = []
        for addr in try records(domain, queried: &queried) {
            guard let nested0 = MultiaddrText.dnsaddrDomain(addr) else {
                out.append(addr)
                continue
            }
            let nested = DNSAddrResolver.normalize(nested0)
            if path.contains(nested) {
                warnings.append("ignored \(addr): dnsaddr cycle through \(nested)")
                continue
            }
            if depth + 1 > maxDepth {
                warnings.append("ignored \(addr): nested dnsaddr deeper than \(maxDepth) levels")
                continue
            }
            do {
                try DNSResolver.validate(nested)
                var sub = try expand(nested, depth: depth + 1, path: path + [nested], warnings: &warnings, queried: &queried)
                if let want = MultiaddrText.peerID(addr) {
                    sub = sub.filter { MultiaddrText.peerID($0) == want }
                }
                if sub.isEmpty { warnings.append("\(addr) resolved to no usable addresses") }
                out.append(contentsOf: sub)
            } catch let e as DNSError {
                warnings.append("ignored \(addr): \(e)")
            }
        }
        return out
    }

    /// Merge addresses by peer ID; peers and addresses sorted byte-wise, duplicates removed.
    public static func group(_ addrs: [String]) -> [DNSPeer] {
        var byPeer: [String: Set<String>] = [:]
        for a in addrs { byPeer[MultiaddrText.peerID(a) ?? "", default: []].insert(a) }
        return byPeer.keys.sorted(by: bytewise).map { DNSPeer(peerID: $0, addrs: byPeer[$0]!.sorted(by: bytewise)) }
    }

    static func bytewise(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
}

/// Entry points for `p2pos dns resolve DOMAIN [--server HOST[:PORT]] [--json]`.
public enum DNSTool {
    /// Resolve a bootstrap domain through libresolv, optionally against `server` (`HOST[:PORT]`).
    public static func resolve(domain: String, server: String? = nil, timeout: Int = 3, attempts: Int = 2) throws -> DNSResolution {
        let srv = try server.map { try DNSServer($0) }
        let resolver = DNSResolver(server: srv, timeout: timeout, attempts: attempts)
        return try DNSAddrResolver(serverDescription: resolver.serverDescription, lookup: { try resolver.lookupTXT($0) }).resolve(domain)
    }

    /// Human output: one block per peer, addresses indented, warnings last.
    public static func formatHuman(_ r: DNSResolution) -> String {
        let count = r.peers.reduce(0) { $0 + $1.addrs.count }
        var out = "\(r.domain): \(r.peers.count) peer\(r.peers.count == 1 ? "" : "s"), \(count) address\(count == 1 ? "" : "es") (via \(r.server))\n"
        for p in r.peers {
            out += (p.peerID.isEmpty ? "(no peer id)" : p.peerID) + "\n"
            for a in p.addrs { out += "  \(a)\n" }
        }
        for w in r.warnings { out += "warning: \(w)\n" }
        return out
    }

    /// JSON output: `{"domain","server","peers":[{"peer_id","addrs"}],"warnings"}`, sorted keys, one line.
    public static func formatJSON(_ r: DNSResolution) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? enc.encode(r) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// JSON for a failure: `{"error":{"code","message"}}`.
    public static func formatJSONError(_ error: Error) -> String {
        let code = (error as? DNSError)?.code ?? "DNS_ERROR"
        let obj: [String: Any] = ["error": ["code": code, "message": "\(error)"]]
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
