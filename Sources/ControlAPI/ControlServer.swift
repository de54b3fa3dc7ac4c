import Foundation
import Support
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything the control server needs to know: where to listen and which bounds to enforce.
public struct ControlServerConfig: Sendable {
    /// Unix socket path (e.g. `<data_dir>/p2pos.sock`); nil for none.
    public var socketPath: String?
    /// Permission bits of the socket file.
    public var socketMode: mode_t = 0o660
    /// Optional TCP listen address `HOST:PORT` (`127.0.0.1:0` picks a port); host defaults to loopback.
    public var tcpListen: String?
    public var limits = HTTPLimits()
    /// Open connections served at once; more get 503 and are closed.
    public var maxConnections = 64
    /// Seconds to receive a complete request head (from accept, or from the first byte on keep-alive).
    public var headerTimeout: Double = 10
    /// Seconds to receive a declared body after the head.
    public var bodyTimeout: Double = 30
    /// Seconds a keep-alive connection may sit without a request.
    public var idleTimeout: Double = 60
    /// Seconds a handler may take before the client gets 504.
    public var handlerTimeout: Double = 30
    /// Seconds to drain one response to the client.
    public var writeTimeout: Double = 30
    /// Largest response body a handler may return (500 beyond).
    public var maxResponseBytes = 64 * 1024 * 1024
    /// Request bytes held in memory across all connections at once (heads and bodies being
    /// received). A connection holding more than 64 KiB when the total is over gets 503
    /// `OVERLOADED` and is closed, so many slow uploads cannot take the daemon's memory.
    public var maxBufferedBytes = 64 * 1024 * 1024

    public init(socketPath: String? = nil, tcpListen: String? = nil) {
        self.socketPath = socketPath
        self.tcpListen = tcpListen
    }
}

/// Counters for `/metrics` and tests.
public struct ControlServerStats: Sendable, Equatable {
    public var connectionsOpen = 0
    public var connectionsAccepted = 0
    public var connectionsRejected = 0
    /// Connections waiting for a request that were closed to make room for a new one.
    public var connectionsEvicted = 0
    public var requests = 0
    public var timeouts = 0
    public var parseErrors = 0
}

/// glibc's `malloc_trim` (malloc.h is not part of the Glibc module): returns free heap pages of
/// every arena to the OS.
@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32

/// The control API server: one poll(2) event-loop thread for all sockets, handlers on a
/// concurrent queue (or completed later from anywhere through `HTTPResponder`).
public final class ControlServer: @unchecked Sendable {
    public let config: ControlServerConfig
    public let router: Router

    private let lock = NSLock()
    private var _stats = ControlServerStats()
    // Poll thread only: request bytes held across connections, and whether freed buffers
    // should be handed back to the OS (`malloc_trim`), at most once a second.
    private var bufferedTotal = 0
    private var trimWanted = false
    private var lastTrim: UInt64 = 0
    /// Buffers with at least this capacity are given back when their request is done.
    static let trimAfterBytes = 256 * 1024
    private var completions: [(conn: UInt64, seq: UInt64, response: HTTPResponse)] = []
    private var stopping = false
    private var drainDeadline: UInt64 = 0
    private var started = false

    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private var listeners: [Int32] = []
    private var unixListener: Int32 = -1
    private var socketInode: (dev: UInt64, ino: UInt64)? = nil
    private var _tcpPort: Int? = nil
    private let finished = DispatchSemaphore(value: 0)
    private let handlerQueue = DispatchQueue(label: "p2pos.controlapi.handlers", attributes: .concurrent)
    /// Requests up to this size on inline routes run on the loop thread (no hop to the pool).
    static let inlineBodyLimit = 64 << 10

    public init(config: ControlServerConfig, router: Router) {
        self.config = config
        self.router = router
    }

    deinit {
        if wakeRead >= 0 { close(wakeRead) }
        if wakeWrite >= 0 { close(wakeWrite) }
    }

    /// Port of the TCP listener (useful with port 0), nil without TCP.
    public var tcpPort: Int? {
        lock.lock(); defer { lock.unlock() }
        return _tcpPort
    }

    public var stats: ControlServerStats {
        lock.lock(); defer { lock.unlock() }
        return _stats
    }

