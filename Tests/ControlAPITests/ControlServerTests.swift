import XCTest
import Foundation
import Support
@testable import ControlAPI
#if canImport(Glibc)
import Glibc
#endif

/// A raw client socket for tests that need byte-level control.
final class RawConn: @unchecked Sendable {
    let fd: Int32
    var buffer: [UInt8] = []

    init(path: String) throws {
        switch try Sock.connectUnix(path) {
        case .connected(let fd): self.fd = fd
        case .failed(let e): throw P2POSError("TEST", "connect \(path): \(Sock.errnoString(e))")
        }
    }

    deinit { close(fd) }

    @discardableResult
    func send(_ s: String) -> Bool { send(Array(s.utf8)) }

    @discardableResult
    func send(_ b: [UInt8]) -> Bool {
        var off = 0
        while off < b.count {
            let n = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, b.count - off, Sock.sendFlags) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// Read one response (status, headers, body) or nil on timeout/EOF.
    func readResponse(timeout: Double = 5) -> (status: Int, headers: HTTPHeaders, body: String)? {
        let deadline = Monotonic.nanos() + UInt64(timeout * 1e9)
        while true {
            if let end = HTTPParser.findHeadEnd(buffer) {
                let head = String(decoding: buffer[0..<end], as: UTF8.self)
                let lines = head.components(separatedBy: "\r\n")
                let status = Int(lines[0].split(separator: " ")[1]) ?? 0
                var headers = HTTPHeaders()
                for l in lines.dropFirst() where l.contains(":") {
                    let i = l.firstIndex(of: ":")!
                    headers.add(String(l[..<i]), l[l.index(after: i)...].trimmingCharacters(in: .whitespaces))
                }
                let len = Int(headers["Content-Length"] ?? "0") ?? 0
                if buffer.count >= end + len {
                    let body = String(decoding: buffer[end..<(end + len)], as: UTF8.self)
                    buffer.removeFirst(end + len)
                    return (status, headers, body)
                }
            }
            guard Sock.waitFor(fd, Int16(POLLIN), deadline: deadline) else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return nil }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// True when the server closed the connection within `timeout`.
    func closedByPeer(timeout: Double = 5) -> Bool {
        let deadline = Monotonic.nanos() + UInt64(timeout * 1e9)
        while Sock.waitFor(fd, Int16(POLLIN), deadline: deadline) {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return true }
        }
        return false
    }
}

final class ControlServerTests: XCTestCase {
    var dir = ""
    var servers: [ControlServer] = []

    override func setUp() {
        var template = Array("/tmp/p2pos-api-XXXXXX".utf8CString)
        dir = String(cString: mkdtemp(&template)!)
        Log.shared.level = .error
    }

    override func tearDown() {
        for s in servers { s.stop(drain: 0) }
        servers = []
        try? FileManager.default.removeItem(atPath: dir)
    }

    func makeRouter() -> Router {
        let router = Router()
        router.get("/healthz") { _ in .jsonObject(["status": "ok"]) }
        router.get("/v1/p2p/sessions/{id}") { req in .jsonObject(["id": req.param("id") ?? ""]) }
        router.post("/v1/echo") { req in .jsonObject(["echo": try req.jsonObject()]) }
        router.get("/metrics") { _ in .prometheus("p2pos_up 1\n") }
        router.get("/whoami") { req in .text(req.remote) }
        router.addCallback("GET", "/slow") { _, responder in
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { responder.complete(.jsonObject(["slow": true])) }
        }
        router.addCallback("GET", "/never") { _, _ in }
        router.addTask("GET", "/task") { _ in
            try await Task.sleep(nanoseconds: 20_000_000)
            return .jsonObject(["task": true])
        }
        return router
    }

    func startServer(_ configure: (inout ControlServerConfig) -> Void = { _ in }) throws -> (ControlServer, String) {
        let path = dir + "/p2pos.sock"
        var config = ControlServerConfig(socketPath: path)
        configure(&config)
        let server = ControlServer(config: config, router: makeRouter())
        try server.start()
        servers.append(server)
        return (server, path)
    }

