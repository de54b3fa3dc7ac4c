import Foundation

/// One protocol component of a multiaddr.
public enum MultiaddrComponent: Hashable, Sendable {
    case ip4([UInt8])
    case ip6([UInt8])
    case tcp(UInt16)
    case dns(String)
    case dns4(String)
    case dns6(String)
    case dnsaddr(String)
    /// Peer ID multihash bytes.
    case p2p([UInt8])

    var code: UInt64 {
        switch self {
        case .ip4: return 4
        case .tcp: return 6
        case .ip6: return 41
        case .dns: return 53
        case .dns4: return 54
        case .dns6: return 55
        case .dnsaddr: return 56
        case .p2p: return 421
        }
    }

    var name: String {
        switch self {
        case .ip4: return "ip4"
        case .tcp: return "tcp"
        case .ip6: return "ip6"
        case .dns: return "dns"
        case .dns4: return "dns4"
        case .dns6: return "dns6"
        case .dnsaddr: return "dnsaddr"
        case .p2p: return "p2p"
        }
    }
}

/// A self-describing network address (multiformats multiaddr) in text or binary form,
/// limited to ip4, ip6, tcp, dns, dns4, dns6, dnsaddr and p2p.
public struct Multiaddr: Hashable, Sendable, CustomStringConvertible {
    public var components: [MultiaddrComponent]

    /// Upper bound on encoded size accepted by the parsers.
    public static let maxSize = 1024

    public init(components: [MultiaddrComponent]) { self.components = components }

    /// Parse the text form, e.g. `/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…`.
    public init(_ text: String) throws {
        guard text.utf8.count <= Multiaddr.maxSize else { throw WireError.tooLarge("multiaddr") }
        guard text.hasPrefix("/") else { throw WireError.invalid("multiaddr (must start with /)") }
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        if parts.last == "" { parts.removeLast() }
        guard !parts.isEmpty else { throw WireError.invalid("multiaddr (empty)") }
        var comps: [MultiaddrComponent] = []
        var i = 0
        while i < parts.count {
            let name = parts[i]
            guard i + 1 < parts.count else { throw WireError.invalid("multiaddr (/\(name) needs a value)") }
            let v = parts[i + 1]
            i += 2
            switch name {
            case "ip4":
                var a = in_addr()
                guard inet_pton(AF_INET, v, &a) == 1 else { throw WireError.invalid("multiaddr ip4 address \(v)") }
                comps.append(.ip4(withUnsafeBytes(of: &a) { Array($0) }))
            case "ip6":
                var a = in6_addr()
                guard inet_pton(AF_INET6, v, &a) == 1 else { throw WireError.invalid("multiaddr ip6 address \(v)") }
                comps.append(.ip6(withUnsafeBytes(of: &a) { Array($0) }))
            case "tcp":
                guard let p = UInt16(v) else { throw WireError.invalid("multiaddr tcp port \(v)") }
                comps.append(.tcp(p))
            case "dns", "dns4", "dns6", "dnsaddr":
                guard !v.isEmpty, v.utf8.count <= 255 else { throw WireError.invalid("multiaddr \(name) name") }
                switch name {
                case "dns": comps.append(.dns(v))
                case "dns4": comps.append(.dns4(v))
                case "dns6": comps.append(.dns6(v))
                default: comps.append(.dnsaddr(v))
                }
            case "p2p", "ipfs":
                comps.append(.p2p(try Multiaddr.decodePeerText(v)))
            default:
                throw WireError.invalid("multiaddr protocol /\(name) (supported: ip4 ip6 tcp dns dns4 dns6 dnsaddr p2p)")
            }
        }
        components = comps
    }