    /// The server's counters in Prometheus text format, for the daemon's `/metrics` route.
    public func prometheusMetrics(prefix: String = "p2pos_api") -> String {
        let s = stats
        let rows: [(String, String, String, Int)] = [
            ("connections_open", "gauge", "Control API connections being served.", s.connectionsOpen),
            ("connections_accepted_total", "counter", "Control API connections accepted.", s.connectionsAccepted),
            ("connections_rejected_total", "counter", "Connections refused with 503 over the connection limit.", s.connectionsRejected),
            ("connections_evicted_total", "counter", "Idle or slow connections closed at the connection limit to make room.", s.connectionsEvicted),
            ("requests_total", "counter", "Requests handed to handlers.", s.requests),
            ("timeouts_total", "counter", "Header, body and handler timeouts.", s.timeouts),
            ("parse_errors_total", "counter", "Malformed or over-limit requests.", s.parseErrors),
        ]
        var out = ""
        for (name, type, help, value) in rows {
            out += "# HELP \(prefix)_\(name) \(help)\n# TYPE \(prefix)_\(name) \(type)\n\(prefix)_\(name) \(value)\n"
        }
        return out
    }

    // MARK: - Lifecycle

    /// Bind the listeners and start the event-loop thread. Throws `P2POSError` with a clear
    /// reason (socket in use by a live daemon, path not a socket, bind failure).
    public func start() throws {
        lock.lock()
        precondition(!started, "ControlServer.start called twice")
        started = true
        lock.unlock()
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw P2POSError("API_START", "pipe: \(Sock.errnoString())") }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds { Sock.setNonBlocking(fd); Sock.setCloseOnExec(fd) }
        do {
            if let path = config.socketPath {
                unixListener = try listenUnix(path)
                listeners.append(unixListener)
            }
            if let tcp = config.tcpListen { listeners.append(try listenTCP(tcp)) }
        } catch {
            for fd in listeners { close(fd) }
            listeners = []
            throw error
        }
        guard !listeners.isEmpty else { throw P2POSError("API_START", "control API has neither a socket path nor a TCP address") }
        let thread = Thread { [self] in
            self.runLoop()
            self.finished.signal()
        }
        thread.name = "p2pos-controlapi"
        thread.start()
    }

    /// Stop accepting, let in-flight requests finish for up to `drain` seconds, close everything
    /// and remove the socket file (only if it is still the one this server created).
    public func stop(drain: Double = 2) {
        lock.lock()
        if !started || stopping { lock.unlock(); return }
        stopping = true
        drainDeadline = Monotonic.nanos() + UInt64(max(0, drain) * 1e9)
        lock.unlock()
        wake()
        finished.wait()
        if let path = config.socketPath, let ours = socketInode {
            var st = stat()
            if lstat(path, &st) == 0 && UInt64(st.st_dev) == ours.dev && UInt64(st.st_ino) == ours.ino {
                unlink(path)
            }
        }
        Log.info("api", "stopped", ["socket": config.socketPath ?? "-"])
    }

    private func wake() {
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
    }

    private func listenUnix(_ path: String) throws -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw P2POSError("API_SOCKET_PATH", "\(path) exists and is not a socket", hint: "remove it or choose another --socket path")
            }
            switch try Sock.connectUnix(path) {
            case .connected(let fd):
                close(fd)
                throw P2POSError("API_SOCKET_IN_USE", "another process is serving on \(path)", hint: "stop the other daemon or use another data dir")
            case .failed(let e) where e == ECONNREFUSED || e == ENOENT:
                unlink(path)  // stale: nothing answers
                Log.info("api", "stale_socket_removed", ["socket": path])
            case .failed(let e):
                // EACCES, EAGAIN (a live but saturated daemon), …: never delete what we cannot judge.
                throw P2POSError("API_SOCKET_IN_USE", "cannot tell whether \(path) is in use: \(Sock.errnoString(e))", hint: "remove the file if no daemon uses it")
            }
        }
        let (addr, len) = try Sock.unixAddress(path)
        let fd = socket(AF_UNIX, Sock.stream, 0)
        guard fd >= 0 else { throw P2POSError("API_START", "socket: \(Sock.errnoString())") }
        Sock.setCloseOnExec(fd)
        var a = addr
        let rc = withUnsafePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw P2POSError("API_BIND", "cannot bind control socket \(path): \(Sock.errnoString(e))", hint: "check that the directory exists and is writable")
        }
        if chmod(path, config.socketMode) != 0 {
            Log.warn("api", "socket_chmod_failed", ["socket": path, "reason": Sock.errnoString()])
        }
        if lstat(path, &st) == 0 { socketInode = (UInt64(st.st_dev), UInt64(st.st_ino)) }
        guard listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw P2POSError("API_BIND", "listen on \(path): \(Sock.errnoString(e))")
        }
        Sock.setNonBlocking(fd)
        Log.info("api", "listen", ["socket": path])
        return fd
    }

    private func listenTCP(_ spec: String) throws -> Int32 {
        guard let (host0, port) = Sock.splitHostPort(spec, defaultPort: nil) else {
            throw P2POSError("API_LISTEN", "api.listen \(spec) is not HOST:PORT")
        }
        let host = host0.isEmpty ? "127.0.0.1" : host0
        guard let ai = Sock.resolve(host, port, passive: true).first else {
            throw P2POSError("API_LISTEN", "api.listen host \(host) does not resolve")
        }
        let fd = socket(ai.family, Sock.stream, 0)
        guard fd >= 0 else { throw P2POSError("API_LISTEN", "socket: \(Sock.errnoString())") }
        Sock.setCloseOnExec(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = ai.addr.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(ai.addr.count))
        }
        guard rc == 0, listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw P2POSError("API_LISTEN", "cannot listen on \(spec): \(Sock.errnoString(e))")
        }
        Sock.setNonBlocking(fd)
        let bound = Sock.localPort(fd)
        lock.lock(); _tcpPort = bound; lock.unlock()
        Log.info("api", "listen", ["tcp": "\(host):\(bound)"])
        return fd
    }

    // MARK: - Connections

    enum State {
        case head            // waiting for (more of) a request head
        case body(HTTPRequestHead)
        case handling(seq: UInt64)
        case writing
        case lingering       // response sent, write side shut, discarding input until EOF or deadline
    }

    final class Conn {
        let id: UInt64
        let fd: Int32
        var counted: Bool
        var state: State = .head
        var inBuf: [UInt8] = []
        var scanFrom = 0
        var out: [UInt8] = []
        var outOffset = 0
        var closeAfterWrite = false
        var deadline: UInt64
        var seq: UInt64 = 0
        var headOnly = false
        var requestLine = ""
        var chunked: ChunkedBodyDecoder? = nil
        var remote = ""
        var requestStart: UInt64 = 0
        var keepAlive = true
        var eof = false
        var discarded = 0
        /// Request bytes this connection holds (counted in the server's total).
        var buffered = 0

        init(id: UInt64, fd: Int32, counted: Bool, deadline: UInt64) {
            self.id = id
            self.fd = fd
            self.counted = counted
            self.deadline = deadline
        }
    }

    private func seconds(_ s: Double) -> UInt64 { UInt64(max(0, s) * 1e9) }

    private func bump(_ f: (inout ControlServerStats) -> Void) {
        lock.lock(); f(&_stats); lock.unlock()
    }

    // MARK: - Event loop

    private func runLoop() {
        router.markRoundThread()
        var conns: [UInt64: Conn] = [:]
        var nextID: UInt64 = 1
        var readBuf = [UInt8](repeating: 0, count: 64 * 1024)
        var listening = true
        var acceptPausedUntil: UInt64 = 0
        var rejectedLog = LogEvery()
        var evictedLog = LogEvery()
        var refusedLog = LogEvery()
        // The poll set and the connection behind each entry, rebuilt every round in place (new
        // arrays grown one append at a time were ~1 % of a loaded leader's CPU).
        var pfds: [pollfd] = []
        var order: [Conn] = []

        func closeConn(_ c: Conn) {
            close(c.fd)
            conns[c.id] = nil
            if c.counted { bump { $0.connectionsOpen -= 1 } }
            if c.inBuf.capacity >= ControlServer.trimAfterBytes { trimWanted = true }
            bufferedTotal -= c.buffered
            c.buffered = 0
        }

        while true {
            lock.lock()
            let isStopping = stopping
            let drainBy = drainDeadline
            let done = completions
            completions.removeAll()
            lock.unlock()

            let now0 = Monotonic.nanos()
            if isStopping {
                if listening {
                    for fd in listeners { close(fd) }
                    listeners = []
                    listening = false
                }
                for c in conns.values {
                    if case .head = c.state, c.inBuf.isEmpty, c.out.count == c.outOffset { closeConn(c) }
                }
                if conns.isEmpty || now0 >= drainBy {
                    for c in conns.values { closeConn(c) }
                    return
                }
            }

            for (cid, seq, response) in done {
                guard let c = conns[cid], case .handling(let s) = c.state, s == seq else { continue }
                queueResponse(c, response)
            }

            // Build the poll set.
            pfds.removeAll(keepingCapacity: true)
            order.removeAll(keepingCapacity: true)
            pfds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            // Out of file descriptors: stop polling the listeners for a moment instead of spinning.
            let acceptPaused = now0 < acceptPausedUntil
            if listening { for fd in listeners { pfds.append(pollfd(fd: acceptPaused ? -1 : fd, events: Int16(POLLIN), revents: 0)) } }
            let firstConn = pfds.count
            var nextDeadline = now0 + 1_000_000_000
            for c in conns.values {
                var ev: Int16 = 0
                switch c.state {
                case .head, .body, .lingering: ev |= Int16(POLLIN)
                case .handling, .writing: break
                }
                if c.outOffset < c.out.count { ev |= Int16(POLLOUT) }
                // A peer that hung up while its handler runs would make poll report POLLHUP forever.
                let quiet: Bool
                if case .handling = c.state { quiet = c.eof } else { quiet = false }
                pfds.append(pollfd(fd: quiet ? -1 : c.fd, events: ev, revents: 0))
                order.append(c)
                nextDeadline = min(nextDeadline, c.deadline)
            }
            if isStopping { nextDeadline = min(nextDeadline, drainBy) }
            let waitMs = nextDeadline > now0 ? Int32((nextDeadline - now0 + 999_999) / 1_000_000) : 0
            let rc = poll(&pfds, nfds_t(pfds.count), waitMs)
            if rc < 0 && errno != EINTR {
                Log.error("api", "poll_failed", ["reason": Sock.errnoString()])
                usleep(10_000)
                continue
            }
            let now = Monotonic.nanos()

            if pfds[0].revents != 0 {
                var sink = [UInt8](repeating: 0, count: 256)
                while read(wakeRead, &sink, sink.count) > 0 {}
            }

            // Accept.
            if listening {
                for i in 1..<firstConn where pfds[i].revents & Int16(POLLIN) != 0 {
                    while true {
                        let fd = accept(pfds[i].fd, nil, nil)
                        if fd < 0 {
                            if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                                acceptPausedUntil = now + 100_000_000
                                Log.warn("api", "accept_failed", ["reason": Sock.errnoString()])
                            }
                            break
                        }
                        Sock.setNonBlocking(fd)
                        Sock.setCloseOnExec(fd)
                        Sock.noSigPipe(fd)
                        let open = conns.values.filter { $0.counted }.count
                        if conns.count >= config.maxConnections * 2 {
                            bump { $0.connectionsRejected += 1 }
                            close(fd)
                            continue
                        }
                        if open >= config.maxConnections,
                           let victim = conns.values.filter({ c in
                               if case .head = c.state { return c.counted } else { return false }
                           }).min(by: { $0.id < $1.id }) {
                            // Full, but some connections are only waiting for a request (idle
                            // keep-alive, or a head arriving slowly): the oldest of them makes
                            // room, so silent clients cannot hold every slot. A request already
                            // being read, handled or answered is never dropped.
                            closeConn(victim)
                            bump { $0.connectionsEvicted += 1 }
                            if let n = evictedLog.count(now: now) {
                                Log.warn("api", "connection_evicted", ["reason": "max_connections", "limit": config.maxConnections, "count": n])
                            }
                        } else if open >= config.maxConnections {
                            bump { $0.connectionsRejected += 1 }
                            // Answer 503 and linger briefly so the client can read it.
                            let c = Conn(id: nextID, fd: fd, counted: false, deadline: now + seconds(2))
                            nextID += 1
                            conns[c.id] = c
                            c.keepAlive = false
                            c.state = .writing
                            c.out = HTTPResponse.error(status: 503, code: "OVERLOADED", message: "too many connections (limit \(config.maxConnections)); retry later")
                                .serialized(keepAlive: false)
                            c.closeAfterWrite = true
                            // At most one line per second under a connection flood.
                            if let n = rejectedLog.count(now: now) {
                                Log.warn("api", "connection_rejected", ["reason": "max_connections", "limit": config.maxConnections, "count": n])
                            }
                            continue
                        }
                        let c = Conn(id: nextID, fd: fd, counted: true, deadline: now + seconds(config.headerTimeout))
                        c.remote = Sock.peerDescription(fd, unix: pfds[i].fd == unixListener)
                        nextID += 1
                        conns[c.id] = c
                        bump { $0.connectionsOpen += 1; $0.connectionsAccepted += 1 }
                    }
                }
            }

            // I/O on connections.
            for (k, c) in order.enumerated() {
                guard conns[c.id] != nil else { continue }
                let re = pfds[firstConn + k].revents
                if re & Int16(POLLOUT) != 0 || (re & Int16(POLLERR | POLLHUP) != 0 && c.outOffset < c.out.count) {
                    if !flush(c) { closeConn(c); continue }
                }
                if re & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    switch c.state {
                    case .lingering:
                        let n = recv(c.fd, &readBuf, readBuf.count, 0)
                        if n > 0 {
                            c.discarded += n
                            if c.discarded > 4 * 1024 * 1024 { closeConn(c); continue }
                        } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                            closeConn(c); continue
                        }
                    case .head, .body:
                        var want = readBuf.count
                        if case .body(let h) = c.state, !h.chunked {
                            let need = h.headLength + h.contentLength - c.inBuf.count
                            want = max(1, min(readBuf.count, need + 16 * 1024))
                        }
                        let n = recv(c.fd, &readBuf, want, 0)
                        if n > 0 {
                            c.inBuf.append(contentsOf: readBuf[0..<n])
                            if case .head = c.state, c.seq > 0, c.inBuf.count == n,
                               HTTPParser.leadingEmptyLineBytes(c.inBuf) < c.inBuf.count {
                                // First byte of a keep-alive request: the head timeout starts now.
                                // Stray CRLFs alone (dropped by `process`) leave the idle
                                // deadline as it was, so they cannot keep a connection open.
                                c.deadline = now + seconds(config.headerTimeout)
                            }
                        } else if n == 0 {
                            c.eof = true
                        } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                            closeConn(c); continue
                        }
                    case .handling, .writing:
                        if re & Int16(POLLERR | POLLHUP) != 0 && c.outOffset >= c.out.count {
                            if case .handling = c.state { c.eof = true } else { closeConn(c); continue }
                        }
                    }
                }
                if conns[c.id] == nil { continue }
                process(c, now: now)
                account(c)
                if bufferedTotal > config.maxBufferedBytes && c.buffered > 64 * 1024 {
                    if let n = refusedLog.count(now: now) {
                        Log.warn("api", "request_refused", ["reason": "buffered_bytes", "total": bufferedTotal, "limit": config.maxBufferedBytes, "count": n])
                    }
                    sendError(c, HTTPError(status: 503, code: "OVERLOADED", message: "the server holds too many request bytes across connections; retry later"), now: now)
                }
                if c.eof, case .head = c.state, c.outOffset >= c.out.count {
                    closeConn(c); continue
                }
                if c.eof, case .body = c.state {
                    closeConn(c); continue
                }
            }

            order.removeAll(keepingCapacity: true)   // closed connections go now, not a round later
            router.roundEnded()

            if trimWanted && now &- lastTrim > 1_000_000_000 {
                // Large request buffers were freed: give the pages back instead of keeping the
                // high-water mark of a burst for the life of the daemon.
                trimWanted = false
                lastTrim = now
                _ = glibcMallocTrim(0)
            }

            // Timeouts.
            for c in Array(conns.values) where now >= c.deadline {
                switch c.state {
                case .head:
                    if c.inBuf.isEmpty && c.seq > 0 {
                        closeConn(c)  // idle keep-alive connection
                    } else {
                        bump { $0.timeouts += 1 }
                        Log.warn("api", "request_timeout", ["reason": "header_timeout", "seconds": config.headerTimeout])
                        sendError(c, HTTPError(status: 408, code: "TIMEOUT", message: "request head not received within \(Int(config.headerTimeout)) s"), now: now)
                    }
                case .body:
                    bump { $0.timeouts += 1 }
                    Log.warn("api", "request_timeout", ["reason": "body_timeout", "seconds": config.bodyTimeout])
                    sendError(c, HTTPError(status: 408, code: "TIMEOUT", message: "request body not received within \(Int(config.bodyTimeout)) s"), now: now)
                case .handling:
                    bump { $0.timeouts += 1 }
                    Log.warn("api", "handler_timeout", ["seconds": config.handlerTimeout])
                    c.keepAlive = false
                    queueResponse(c, HTTPResponse.error(status: 504, code: "HANDLER_TIMEOUT", message: "the daemon did not answer within \(Int(config.handlerTimeout)) s"))
                case .writing, .lingering:
                    closeConn(c)
                }
            }
        }
    }

    /// Write as much of `c.out` as the socket takes; false on a fatal error.
    private func flush(_ c: Conn) -> Bool {
        while c.outOffset < c.out.count {
            let n = c.out.withUnsafeBytes { raw in
                send(c.fd, raw.baseAddress! + c.outOffset, c.out.count - c.outOffset, Sock.sendFlags)
            }
            if n > 0 {
                c.outOffset += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        c.out.removeAll(keepingCapacity: false)
        c.outOffset = 0
        if case .writing = c.state {
            if c.closeAfterWrite {
                shutdown(c.fd, Int32(SHUT_WR))
                if c.counted {
                    // A lingering close no longer occupies a serving slot (still bounded by 2 x max).
                    c.counted = false
                    bump { $0.connectionsOpen -= 1 }
                }
                c.state = .lingering
                c.deadline = Monotonic.nanos() + seconds(2)
            } else {
                c.state = .head
                c.deadline = Monotonic.nanos() + seconds(c.inBuf.isEmpty ? config.idleTimeout : config.headerTimeout)
                process(c, now: Monotonic.nanos())
            }
        }
        return true
    }

    /// Advance the request state machine with whatever is buffered.
    private func process(_ c: Conn, now: UInt64) {
        while true {
            switch c.state {
            case .head:
                // Stray CRLFs between requests are ignored (RFC 9112 §2.2), not a started request.
                let lead = HTTPParser.leadingEmptyLineBytes(c.inBuf)
                if lead > 0 && lead == c.inBuf.count { c.inBuf.removeAll(); c.scanFrom = 0 }
                if c.inBuf.isEmpty { return }
                guard let end = HTTPParser.findHeadEnd(c.inBuf, from: max(0, c.scanFrom - 3)) else {
                    c.scanFrom = c.inBuf.count
                    if let e = HTTPParser.checkIncomplete(c.inBuf, limits: config.limits) {
                        bump { $0.parseErrors += 1 }
                        sendError(c, e, now: now)
                    }
                    return
                }
                c.scanFrom = 0
                switch HTTPParser.parseHead(c.inBuf, headEnd: end, limits: config.limits) {
                case .failure(let e):
                    bump { $0.parseErrors += 1 }
                    sendError(c, e, now: now)
                    return
                case .success(let head):
                    c.state = .body(head)
                    c.deadline = now + seconds(config.bodyTimeout)
                    let bodyPending = head.chunked ? c.inBuf.count <= head.headLength
                        : (head.contentLength > 0 && c.inBuf.count < head.headLength + head.contentLength)
                    if head.expectContinue && bodyPending {
                        c.out.append(contentsOf: Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
                        _ = flush(c)
                    }
                }
            case .body(let head):
                let body: [UInt8]
                if head.chunked {
                    var decoder = c.chunked ?? ChunkedBodyDecoder(start: head.headLength, limits: config.limits)
                    c.chunked = nil  // keep the decoder's body uniquely referenced (no copy per feed)
                    let outcome = decoder.feed(c.inBuf)
                    c.chunked = decoder
                    switch outcome {
                    case .needMore:
                        // Bound the framing too: tiny chunks would make the raw bytes held many
                        // times the body (1-byte chunks: 6 raw bytes per body byte).
                        if decoder.framingBytes > 64 * 1024 + decoder.body.count / 8 {
                            c.chunked = nil
                            sendError(c, HTTPError(status: 413, code: "BODY_TOO_LARGE", message: "chunked framing overhead of \(decoder.framingBytes) bytes for a \(decoder.body.count)-byte body; send larger chunks"), now: now)
                        }
                        return
                    case .failure(let e):
                        c.chunked = nil
                        bump { $0.parseErrors += 1 }
                        sendError(c, e, now: now)
                        return
                    case .done(let end):
                        c.chunked = nil
                        body = decoder.body
                        c.inBuf.removeFirst(end)
                    }
                } else {
                    let total = head.headLength + head.contentLength
                    guard c.inBuf.count >= total else { return }
                    body = Array(c.inBuf[head.headLength..<total])
                    c.inBuf.removeFirst(total)
                }
                if c.inBuf.capacity >= ControlServer.trimAfterBytes && c.inBuf.count < c.inBuf.capacity / 4 {
                    c.inBuf = Array(c.inBuf)    // a keep-alive connection does not keep a burst's capacity
                    trimWanted = true
                }
                var parsed = HTTPParser.makeRequest(head, body: body)
                parsed.remote = c.remote
                let request = parsed
                c.seq += 1
                let seq = c.seq
                c.keepAlive = request.keepAlive
                c.headOnly = request.method == "HEAD"
                c.requestLine = "\(request.method) \(request.path)"
                c.requestStart = now
                c.state = .handling(seq: seq)
                c.deadline = now + seconds(config.handlerTimeout)
                bump { $0.requests += 1 }
                let cid = c.id
                let responder = HTTPResponder { [weak self] response in
                    guard let self = self else { return }
                    self.lock.lock()
                    // Completions waiting for the loop already woke it: one wake-up per batch of
                    // answers (a commit answers many clients at once), not one per answer.
                    let first = self.completions.isEmpty
                    self.completions.append((conn: cid, seq: seq, response: response))
                    self.lock.unlock()
                    if first { self.wake() }
                }
                let router = self.router
                let queue = handlerQueue
                router.dispatch(request, responder: responder, inlineAllowed: request.body.count <= ControlServer.inlineBodyLimit) { work in
                    queue.async(execute: work)
                }
                return
            case .handling, .writing, .lingering:
                return
            }
        }
    }

    private func sendError(_ c: Conn, _ e: HTTPError, now: UInt64) {
        c.keepAlive = false
        c.headOnly = false
        c.seq += 1
        // The request is abandoned and nothing more is parsed on this connection.
        if c.inBuf.capacity >= ControlServer.trimAfterBytes { trimWanted = true }
        c.inBuf = []
        c.chunked = nil
        account(c)
        queueResponse(c, e.response)
    }

    /// Update the server-wide count of request bytes held with this connection's current share.
    private func account(_ c: Conn) {
        let now = c.inBuf.count + (c.chunked?.body.count ?? 0)
        bufferedTotal += now - c.buffered
        c.buffered = now
    }

    private func queueResponse(_ c: Conn, _ response0: HTTPResponse) {
        var response = response0
        if response.body.count > config.maxResponseBytes {
            response = .error(status: 500, code: "RESPONSE_TOO_LARGE", message: "response of \(response.body.count) bytes exceeds \(config.maxResponseBytes)")
        }
        lock.lock()
        let isStopping = stopping
        lock.unlock()
        let keep = c.keepAlive && !isStopping && !c.eof
        c.closeAfterWrite = !keep
        if Log.shared.level <= .debug {
            let ms = c.requestStart > 0 ? Double(Monotonic.nanos() - c.requestStart) / 1e6 : 0
            Log.debug("api", "request", ["request": c.requestLine.isEmpty ? "-" : c.requestLine, "remote": c.remote, "status": response.status,
                                         "ms": String(format: "%.1f", ms), "bytes": response.body.count])
        }
        c.requestLine = ""
        c.requestStart = 0
        c.out.append(contentsOf: response.serialized(keepAlive: keep, headOnly: c.headOnly, date: HTTPStatus.httpDate(Timestamp.now().seconds)))
        c.state = .writing
        c.deadline = Monotonic.nanos() + seconds(config.writeTimeout)
        if !flush(c) { c.state = .writing; c.deadline = 0 }  // fatal write error: time out immediately and close
    }
}
