import Foundation
import CResolv
import Support
#if canImport(Glibc)
import Glibc
#endif

/// Why a DNS lookup or a bootstrap resolution failed; every case names the domain and server.
public enum DNSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name does not exist (NXDOMAIN).
    case nxdomain(name: String, server: String)
    /// SERVFAIL, REFUSED, timeout or unreachable server.
    case serverFailure(name: String, server: String, reason: String)
    /// The answer could not be parsed.
    case malformedResponse(name: String, server: String, reason: String)
    /// Names exist but carry no `dnsaddr=` / multiaddr TXT strings.
    case noUsableRecords(domain: String, server: String, queried: [String])
    /// `--server` is not `HOST[:PORT]` with an IPv4 host.
    case invalidServer(String, reason: String)
    /// The domain is not a valid DNS name.
    case invalidName(String)
    /// The platform's libresolv cannot be used.
    case unavailable(String)

    public var description: String {
        switch self {
        case .nxdomain(let n, let s): return "DNS name \(n) does not exist (NXDOMAIN from \(s))"
        case .serverFailure(let n, let s, let r): return "DNS query for \(n) TXT failed at \(s): \(r)"
        case .malformedResponse(let n, let s, let r): return "malformed DNS answer for \(n) from \(s): \(r)"
        case .noUsableRecords(let d, let s, let q):
            return "no dnsaddr records for \(d) at \(s) (queried \(q.joined(separator: ", ")) TXT); publish `dnsaddr=/ip4/…/tcp/…/p2p/…` TXT records at _dnsaddr.\(d)"
        case .invalidServer(let s, let r): return "invalid DNS server \(s): \(r); expected HOST[:PORT] with an IPv4 host"
        case .invalidName(let n): return "invalid DNS name \(n.debugDescription)"
        case .unavailable(let r): return "DNS resolution unavailable: \(r)"
        }
    }

    /// Stable code for JSON output and logs.
    public var code: String {
        switch self {
        case .nxdomain: return "DNS_NXDOMAIN"
        case .serverFailure: return "DNS_SERVER_FAILURE"
        case .malformedResponse: return "DNS_MALFORMED"
        case .noUsableRecords: return "DNS_NO_RECORDS"
        case .invalidServer: return "DNS_INVALID_SERVER"
        case .invalidName: return "DNS_INVALID_NAME"
        case .unavailable: return "DNS_UNAVAILABLE"
        }
    }
}

/// A resolver address given as `HOST[:PORT]` (IPv4 literal or a name that resolves to IPv4).
public struct DNSServer: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// IPv4 address in network byte order.
    var ipv4: in_addr_t

    public init(_ text: String) throws {
        var host = text
        var port = 53
        if text.hasPrefix("[") { throw DNSError.invalidServer(text, reason: "IPv6 resolvers are not supported") }
        if let colon = text.lastIndex(of: ":") {
            guard text.firstIndex(of: ":") == colon else { throw DNSError.invalidServer(text, reason: "IPv6 resolvers are not supported") }
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]), (1...65535).contains(p) else {
                throw DNSError.invalidServer(text, reason: "port must be 1-65535")
            }
            port = p
        }
        guard !host.isEmpty else { throw DNSError.invalidServer(text, reason: "empty host") }
        guard host.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) || $0 == 45 || $0 == 46 }) else {
            throw DNSError.invalidServer(text, reason: "host \(host.debugDescription) is neither an IPv4 address nor a host name")
        }
        var addr = in_addr()
        if inet_pton(AF_INET, host, &addr) == 1 {
            ipv4 = addr.s_addr
        } else {
            var hints = addrinfo()
            hints.ai_family = AF_INET
            var res: UnsafeMutablePointer<addrinfo>? = nil
            guard getaddrinfo(host, nil, &hints, &res) == 0, let ai = res else {
                throw DNSError.invalidServer(text, reason: "host \(host) does not resolve to an IPv4 address")
            }
            defer { freeaddrinfo(res) }
            ipv4 = ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
        }
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }
}

/// TXT lookups through libresolv (`res_ninit` + `res_nquery`), one private `res_state` per
/// call so concurrent lookups never share resolver state.
public struct DNSResolver: Sendable {
    /// Server override; nil uses /etc/resolv.conf.
    public var server: DNSServer?
    /// Seconds per attempt (`res_state.retrans`).
    public var timeout: Int
    /// Attempts per server (`res_state.retry`).
    public var attempts: Int

    public init(server: DNSServer? = nil, timeout: Int = 3, attempts: Int = 2) {
        self.server = server
        self.timeout = max(1, timeout)
        self.attempts = max(1, attempts)
    }

    /// Human name of the server queried, for errors.
    public var serverDescription: String {
        server?.description ?? "the system resolver (/etc/resolv.conf)"
    }