    // MARK: basics

    func testRoutingAndClient() throws {
        let (_, path) = try startServer()
        let client = ControlClient(socketPath: path)
        let r = try client.request("GET", "/healthz")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.bodyText, "{\"status\":\"ok\"}\n")
        XCTAssertEqual(r.headers["Content-Type"], "application/json")
        XCTAssertNotNil(r.headers["Date"])
        let p = try client.request("GET", "/v1/p2p/sessions/abc")
        XCTAssertEqual(p.bodyText, "{\"id\":\"abc\"}\n")
        let e = try client.request("POST", "/v1/echo", body: Array("{\"a\":[1,2]}".utf8))
        XCTAssertEqual(e.bodyText, "{\"echo\":{\"a\":[1,2]}}\n")
        let m = try client.request("GET", "/metrics")
        XCTAssertEqual(m.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(m.bodyText, "p2pos_up 1\n")
        let nf = try client.request("GET", "/nope")
        XCTAssertEqual(nf.status, 404)
        XCTAssertEqual(nf.apiError?.code, "NOT_FOUND")
        let na = try client.request("POST", "/healthz")
        XCTAssertEqual(na.status, 405)
        let bad = try client.request("POST", "/v1/echo", body: Array("{oops".utf8))
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual(bad.apiError?.code, "BAD_JSON")
        XCTAssertEqual(try client.request("GET", "/slow").bodyText, "{\"slow\":true}\n")
        XCTAssertEqual(try client.request("GET", "/task").bodyText, "{\"task\":true}\n")
        #if os(Linux)
        XCTAssertEqual(try client.request("GET", "/whoami").bodyText, "uid=\(getuid()) gid=\(getgid()) pid=\(getpid())")
        #endif
        let head = try client.request("HEAD", "/healthz")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.body, [])
    }

    /// Parameterless routes are found by a direct lookup; the answers must be the scan's.
    func testRouteMatching() {
        let router = Router()
        router.get("/v1/p2p/sessions/{id}") { _ in .text("param") }
        router.get("/v1/p2p/sessions/open") { _ in .text("literal") }
        router.post("/v1/p2p/tx") { _ in .text("tx") }
        router.get("/v1/p2p/stats") { _ in .text("old") }
        router.get("/v1/p2p/stats") { _ in .text("stats") }    // replaces the first
        func pattern(_ m: String, _ p: String) -> String? {
            if case .found(_, _, let pat) = router.match(method: m, path: p) { return pat }
            return nil
        }
        XCTAssertEqual(pattern("GET", "/v1/p2p/sessions/open"), "/v1/p2p/sessions/open")
        XCTAssertEqual(pattern("GET", "/v1/p2p/sessions/ope%6e"), "/v1/p2p/sessions/open", "percent-encoded: decoded first")
        XCTAssertEqual(pattern("GET", "/v1/p2p/sessions/x"), "/v1/p2p/sessions/{id}")
        if case .found(_, let params, _) = router.match(method: "GET", path: "/v1/p2p/sessions/a%2Fb") {
            XCTAssertEqual(params, ["id": "a/b"])
        } else { XCTFail("param route not found") }
        XCTAssertEqual(pattern("POST", "/v1/p2p/tx"), "/v1/p2p/tx")
        XCTAssertEqual(pattern("HEAD", "/v1/p2p/stats"), "/v1/p2p/stats", "HEAD falls back to GET")
        if case .methodNotAllowed(let allowed) = router.match(method: "POST", path: "/v1/p2p/stats") {
            XCTAssertEqual(allowed, ["GET", "HEAD"])
        } else { XCTFail("POST on a GET route must be 405") }
        if case .notFound = router.match(method: "POST", path: "/v1/p2p/tx/") {} else { XCTFail("trailing slash is another path") }
        if case .badPath = router.match(method: "GET", path: "/v1/p2p/sessions/%zz") {} else { XCTFail("bad escape") }
        if case .found(let h, _, _) = router.match(method: "GET", path: "/v1/p2p/stats"), case .sync(let f) = h {
            XCTAssertEqual(try f(HTTPRequest(method: "GET", target: "/v1/p2p/stats")).body, Array("stats".utf8))
        } else { XCTFail("stats route") }
    }

