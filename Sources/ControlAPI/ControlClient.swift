import Foundation
import Support
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a control request failed; `.notReachable` is the CLI's exit code 3.
public enum ControlClientError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Nothing answers at the endpoint (missing socket, connection refused, connect timeout).
    case notReachable(endpoint: String, reason: String)
    /// Connected, but no complete answer within the read timeout.
    case timeout(endpoint: String, seconds: Double)
    /// The daemon's answer is not valid HTTP/1.1 or exceeds the response limit.
    case protocolError(endpoint: String, reason: String)
    /// The connection broke mid-exchange.
    case io(endpoint: String, reason: String)

    public var description: String {
        switch self {
        case .notReachable(let e, let r): return "daemon not reachable at \(e): \(r)"
        case .timeout(let e, let s): return "daemon at \(e) did not answer within \(s) s"
        case .protocolError(let e, let r): return "invalid answer from daemon at \(e): \(r)"
        case .io(let e, let r): return "connection to daemon at \(e) failed: \(r)"
        }
    }

    public var isNotReachable: Bool {
        if case .notReachable = self { return true }
        return false
    }
}

/// One HTTP answer as the client sees it.
public struct ControlClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// Body parsed as JSON (object, array or fragment); nil when not JSON.
    public var json: Any? { try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }

    /// `error.code` / `error.message` of the API's error shape, when present.
    public var apiError: (code: String, message: String)? {
        guard let obj = json as? [String: Any], let e = obj["error"] as? [String: Any],
              let code = e["code"] as? String else { return nil }
        return (code, e["message"] as? String ?? "")
    }
}

/// A small blocking HTTP/1.1 client for the control API (one connection per request).
public struct ControlClient: Sendable {
    public enum Endpoint: Sendable, CustomStringConvertible {
        case unix(String)
        case tcp(host: String, port: Int)

        public var description: String {
            switch self {
            case .unix(let p): return p
            case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
            }
        }
    }

    public var endpoint: Endpoint
    public var connectTimeout: Double
    public var readTimeout: Double
    public var maxResponseBytes = 256 * 1024 * 1024

    public init(socketPath: String, connectTimeout: Double = 2, readTimeout: Double = 30) {
        self.endpoint = .unix(socketPath)
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
    }

    public init(host: String, port: Int, connectTimeout: Double = 2, readTimeout: Double = 30) {
        self.endpoint = .tcp(host: host, port: port)
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
    }

    /// The first of `socketPaths` (in order, duplicates skipped) where something accepts a
    /// connection; otherwise `.notReachable` naming every path tried and why (CLI exit code 3).
    public static func firstReachable(socketPaths: [String], connectTimeout: Double = 2, readTimeout: Double = 30) throws -> ControlClient {
        var seen = Set<String>()
        var tried: [String] = []
        for path in socketPaths where !path.isEmpty && seen.insert(path).inserted {
            let client = ControlClient(socketPath: path, connectTimeout: connectTimeout, readTimeout: readTimeout)
            do {
                let fd = try client.connectSocket()
                close(fd)
                return client
            } catch let e as ControlClientError {
                if case .notReachable(_, let reason) = e { tried.append("\(path) (\(reason))") } else { tried.append("\(path) (\(e))") }
            }
        }
        throw ControlClientError.notReachable(endpoint: tried.isEmpty ? "(no socket path)" : socketPaths.filter { !$0.isEmpty }.joined(separator: ", "),
                                              reason: tried.isEmpty ? "no candidate socket paths" : "tried " + tried.joined(separator: "; "))
    }

    /// True when something accepts connections at the endpoint.
    public func isReachable() -> Bool {
        guard let fd = try? connectSocket() else { return false }
        close(fd)
        return true
    }

    /// Send one request and read the whole answer. `body` is sent with Content-Length.
    public func request(_ method: String, _ path: String, body: [UInt8]? = nil, headers: HTTPHeaders = HTTPHeaders()) throws -> ControlClientResponse {
        let fd = try connectSocket()
        defer { close(fd) }
        var h = headers
        if h["Host"] == nil { h["Host"] = "localhost" }
        if h["User-Agent"] == nil { h["User-Agent"] = "p2pos" }
        if h["Connection"] == nil { h["Connection"] = "close" }
        if let b = body, !b.isEmpty, h["Content-Type"] == nil { h["Content-Type"] = "application/json" }
        let bytes = HTTPParser.serialize(method: method, target: path, headers: h, body: body ?? [])
        let deadline = Monotonic.nanos() + UInt64(readTimeout * 1e9)
        try sendAll(fd, bytes, deadline: deadline)
        return try readResponse(fd, deadline: deadline, headRequest: method == "HEAD")
    }

    /// Same, with a Foundation `Data` body (e.g. from JSONSerialization or a file).
    public func request(_ method: String, _ path: String, body: Data, headers: HTTPHeaders = HTTPHeaders()) throws -> ControlClientResponse {
        try request(method, path, body: Array(body), headers: headers)
    }

    /// Convenience: JSON-encode `value` as the body.
    public func requestJSON<T: Encodable>(_ method: String, _ path: String, _ value: T) throws -> ControlClientResponse {
        let data = try JSONEncoder().encode(value)
        return try request(method, path, body: Array(data))
    }