    /// Parse a config-style `host:port` (`0.0.0.0:4100`, `[::]:4100`, `node1.example.org:4100`)
    /// into `/ip4|ip6|dns/…/tcp/PORT`.
    public init(hostPort text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces)
        var host: String, portText: String
        if t.hasPrefix("[") {
            guard let close = t.firstIndex(of: "]"), t[t.index(after: close)...].hasPrefix(":") else {
                throw WireError.invalid("address \(t) (expected [IPv6]:port)")
            }
            host = String(t[t.index(after: t.startIndex)..<close])
            portText = String(t[t.index(close, offsetBy: 2)...])
        } else {
            guard let colon = t.lastIndex(of: ":"), !t[..<colon].contains(":") else {
                throw WireError.invalid("address \(t) (expected host:port)")
            }
            host = String(t[..<colon])
            portText = String(t[t.index(after: colon)...])
        }
        guard let port = UInt16(portText) else { throw WireError.invalid("port in \(t)") }
        guard !host.isEmpty else { throw WireError.invalid("host in \(t)") }
        var a4 = in_addr(), a6 = in6_addr()
        if inet_pton(AF_INET, host, &a4) == 1 {
            self.init(components: [.ip4(withUnsafeBytes(of: &a4) { Array($0) }), .tcp(port)])
        } else if inet_pton(AF_INET6, host, &a6) == 1 {
            self.init(components: [.ip6(withUnsafeBytes(of: &a6) { Array($0) }), .tcp(port)])
        } else {
            guard host.utf8.count <= 255, !host.contains("/") else { throw WireError.invalid("host in \(t)") }
            self.init(components: [.dns(host), .tcp(port)])
        }
    }

    static func decodePeerText(_ v: String) throws -> [UInt8] {
        if v.hasPrefix("1") || v.hasPrefix("Qm") {
            guard let b = Base58.decode(v), b.count >= 2 else { throw WireError.invalid("multiaddr p2p value (base58)") }
            try checkMultihash(b)
            return b
        }
        if v.hasPrefix("k") {
            guard let b = Base36.decode(String(v.dropFirst())), b.count > 4, b[0] == 1, b[1] == 0x72 else {
                throw WireError.invalid("multiaddr p2p value (base36 CID)")
            }
            let mh = Array(b[2...])
            try checkMultihash(mh)
            return mh
        }
        throw WireError.invalid("multiaddr p2p value \(v)")
    }

    static func checkMultihash(_ b: [UInt8]) throws {
        let (_, n1) = try Varint.decode(b, at: 0)
        let (len, n2) = try Varint.decode(b, at: n1)
        guard len == UInt64(b.count - n1 - n2) else { throw WireError.invalid("multihash length") }
    }

    /// Parse the binary form.
    public init(bytes: [UInt8]) throws {
        guard bytes.count <= Multiaddr.maxSize else { throw WireError.tooLarge("multiaddr") }
        guard !bytes.isEmpty else { throw WireError.invalid("multiaddr (empty)") }
        var comps: [MultiaddrComponent] = []
        var pos = 0
        func take(_ n: Int) throws -> [UInt8] {
            guard n >= 0, n <= bytes.count - pos else { throw WireError.truncated("multiaddr") }
            defer { pos += n }
            return Array(bytes[pos..<(pos + n)])
        }
        func lengthPrefixed() throws -> [UInt8] {
            let (len, n) = try Varint.decode(bytes, at: pos)
            pos += n
            guard len <= UInt64(bytes.count - pos) else { throw WireError.truncated("multiaddr") }
            return try take(Int(len))
        }
        func name() throws -> String {
            let b = try lengthPrefixed()
            guard !b.isEmpty, let s = String(bytes: b, encoding: .utf8), !s.contains("/") else { throw WireError.invalid("multiaddr dns name") }
            return s
        }
        while pos < bytes.count {
            let (code, n) = try Varint.decode(bytes, at: pos)
            pos += n
            switch code {
            case 4: comps.append(.ip4(try take(4)))
            case 41: comps.append(.ip6(try take(16)))
            case 6:
                let p = try take(2)
                comps.append(.tcp(UInt16(p[0]) << 8 | UInt16(p[1])))
            case 53: comps.append(.dns(try name()))
            case 54: comps.append(.dns4(try name()))
            case 55: comps.append(.dns6(try name()))
            case 56: comps.append(.dnsaddr(try name()))
            case 421:
                let mh = try lengthPrefixed()
                try Multiaddr.checkMultihash(mh)
                comps.append(.p2p(mh))
            default:
                throw WireError.invalid("multiaddr protocol code \(code)")
            }
        }
        components = comps
    }

    /// Binary form.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        for c in components {
            Varint.encode(c.code, into: &out)
            switch c {
            case .ip4(let a), .ip6(let a): out += a
            case .tcp(let p): out += [UInt8(p >> 8), UInt8(p & 0xff)]
            case .dns(let s), .dns4(let s), .dns6(let s), .dnsaddr(let s):
                Varint.encode(UInt64(s.utf8.count), into: &out)
                out += Array(s.utf8)
            case .p2p(let mh):
                Varint.encode(UInt64(mh.count), into: &out)
                out += mh
            }
        }
        return out
    }

    /// Text form.
    public var description: String {
        var out = ""
        for c in components {
            out += "/" + c.name + "/"
            switch c {
            case .ip4(var a):
                out += Multiaddr.ntop(AF_INET, &a, 16)
            case .ip6(var a):
                out += Multiaddr.ntop(AF_INET6, &a, 46)
            case .tcp(let p): out += String(p)
            case .dns(let s), .dns4(let s), .dns6(let s), .dnsaddr(let s): out += s
            case .p2p(let mh): out += Base58.encode(mh)
            }
        }
        return out
    }

    static func ntop(_ family: Int32, _ a: inout [UInt8], _ size: Int) -> String {
        var buf = [CChar](repeating: 0, count: size)
        _ = a.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buf, socklen_t(size)) }
        let bytes = buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The trailing `/p2p/` multihash, if any.
    public var peerIDBytes: [UInt8]? {
        if case .p2p(let mh)? = components.last { return mh }
        return nil
    }

    /// This address without a trailing `/p2p/…`.
    public var withoutPeerID: Multiaddr {
        if case .p2p? = components.last { return Multiaddr(components: Array(components.dropLast())) }
        return self
    }

    /// This address with `/p2p/<mh>` appended (replacing an existing one).
    public func withPeerID(_ mh: [UInt8]) -> Multiaddr {
        Multiaddr(components: withoutPeerID.components + [.p2p(mh)])
    }

    /// Host and TCP port for ip4/ip6/dns* + tcp addresses.
    public var tcpTarget: (host: String, port: UInt16, family: Int32)? {
        guard components.count >= 2, case .tcp(let port) = components[1] else { return nil }
        switch components[0] {
        case .ip4(var a): return (Multiaddr.ntop(AF_INET, &a, 16), port, AF_INET)
        case .ip6(var a): return (Multiaddr.ntop(AF_INET6, &a, 46), port, AF_INET6)
        case .dns(let s): return (s, port, AF_UNSPEC)
        case .dns4(let s): return (s, port, AF_INET)
        case .dns6(let s): return (s, port, AF_INET6)
        default: return nil
        }
    }
}