    /// TXT strings at `name` (each record's character-strings joined); [] when the name exists
    /// without TXT records. Throws `DNSError.nxdomain` / `.serverFailure` / `.malformedResponse`.
    public func lookupTXT(_ name: String) throws -> [String] {
        try DNSResolver.validate(name)
        #if canImport(Glibc)
        let state = UnsafeMutablePointer<__res_state>.allocate(capacity: 1)
        state.initialize(to: __res_state())
        defer { state.deallocate() }
        guard __res_ninit(state) == 0 else {
            throw DNSError.unavailable("res_ninit failed (check /etc/resolv.conf)")
        }
        defer { __res_nclose(state) }
        state.pointee.retrans = Int32(timeout)
        state.pointee.retry = Int32(attempts)
        var serverName = serverDescription
        if let s = server {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(UInt16(s.port).bigEndian)
            sin.sin_addr.s_addr = s.ipv4
            state.pointee.nsaddr_list.0 = sin
            state.pointee.nscount = 1
            // Like dig: hand SERVFAIL/REFUSED answers back instead of treating them as "try the next
            // server", so an explicitly chosen server's verdict is reported precisely.
            state.pointee.pfcode = 1
        } else if state.pointee.nscount > 0, state.pointee.nsaddr_list.0.sin_family == sa_family_t(AF_INET) {
            var a = state.pointee.nsaddr_list.0.sin_addr
            var text = [CChar](repeating: 0, count: 64)
            if inet_ntop(AF_INET, &a, &text, 64) != nil {
                let port = UInt16(bigEndian: state.pointee.nsaddr_list.0.sin_port)
                let ip = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                serverName = "\(ip):\(port) (from /etc/resolv.conf)"
            }
        }
        var answer = [UInt8](repeating: 0, count: 65535)
        errno = 0
        let n = res_nquery(state, name, Int32(DNSMessage.classIN), Int32(DNSMessage.typeTXT), &answer, Int32(answer.count))
        if n < 0 {
            let herr = state.pointee.res_h_errno
            let sysErr = errno
            // res_nquery leaves the server's answer in the buffer when the failure is an rcode.
            if answer[2] & 0x80 != 0 {
                switch Int(answer[3] & 0x0F) {
                case DNSMessage.RCode.nxDomain.rawValue: throw DNSError.nxdomain(name: name, server: serverName)
                case DNSMessage.RCode.noError.rawValue: return []
                case DNSMessage.RCode.servFail.rawValue: throw DNSError.serverFailure(name: name, server: serverName, reason: "SERVFAIL (the server could not resolve the name)")
                case DNSMessage.RCode.refused.rawValue: throw DNSError.serverFailure(name: name, server: serverName, reason: "REFUSED (the server does not answer for this name)")
                case let rc: throw DNSError.serverFailure(name: name, server: serverName, reason: "response code \(rc)")
                }
            }
            switch herr {
            case HOST_NOT_FOUND:
                throw DNSError.nxdomain(name: name, server: serverName)
            case NO_DATA:
                return []
            case TRY_AGAIN:
                if sysErr == ECONNREFUSED {
                    throw DNSError.serverFailure(name: name, server: serverName, reason: "connection refused (no DNS server on that address and port)")
                }
                if sysErr == ETIMEDOUT {
                    throw DNSError.serverFailure(name: name, server: serverName, reason: "no answer within \(timeout) s x \(attempts) attempts" + (server == nil ? " (timeout or SERVFAIL)" : " (timeout)"))
                }
                throw DNSError.serverFailure(name: name, server: serverName, reason: "SERVFAIL or no answer")
            case NO_RECOVERY:
                throw DNSError.serverFailure(name: name, server: serverName, reason: "the server refused the query or could not process it (REFUSED/FORMERR/NOTIMP)")
            default:
                throw DNSError.serverFailure(name: name, server: serverName, reason: "resolver error h_errno=\(herr) errno=\(sysErr)")
            }
        }
        let parsed: DNSMessage.TXTAnswer
        do {
            parsed = try DNSMessage.parseTXT(Array(answer[0..<min(Int(n), answer.count)]))
        } catch {
            throw DNSError.malformedResponse(name: name, server: serverName, reason: "\(error)")
        }
        switch parsed.rcode {
        case DNSMessage.RCode.noError.rawValue: return parsed.strings
        case DNSMessage.RCode.nxDomain.rawValue: throw DNSError.nxdomain(name: name, server: serverName)
        default: throw DNSError.serverFailure(name: name, server: serverName, reason: "response code \(parsed.rcode)")
        }
        #else
        throw DNSError.unavailable("libresolv TXT lookups are implemented for glibc only")
        #endif
    }

    /// Reject names that cannot be valid DNS names (empty labels, labels over 63, names over 253).
    static func validate(_ name: String) throws {
        let trimmed = name.hasSuffix(".") ? String(name.dropLast()) : name
        let labels = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 253,
              labels.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 }),
              trimmed.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "\\") }) else {
            throw DNSError.invalidName(name)
        }
    }
}