    private func connectSocket() throws -> Int32 {
        switch endpoint {
        case .unix(let path):
            let deadline = Monotonic.nanos() + UInt64(connectTimeout * 1e9)
            while true {
                let r: ConnectOutcome
                do { r = try Sock.connectUnix(path) } catch {
                    throw ControlClientError.notReachable(endpoint: path, reason: "\(error)")
                }
                switch r {
                case .connected(let fd):
                    return fd
                case .failed(let e):
                    // A full backlog answers EAGAIN: the daemon is there but busy; retry briefly.
                    if (e == EAGAIN || e == EINTR) && Monotonic.nanos() < deadline { usleep(20_000); continue }
                    let reason: String
                    switch e {
                    case ENOENT: reason = "no socket file (is `p2pos node run` running?)"
                    case ECONNREFUSED: reason = "connection refused (stale socket; the daemon is not running)"
                    case EACCES: reason = "permission denied (join the daemon's group or use sudo)"
                    default: reason = Sock.errnoString(e)
                    }
                    throw ControlClientError.notReachable(endpoint: path, reason: reason)
                }
            }
        case .tcp(let host, let port):
            let addrs = Sock.resolve(host, port, passive: false)
            guard !addrs.isEmpty else { throw ControlClientError.notReachable(endpoint: endpoint.description, reason: "host does not resolve") }
            var lastReason = "no address"
            for ai in addrs {
                let fd = socket(ai.family, Sock.stream, 0)
                if fd < 0 { lastReason = Sock.errnoString(); continue }
                Sock.setCloseOnExec(fd)
                Sock.noSigPipe(fd)
                Sock.setNonBlocking(fd)
                var rc = ai.addr.withUnsafeBytes { raw in
                    connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(ai.addr.count))
                }
                if rc != 0 && errno == EINPROGRESS {
                    if Sock.waitFor(fd, Int16(POLLOUT), deadline: Monotonic.nanos() + UInt64(connectTimeout * 1e9)) {
                        var err: Int32 = 0
                        var len = socklen_t(MemoryLayout<Int32>.size)
                        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                        rc = err == 0 ? 0 : -1
                        if err != 0 { lastReason = Sock.errnoString(err) }
                    } else {
                        lastReason = "connect timed out after \(connectTimeout) s"
                    }
                } else if rc != 0 {
                    lastReason = Sock.errnoString()
                }
                if rc == 0 { return fd }
                close(fd)
            }
            throw ControlClientError.notReachable(endpoint: endpoint.description, reason: lastReason)
        }
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8], deadline: UInt64) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { raw in send(fd, raw.baseAddress! + off, bytes.count - off, Sock.sendFlags | Int32(MSG_DONTWAIT)) }
            if n > 0 { off += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !Sock.waitFor(fd, Int16(POLLOUT), deadline: deadline) {
                    throw ControlClientError.timeout(endpoint: endpoint.description, seconds: readTimeout)
                }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            // EPIPE/ECONNRESET: the server may have answered early (413, 503); read what it sent.
            return
        }
    }

    private func readResponse(_ fd: Int32, deadline: UInt64, headRequest: Bool) throws -> ControlClientResponse {
        var buf: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var eof = false
        func fill() throws {
            guard Sock.waitFor(fd, Int16(POLLIN), deadline: deadline) else {
                throw ControlClientError.timeout(endpoint: endpoint.description, seconds: readTimeout)
            }
            let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                buf.append(contentsOf: chunk[0..<n])
                if buf.count > maxResponseBytes {
                    throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "response exceeds \(maxResponseBytes) bytes")
                }
            } else if n == 0 {
                eof = true
            } else if errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK {
                if !buf.isEmpty || errno != ECONNRESET { eof = true; return }
                throw ControlClientError.io(endpoint: endpoint.description, reason: Sock.errnoString())
            }
        }
        while true {
            // Skip interim 1xx answers (100 Continue).
            guard let headEnd = HTTPParser.findHeadEnd(buf) else {
                if eof {
                    if buf.isEmpty { throw ControlClientError.io(endpoint: endpoint.description, reason: "connection closed without an answer") }
                    throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "truncated response head")
                }
                if buf.count > 64 * 1024 { throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "response head too large") }
                try fill()
                continue
            }
            let (status, headers) = try parseResponseHead(Array(buf[0..<headEnd]))
            if status >= 100 && status < 200 {
                buf.removeFirst(headEnd)
                continue
            }
            if headRequest || status == 204 || status == 304 {
                return ControlClientResponse(status: status, headers: headers, body: [])
            }
            if let cl = headers["Content-Length"] {
                guard let n = Int(cl.trimmingCharacters(in: .whitespaces)), n >= 0, n <= maxResponseBytes else {
                    throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "bad Content-Length \(cl)")
                }
                while buf.count < headEnd + n {
                    if eof { throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "truncated body (\(buf.count - headEnd) of \(n) bytes)") }
                    try fill()
                }
                return ControlClientResponse(status: status, headers: headers, body: Array(buf[headEnd..<(headEnd + n)]))
            }
            if headers.hasToken("Transfer-Encoding", "chunked") {
                throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "chunked responses are not supported")
            }
            while !eof { try fill() }
            return ControlClientResponse(status: status, headers: headers, body: Array(buf[headEnd...]))
        }
    }

    private func parseResponseHead(_ head: [UInt8]) throws -> (Int, HTTPHeaders) {
        // Split on LF bytes: "\r\n" is a single Character in Swift strings.
        var lines = head.split(separator: 10, omittingEmptySubsequences: false).map { line -> String in
            let l = line.last == 13 ? line.dropLast() : line
            return String(decoding: l, as: UTF8.self)
        }
        while lines.first == "" { lines.removeFirst() }
        guard let statusLine = lines.first else { throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "empty head") }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...999).contains(status) else {
            throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "malformed status line \(statusLine.prefix(80))")
        }
        var headers = HTTPHeaders()
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw ControlClientError.protocolError(endpoint: endpoint.description, reason: "malformed header line")
            }
            headers.add(String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return (status, headers)
    }
}
