import Foundation
import Support
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A connect attempt: the socket, or the errno it failed with.
enum ConnectOutcome {
    case connected(Int32)
    case failed(Int32)
}

/// Small POSIX socket helpers shared by the server and the client.
enum Sock {
    #if os(Linux)
    static let stream = Int32(SOCK_STREAM.rawValue)
    static let sendFlags = Int32(MSG_NOSIGNAL)
    #else
    static let stream = SOCK_STREAM
    static let sendFlags: Int32 = 0
    #endif

    static func errnoString(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setCloseOnExec(_ fd: Int32) {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    static func noSigPipe(_ fd: Int32) {
        #if canImport(Darwin)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    /// A `sockaddr_un` for `path`, or an error when the path does not fit (108 bytes on Linux).
    static func unixAddress(_ path: String) throws -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let cap = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < cap else {
            throw P2POSError("API_SOCKET_PATH", "socket path \(path) is \(bytes.count) bytes; the limit is \(cap - 1)", hint: "choose a shorter --socket path")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let len = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count + 1)
        return (addr, len)
    }

    /// Connect a blocking Unix stream socket; returns fd or errno.
    static func connectUnix(_ path: String) throws -> ConnectOutcome {
        let (addr, len) = try unixAddress(path)
        let fd = socket(AF_UNIX, stream, 0)
        guard fd >= 0 else { return .failed(errno) }
        setCloseOnExec(fd)
        noSigPipe(fd)
        var a = addr
        let rc = withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            return .failed(e)
        }
        return .connected(fd)
    }

    /// Split `HOST:PORT` / `[V6]:PORT` / `HOST` (port defaulted).
    static func splitHostPort(_ s: String, defaultPort: Int?) -> (host: String, port: Int)? {
        var host = s
        var portText: String? = nil
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if rest.hasPrefix(":") { portText = String(rest.dropFirst()) } else if !rest.isEmpty { return nil }
        } else if let colon = s.lastIndex(of: ":"), s.firstIndex(of: ":") == colon {
            host = String(s[..<colon])
            portText = String(s[s.index(after: colon)...])
        }
        let port: Int
        if let pt = portText {
            guard let p = Int(pt), (0...65535).contains(p) else { return nil }
            port = p
        } else {
            guard let d = defaultPort else { return nil }
            port = d
        }
        return (host, port)
    }

    /// Resolve numeric or named host + port to socket addresses (TCP).
    static func resolve(_ host: String, _ port: Int, passive: Bool) -> [(family: Int32, addr: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = stream
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var res: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &res) == 0 else { return [] }
        defer { freeaddrinfo(res) }
        var out: [(family: Int32, addr: [UInt8])] = []
        var p = res
        while let ai = p {
            let bytes = Array(UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
            out.append((family: ai.pointee.ai_family, addr: bytes))
            p = ai.pointee.ai_next
        }
        return out
    }

    /// Port a bound socket listens on.
    static func localPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        if storage.ss_family == sa_family_t(AF_INET) {
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) } }
        }
        if storage.ss_family == sa_family_t(AF_INET6) {
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) } }
        }
        return 0
    }

    /// Who is on the other end: `uid=… gid=… pid=…` for Unix sockets (SO_PEERCRED, Linux), `ip:port` for TCP.
    static func peerDescription(_ fd: Int32, unix: Bool) -> String {
        if unix {
            #if os(Linux)
            var cred = [Int32](repeating: -1, count: 3)  // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
            var len = socklen_t(MemoryLayout<Int32>.size * 3)
            if getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 {
                return "uid=\(UInt32(bitPattern: cred[1])) gid=\(UInt32(bitPattern: cred[2])) pid=\(cred[0])"
            }
            #endif
            return "unix"
        }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        guard rc == 0 else { return "tcp" }
        var host = [CChar](repeating: 0, count: 64)
        var port = 0
        if storage.ss_family == sa_family_t(AF_INET) {
            withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                var a = p.pointee.sin_addr
                _ = inet_ntop(AF_INET, &a, &host, 64)
                port = Int(UInt16(bigEndian: p.pointee.sin_port))
            } }
        } else if storage.ss_family == sa_family_t(AF_INET6) {
            withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                var a = p.pointee.sin6_addr
                _ = inet_ntop(AF_INET6, &a, &host, 64)
                port = Int(UInt16(bigEndian: p.pointee.sin6_port))
            } }
            let h = String(decoding: host.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return "[\(h)]:\(port)"
        }
        let h = String(decoding: host.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(h):\(port)"
    }

    /// Wait for `events` on fd until `deadline` (monotonic ns); false on timeout.
    static func waitFor(_ fd: Int32, _ events: Int16, deadline: UInt64) -> Bool {
        while true {
            let now = Monotonic.nanos()
            if now >= deadline { return false }
            let ms = Int32(min(UInt64(Int32.max), (deadline - now + 999_999) / 1_000_000))
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, ms)
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { return true }  // let the caller's syscall report it
        }
    }
}
