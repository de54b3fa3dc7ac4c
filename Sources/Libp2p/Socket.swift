import Foundation
import Glibc
import Wire

/// Socket helpers: address conversion, listeners, non-blocking connect.
enum Sock {
    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
    }

    static func setBuffers(_ fd: Int32) {
        var size: Int32 = 4 * 1024 * 1024
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4)
    }

    /// Resolve a TCP multiaddr (ip4/ip6/dns*) to socket addresses. May block on DNS.
    static func resolve(_ addr: Multiaddr) throws -> [sockaddr_storage] {
        guard let t = addr.tcpTarget else { throw Libp2pError.badAddress("\(addr) is not a TCP address") }
        var hints = addrinfo()
        hints.ai_family = t.family
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        switch addr.components.first {
        case .ip4?, .ip6?: hints.ai_flags = AI_NUMERICHOST
        default: break
        }
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(t.host, String(t.port), &hints, &res)
        guard rc == 0, let first = res else { throw Libp2pError.dialFailed("cannot resolve \(t.host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(first) }
        var out: [sockaddr_storage] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            var ss = sockaddr_storage()
            _ = withUnsafeMutableBytes(of: &ss) { dst in
                memcpy(dst.baseAddress!, a.pointee.ai_addr, Int(a.pointee.ai_addrlen))
            }
            out.append(ss)
            p = a.pointee.ai_next
        }
        return out
    }

    static func length(_ ss: sockaddr_storage) -> socklen_t {
        ss.ss_family == sa_family_t(AF_INET6) ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    /// Multiaddr of a socket address.
    static func multiaddr(_ ss: sockaddr_storage) -> Multiaddr? {
        var s = ss
        if ss.ss_family == sa_family_t(AF_INET) {
            return withUnsafeBytes(of: &s) { raw -> Multiaddr in
                let sin = raw.load(as: sockaddr_in.self)
                var a = sin.sin_addr
                let ip = withUnsafeBytes(of: &a) { Array($0) }
                return Multiaddr(components: [.ip4(ip), .tcp(UInt16(bigEndian: sin.sin_port))])
            }
        } else if ss.ss_family == sa_family_t(AF_INET6) {
            return withUnsafeBytes(of: &s) { raw -> Multiaddr in
                let sin = raw.load(as: sockaddr_in6.self)
                var a = sin.sin6_addr
                let ip = withUnsafeBytes(of: &a) { Array($0) }
                return Multiaddr(components: [.ip6(ip), .tcp(UInt16(bigEndian: sin.sin6_port))])
            }
        }
        return nil
    }

    static func peerAddr(_ fd: Int32) -> Multiaddr? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) } }
        return rc == 0 ? multiaddr(ss) : nil
    }

    static func localAddr(_ fd: Int32) -> Multiaddr? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return rc == 0 ? multiaddr(ss) : nil
    }

    /// Bind and listen; returns the fd and the bound address.
    static func listen(_ addr: Multiaddr) throws -> (Int32, Multiaddr) {
        guard case .tcp? = addr.withoutPeerID.components.last, addr.withoutPeerID.components.count == 2 else {
            throw Libp2pError.badAddress("listen address must be /ip4|ip6/…/tcp/PORT, got \(addr)")
        }
        switch addr.components[0] {
        case .ip4, .ip6: break
        default: throw Libp2pError.badAddress("listen address must use ip4 or ip6, got \(addr)")
        }
        var ss = try resolve(addr.withoutPeerID)[0]
        let fd = socket(Int32(ss.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Libp2pError.badAddress("socket() failed errno \(errno)") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        if ss.ss_family == sa_family_t(AF_INET6) { _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, 4) }
        let len = length(ss)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw Libp2pError.badAddress("cannot bind \(addr): \(String(cString: strerror(e)))")
        }
        guard Glibc.listen(fd, 1024) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw Libp2pError.badAddress("cannot listen on \(addr): \(String(cString: strerror(e)))")
        }
        setNonBlocking(fd)
        return (fd, localAddr(fd) ?? addr)
    }

    /// Start a non-blocking connect; returns the fd (connect may still be in progress).
    static func connect(_ target: sockaddr_storage) throws -> Int32 {
        var ss = target
        let fd = socket(Int32(ss.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Libp2pError.dialFailed("socket() failed errno \(errno)") }
        setNoDelay(fd)
        let len = length(ss)
        let rc = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) } }
        if rc != 0 && errno != EINPROGRESS {
            let e = errno
            Glibc.close(fd)
            throw Libp2pError.dialFailed(String(cString: strerror(e)))
        }
        return fd
    }

    /// The interface addresses an unspecified listen address (0.0.0.0 / ::) stands for.
    static func expandUnspecified(_ addr: Multiaddr) -> [Multiaddr] {
        guard addr.components.count >= 2, case .tcp(let port) = addr.components[1] else { return [addr] }
        let v4: Bool
        switch addr.components[0] {
        case .ip4(let a) where a == [0, 0, 0, 0]: v4 = true
        case .ip6(let a) where a == [UInt8](repeating: 0, count: 16): v4 = false
        default: return [addr]
        }
        var out: [Multiaddr] = []
        var ifap: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&ifap) == 0, let first = ifap else { return [addr] }
        defer { freeifaddrs(first) }
        var p: UnsafeMutablePointer<ifaddrs>? = first
        while let i = p {
            if let sa = i.pointee.ifa_addr {
                let fam = Int32(sa.pointee.sa_family)
                if fam == (v4 ? AF_INET : AF_INET6) {
                    var ss = sockaddr_storage()
                    _ = withUnsafeMutableBytes(of: &ss) { dst in
                        memcpy(dst.baseAddress!, sa, fam == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
                    }
                    if var m = multiaddr(ss) {
                        if case .ip6(let a) = m.components[0], a[0] == 0xfe, a[1] & 0xc0 == 0x80 { p = i.pointee.ifa_next; continue }
                        m.components[1] = .tcp(port)
                        if !out.contains(m) { out.append(m) }
                    }
                }
            }
            p = i.pointee.ifa_next
        }
        return out.isEmpty ? [addr] : out
    }
}