    func testSocketModeAndStaleSocket() throws {
        let path = dir + "/p2pos.sock"
        // A stale socket file (bound, nobody listening) is replaced.
        let stale = socket(AF_UNIX, Sock.stream, 0)
        var (addr, len) = try Sock.unixAddress(path)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, len) } }
        close(stale)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let (server, _) = try startServer()
        var st = stat()
        XCTAssertEqual(lstat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o660)
        XCTAssertEqual(try ControlClient(socketPath: path).request("GET", "/healthz").status, 200)
        // A live socket is never taken over.
        let second = ControlServer(config: ControlServerConfig(socketPath: path), router: Router())
        XCTAssertThrowsError(try second.start()) { err in
            XCTAssertEqual((err as? P2POSError)?.code, "API_SOCKET_IN_USE")
        }
        XCTAssertEqual(try ControlClient(socketPath: path).request("GET", "/healthz").status, 200)
        // A regular file at the path is not deleted.
        let other = dir + "/file"
        _ = FileManager.default.createFile(atPath: other, contents: Data("x".utf8))
        XCTAssertThrowsError(try ControlServer(config: ControlServerConfig(socketPath: other), router: Router()).start())
        XCTAssertTrue(FileManager.default.fileExists(atPath: other))
        server.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "stop removes the socket file")
    }

    func testClientNotReachable() throws {
        let client = ControlClient(socketPath: dir + "/missing.sock")
        XCTAssertThrowsError(try client.request("GET", "/healthz")) { err in
            XCTAssertTrue((err as? ControlClientError)?.isNotReachable == true, "\(err)")
        }
        XCTAssertFalse(client.isReachable())
        let tcp = ControlClient(host: "127.0.0.1", port: 1)
        XCTAssertThrowsError(try tcp.request("GET", "/healthz")) { err in
            XCTAssertTrue((err as? ControlClientError)?.isNotReachable == true, "\(err)")
        }
    }

    func testFirstReachableSocket() throws {
        let (_, path) = try startServer()
        let missing = dir + "/missing.sock"
        let client = try ControlClient.firstReachable(socketPaths: [missing, "", path, missing])
        XCTAssertEqual(try client.request("GET", "/healthz").status, 200)
        XCTAssertThrowsError(try ControlClient.firstReachable(socketPaths: [missing, dir + "/other.sock"])) { e in
            guard case .notReachable(_, let reason)? = e as? ControlClientError else { return XCTFail("\(e)") }
            XCTAssertTrue(reason.contains(missing) && reason.contains("other.sock"), reason)
        }
    }

    func testTCPListener() throws {
        let (server, _) = try startServer { $0.tcpListen = "127.0.0.1:0" }
        let port = try XCTUnwrap(server.tcpPort)
        XCTAssertGreaterThan(port, 0)
        let r = try ControlClient(host: "127.0.0.1", port: port).request("GET", "/healthz")
        XCTAssertEqual(r.status, 200)
        XCTAssertTrue(try ControlClient(host: "127.0.0.1", port: port).request("GET", "/whoami").bodyText.hasPrefix("127.0.0.1:"))
        // No host means loopback, never all interfaces.
        let loop = ControlServer(config: ControlServerConfig(tcpListen: ":0"), router: makeRouter())
        try loop.start()
        servers.append(loop)
        XCTAssertEqual(try ControlClient(host: "127.0.0.1", port: XCTUnwrap(loop.tcpPort)).request("GET", "/healthz").status, 200)
        XCTAssertThrowsError(try ControlServer(config: ControlServerConfig(tcpListen: "nonsense"), router: Router()).start())
    }

    func testKeepAliveAndPipelining() throws {
        let (server, path) = try startServer()
        let c = try RawConn(path: path)
        for i in 0..<3 {
            c.send("GET /v1/p2p/sessions/s\(i) HTTP/1.1\r\nHost: x\r\n\r\n")
            let r = try XCTUnwrap(c.readResponse())
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.body, "{\"id\":\"s\(i)\"}\n")
            XCTAssertEqual(r.headers["Connection"], "keep-alive")
        }
        // Two pipelined requests in one write, answered in order.
        c.send("GET /slow HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.body, "{\"slow\":true}\n")
        let last = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(last.body, "{\"status\":\"ok\"}\n")
        XCTAssertEqual(last.headers["Connection"], "close")
        XCTAssertTrue(c.closedByPeer())
        XCTAssertEqual(server.stats.requests, 5)
        let metrics = server.prometheusMetrics()
        XCTAssertTrue(metrics.contains("# TYPE p2pos_api_requests_total counter\np2pos_api_requests_total 5\n"), metrics)
    }

    func testChunkedUploadAndKeepAlive() throws {
        let (_, path) = try startServer()
        let c = try RawConn(path: path)
        c.send("POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n")
        Thread.sleep(forTimeInterval: 0.05)
        c.send("3\r\n:1}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.body, "{\"echo\":{\"a\":1}}\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        // Over the body limit while chunking: 413 and close.
        let big = try RawConn(path: path)
        big.send("POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = "100000\r\n" + String(repeating: "x", count: 0x100000) + "\r\n"
        for _ in 0..<5 { if !big.send(chunk) { break } }
        XCTAssertEqual(big.readResponse()?.status, 413)
    }

    func testExpectContinue() throws {
        let (_, path) = try startServer()
        let c = try RawConn(path: path)
        c.send("POST /v1/echo HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 100)
        c.send("{}")
        XCTAssertEqual(c.readResponse()?.body, "{\"echo\":{}}\n")
    }

    // MARK: limits

    func testMalformedRequestGets400AndClose() throws {
        let (server, path) = try startServer()
        let c = try RawConn(path: path)
        c.send("GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 400)
        XCTAssertTrue(r.body.contains("\"code\":\"BAD_REQUEST\""))
        XCTAssertTrue(c.closedByPeer())
        let c2 = try RawConn(path: path)
        c2.send("POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
        XCTAssertEqual(c2.readResponse()?.status, 501)
        XCTAssertEqual(server.stats.parseErrors, 2)
    }

    func testHugeDeclaredBodyGets413WithoutReadingIt() throws {
        let (_, path) = try startServer()
        let c = try RawConn(path: path)
        let t0 = Date()
        c.send("POST /v1/echo HTTP/1.1\r\nContent-Length: 104857600\r\n\r\n")
        // Keep sending a little body, as a naive client would; the answer comes anyway.
        _ = c.send([UInt8](repeating: 0x41, count: 256 * 1024))
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 413)
        XCTAssertTrue(r.body.contains("BODY_TOO_LARGE"))
        XCTAssertEqual(r.headers["Connection"], "close")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 3)
        // Through the client as well.
        let big = [UInt8](repeating: 0x20, count: 5 * 1024 * 1024)
        let r2 = try ControlClient(socketPath: path).request("POST", "/v1/echo", body: big)
        XCTAssertEqual(r2.status, 413)
    }

    func testHeadersTooLarge() throws {
        let (_, path) = try startServer()
        let c = try RawConn(path: path)
        c.send("GET /healthz HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 20 * 1024) + "\r\n\r\n")
        let r = try XCTUnwrap(c.readResponse())
        XCTAssertEqual(r.status, 431)
        let c2 = try RawConn(path: path)
        c2.send("GET /healthz HTTP/1.1\r\n" + (0..<150).map { "H\($0): v\r\n" }.joined() + "\r\n")
        XCTAssertEqual(c2.readResponse()?.status, 431)
    }

    func testSlowClientDoesNotBlockOthers() throws {
        let (server, path) = try startServer { $0.headerTimeout = 3 }
        let slow = try RawConn(path: path)
        let request = Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".utf8)
        let t0 = Date()
        let sender = Thread {
            for b in request {
                if !slow.send([b]) { return }
                Thread.sleep(forTimeInterval: 1)
            }
        }
        sender.start()
        // Meanwhile other clients are served promptly.
        let client = ControlClient(socketPath: path, readTimeout: 2)
        for _ in 0..<20 {
            let s = Date()
            XCTAssertEqual(try client.request("GET", "/healthz").status, 200)
            XCTAssertLessThan(Date().timeIntervalSince(s), 1.5, "a fast request waited behind the slow client")
        }
        let r = try XCTUnwrap(slow.readResponse(timeout: 8))
        XCTAssertEqual(r.status, 408)
        XCTAssertTrue(r.body.contains("TIMEOUT"))
        let elapsed = Date().timeIntervalSince(t0)
        XCTAssertGreaterThan(elapsed, 2.5)
        XCTAssertLessThan(elapsed, 6)
        XCTAssertGreaterThanOrEqual(server.stats.timeouts, 1)
    }

    func testTooManyConnections() throws {
        let (server, path) = try startServer { $0.maxConnections = 4; $0.handlerTimeout = 3 }
        // Every slot has a request in progress (a handler that never answers): no room at all.
        let busy = try (0..<4).map { _ in try RawConn(path: path) }
        for c in busy { c.send("GET /never HTTP/1.1\r\n\r\n") }
        Thread.sleep(forTimeInterval: 0.2)
        let r = try ControlClient(socketPath: path).request("GET", "/healthz")
        XCTAssertEqual(r.status, 503)
        XCTAssertEqual(r.apiError?.code, "OVERLOADED")
        XCTAssertGreaterThanOrEqual(server.stats.connectionsRejected, 1)
        XCTAssertEqual(server.stats.connectionsEvicted, 0)
        // Once the handler times out (504) the slots free up.
        XCTAssertEqual(busy[0].readResponse()?.status, 504)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(try ControlClient(socketPath: path).request("GET", "/healthz").status, 200)
    }

    func testSilentConnectionsMakeRoomAtTheLimit() throws {
        let (server, path) = try startServer { $0.maxConnections = 4 }
        // Four connections that never send a request used to lock everyone out for 10 s.
        let held = try (0..<4).map { _ in try RawConn(path: path) }
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(try ControlClient(socketPath: path).request("GET", "/healthz").status, 200)
        XCTAssertEqual(server.stats.connectionsEvicted, 1)
        XCTAssertTrue(held[0].closedByPeer(timeout: 1), "the oldest waiting connection made room")
        // The others still work.
        held[3].send("GET /healthz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(held[3].readResponse()?.status, 200)
    }

    func testHandlerTimeoutAndIdleTimeout() throws {
        let (_, path) = try startServer { $0.handlerTimeout = 0.5; $0.idleTimeout = 0.5 }
        let r = try ControlClient(socketPath: path).request("GET", "/never")
        XCTAssertEqual(r.status, 504)
        XCTAssertEqual(r.apiError?.code, "HANDLER_TIMEOUT")
        let c = try RawConn(path: path)
        c.send("GET /healthz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        XCTAssertTrue(c.closedByPeer(timeout: 3), "idle keep-alive connection is closed")
    }

    func testStrayCRLFsDoNotKeepAnIdleConnectionOpen() throws {
        let (_, path) = try startServer { $0.idleTimeout = 0.6; $0.headerTimeout = 5 }
        let c = try RawConn(path: path)
        c.send("GET /healthz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(c.readResponse()?.status, 200)
        // A CRLF every 0.2 s: each used to restart the 5-s head timer, forever.
        let started = Monotonic.nanos()
        var closed = false
        while Monotonic.nanos() - started < 3_000_000_000 {
            if !c.send("\r\n") { closed = true; break }
            if c.closedByPeer(timeout: 0.2) { closed = true; break }
        }
        XCTAssertTrue(closed, "the idle timeout (0.6 s) closes a connection that only sends CRLFs")
        XCTAssertLessThan(Double(Monotonic.nanos() - started) / 1e9, 2.0)
        // A CRLF before a real request is still fine.
        let d = try RawConn(path: path)
        d.send("GET /healthz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(d.readResponse()?.status, 200)
        d.send("\r\nGET /healthz HTTP/1.1\r\n\r\n")
        XCTAssertEqual(d.readResponse()?.status, 200)
    }

    func testTinyChunksAreRefusedEarly() throws {
        let (_, path) = try startServer()
        let c = try RawConn(path: path)
        c.send("POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        // 1-byte chunks cost 6 raw bytes per body byte; refused long before the 4 MiB body limit.
        let tiny = String(repeating: "1\r\nx\r\n", count: 1024)
        var sent = 0
        for _ in 0..<64 { if !c.send(tiny) { break }; sent += 1024 }
        let r = c.readResponse()
        XCTAssertEqual(r?.status, 413)
        XCTAssertTrue(r?.body.contains("larger chunks") ?? false, r?.body ?? "")
        XCTAssertLessThanOrEqual(sent, 64 * 1024)
        // Ordinary chunk sizes are not affected.
        let d = try RawConn(path: path)
        d.send("POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in ["{\"a\":\"", String(repeating: "y", count: 200_000), "\"}"] {
            d.send(String(part.utf8.count, radix: 16) + "\r\n" + part + "\r\n")
        }
        d.send("0\r\n\r\n")
        XCTAssertEqual(d.readResponse()?.status, 200)
    }

    func testRequestBytesAreBoundedAcrossConnections() throws {
        let (_, path) = try startServer { $0.maxBufferedBytes = 1 << 20 }
        // Three uploads that each hold 600 KiB of a 4 MiB body: the server-wide 1 MiB is exceeded.
        var uploads: [RawConn] = []
        let part = [UInt8](repeating: 0x61, count: 600 * 1024)
        for _ in 0..<3 {
            let u = try RawConn(path: path)
            u.send("POST /v1/echo HTTP/1.1\r\nContent-Length: \(4 << 20)\r\n\r\n")
            u.send(part)
            uploads.append(u)
            Thread.sleep(forTimeInterval: 0.1)
        }
        let refused = uploads.compactMap { $0.readResponse(timeout: 2) }
        XCTAssertFalse(refused.isEmpty, "an upload over the server-wide limit is refused")
        for r in refused {
            XCTAssertEqual(r.status, 503)
            XCTAssertTrue(r.body.contains("OVERLOADED"), r.body)
        }
        XCTAssertLessThan(refused.count, 3, "the first upload fits")
        // Everybody else is still served.
        let r = try ControlClient(socketPath: path).request("GET", "/healthz")
        XCTAssertEqual(r.status, 200)
    }

    func testSilentAndSlowBodyClientsTimeOut() throws {
        let (server, path) = try startServer { $0.headerTimeout = 0.5; $0.bodyTimeout = 0.5 }
        let silent = try RawConn(path: path)
        let slowBody = try RawConn(path: path)
        slowBody.send("POST /v1/echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345")
        XCTAssertEqual(silent.readResponse(timeout: 3)?.status, 408)
        XCTAssertEqual(slowBody.readResponse(timeout: 3)?.status, 408)
        XCTAssertTrue(silent.closedByPeer())
        XCTAssertEqual(server.stats.timeouts, 2)
    }

    func testGarbageConnectionsNeverBreakTheServer() throws {
        let (_, path) = try startServer { $0.headerTimeout = 1 }
        var rng = SplitMix64(seed: 3)
        let seeds = ["GET /healthz HTTP/1.1\r\n\r\n", "POST /v1/echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n{}\n",
                     "GET /v1/p2p/sessions/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"].map { Array($0.utf8) }
        for i in 0..<300 {
            var b = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let pos = Int(rng.next() % UInt64(b.count))
                switch rng.next() % 3 {
                case 0: b[pos] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b.remove(at: pos)
                default: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: pos)
                }
                if b.isEmpty { b = [0] }
            }
            let c = try RawConn(path: path)
            c.send(b)
            shutdown(c.fd, Int32(SHUT_WR))
            // Whatever the bytes, the answer is well-formed or the connection just closes.
            if let r = c.readResponse(timeout: 3) {
                XCTAssertTrue((200...599).contains(r.status), "status \(r.status) for \(b)")
            }
        }
        XCTAssertEqual(try ControlClient(socketPath: path).request("GET", "/healthz").status, 200)
    }

    func testSocketPathTooLong() {
        let long = "/tmp/" + String(repeating: "x", count: 120) + ".sock"
        XCTAssertThrowsError(try ControlServer(config: ControlServerConfig(socketPath: long), router: Router()).start()) { e in
            XCTAssertEqual((e as? P2POSError)?.code, "API_SOCKET_PATH")
        }
        XCTAssertThrowsError(try ControlClient(socketPath: long).request("GET", "/")) { e in
            XCTAssertTrue((e as? ControlClientError)?.isNotReachable == true)
        }
    }

    func testConcurrentClients() throws {
        let (server, path) = try startServer()
        let errors = Box()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let client = ControlClient(socketPath: path)
            for j in 0..<25 {
                do {
                    let r = try client.request("POST", "/v1/echo", body: Array("{\"i\":\(i),\"j\":\(j)}".utf8))
                    if r.bodyText != "{\"echo\":{\"i\":\(i),\"j\":\(j)}}\n" { errors.set(.text("mismatch \(r.bodyText)")) }
                } catch {
                    errors.set(.text("\(error)"))
                }
            }
        }
        XCTAssertNil(errors.get().map { String(decoding: $0.body, as: UTF8.self) })
        XCTAssertEqual(server.stats.requests, 200)
        let deadline = Date().addingTimeInterval(2)
        while server.stats.connectionsOpen != 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertEqual(server.stats.connectionsOpen, 0)
    }

    func testStopDrainsInFlightRequest() throws {
        let (server, path) = try startServer()
        let result = Box()
        let t = Thread {
            if let r = try? ControlClient(socketPath: path).request("GET", "/slow") { result.set(HTTPResponse(status: r.status)) }
        }
        t.start()
        Thread.sleep(forTimeInterval: 0.05)
        server.stop(drain: 2)
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(result.get()?.status, 200)
        XCTAssertThrowsError(try ControlClient(socketPath: path).request("GET", "/healthz"))
    }

    // MARK: curl

    func testCurlCompatibility() throws {
        let curl = ["/usr/bin/curl", "/bin/curl", "/usr/local/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let curl else { throw XCTSkip("curl is not installed; skipping the curl --unix-socket check") }
        let (_, path) = try startServer()
        func run(_ args: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: curl)
            p.arguments = ["-sS", "--max-time", "5", "--unix-socket", path] + args
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        XCTAssertEqual(try run(["http://localhost/healthz"]), "{\"status\":\"ok\"}\n")
        XCTAssertEqual(try run(["-X", "POST", "-H", "Content-Type: application/json", "-d", "{\"x\":\"y\"}", "http://localhost/v1/echo"]), "{\"echo\":{\"x\":\"y\"}}\n")
        XCTAssertEqual(try run(["-o", "/dev/null", "-w", "%{http_code}", "http://localhost/missing"]), "404")
        // Two URLs on one command reuse the connection (keep-alive).
        XCTAssertEqual(try run(["http://localhost/healthz", "http://localhost/v1/p2p/sessions/z"]), "{\"status\":\"ok\"}\n{\"id\":\"z\"}\n")
        // Large body: curl sends Expect: 100-continue above 1 MiB.
        let bigFile = dir + "/big.json"
        let big = "{\"pad\":\"" + String(repeating: "p", count: 2 * 1024 * 1024) + "\"}"
        try big.write(toFile: bigFile, atomically: true, encoding: .utf8)
        let echoed = try run(["-X", "POST", "--data-binary", "@" + bigFile, "http://localhost/v1/echo"])
        XCTAssertEqual(echoed.count, big.count + "{\"echo\":}\n".count)
        // Upload from stdin with -T - is sent chunked.
        let chunkedOut = try run(["-T", bigFile, "-H", "Transfer-Encoding: chunked", "-X", "POST", "http://localhost/v1/echo"])
        XCTAssertEqual(chunkedOut.count, big.count + "{\"echo\":}\n".count)
    }
}
