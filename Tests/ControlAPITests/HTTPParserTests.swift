import XCTest
@testable import ControlAPI
import Support

final class HTTPParserTests: XCTestCase {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func parseOK(_ s: String, limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath, line: UInt = #line) -> (HTTPRequest, Int)? {
        switch HTTPParser.parse(bytes(s), limits: limits) {
        case .complete(let r, let n): return (r, n)
        case .incomplete: XCTFail("incomplete", file: file, line: line)
        case .failure(let e): XCTFail("failure \(e)", file: file, line: line)
        }
        return nil
    }

    func parseErr(_ s: String, limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath, line: UInt = #line) -> HTTPError? {
        switch HTTPParser.parse(bytes(s), limits: limits) {
        case .failure(let e): return e
        case .complete(let r, _): XCTFail("unexpected success \(r.method) \(r.target)", file: file, line: line)
        case .incomplete: XCTFail("unexpected incomplete", file: file, line: line)
        }
        return nil
    }

    // MARK: known answers

    func testSimpleGet() throws {
        let (r, n) = try XCTUnwrap(parseOK("GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"))
        XCTAssertEqual(r.method, "GET")
        XCTAssertEqual(r.path, "/v1/status")
        XCTAssertEqual(r.minorVersion, 1)
        XCTAssertEqual(r.headers["host"], "localhost")
        XCTAssertEqual(r.headers.count, 2)
        XCTAssertEqual(r.body, [])
        XCTAssertEqual(n, 57)
        XCTAssertTrue(r.keepAlive)
    }

    func testPostWithBodyAndPipelinedRest() throws {
        let s = "POST /v1/p2p/tx HTTP/1.1\r\nContent-Length: 7\r\nContent-Type: application/json\r\n\r\n{\"a\":1}GET / HTTP/1.1\r\n\r\n"
        let (r, n) = try XCTUnwrap(parseOK(s))
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "{\"a\":1}")
        XCTAssertEqual(n, s.utf8.count - "GET / HTTP/1.1\r\n\r\n".utf8.count)
    }

    func testQueryAndKeepAliveRules() throws {
        let (r, _) = try XCTUnwrap(parseOK("GET /x?limit=10&name=a%20b+c&flag HTTP/1.0\r\n\r\n"))
        XCTAssertEqual(r.path, "/x")
        XCTAssertEqual(r.queryValue("limit"), "10")
        XCTAssertEqual(r.queryValue("name"), "a b c")
        XCTAssertEqual(r.queryValue("flag"), "")
        XCTAssertFalse(r.keepAlive, "HTTP/1.0 closes by default")
        let (r2, _) = try XCTUnwrap(parseOK("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"))
        XCTAssertTrue(r2.keepAlive)
        let (r3, _) = try XCTUnwrap(parseOK("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n"))
        XCTAssertFalse(r3.keepAlive)
    }

    func testBareLFAndLeadingEmptyLines() throws {
        let (r, n) = try XCTUnwrap(parseOK("\r\n\r\nGET /a HTTP/1.1\nX: y\n\n"))
        XCTAssertEqual(r.path, "/a")
        XCTAssertEqual(r.headers["X"], "y")
        XCTAssertEqual(n, 26)
    }

    func testHeaderValueTrimming() throws {
        let (r, _) = try XCTUnwrap(parseOK("GET / HTTP/1.1\r\nX-A: \t spaced value \t\r\nX-Empty:\r\n\r\n"))
        XCTAssertEqual(r.headers["x-a"], "spaced value")
        XCTAssertEqual(r.headers["X-Empty"], "")
    }

    func testMalformedRequests() {
        let cases: [(String, Int)] = [
            ("GET\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1 extra\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\n\r\n", 400),
            ("GET relative HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / HTTP/1.9\r\n\r\n", 505),
            ("GET / HTTX/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nName : x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nA: b\u{1}c\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", 400),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400001\r\n", 413),
            ("POST / HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
            ("POST / HTTP/1.1\r\nContent-Length: 4194305\r\n\r\n", 413),
        ]
        for (s, status) in cases {
            let e = parseErr(s)
            XCTAssertEqual(e?.status, status, "for \(s.debugDescription): \(String(describing: e))")
        }
        // Identical repeated Content-Length values are allowed (RFC 9112 §6.3).
        XCTAssertNotNil(parseOK("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"))
    }

    func testChunkedBodies() throws {
        let s = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
        let (r, n) = try XCTUnwrap(parseOK(s))
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "hello, world")
        XCTAssertEqual(n, s.utf8.count - 4)
        // Bare LF framing and upper-case hex.
        let (r2, _) = try XCTUnwrap(parseOK("POST /x HTTP/1.1\nTransfer-Encoding: Chunked\n\nA\n0123456789\n0\n\n"))
        XCTAssertEqual(r2.body.count, 10)
        // Every prefix is incomplete.
        let b = bytes(s)
        for k in 0..<(b.count - 4) {
            if case .incomplete = HTTPParser.parse(Array(b[0..<k])) { continue }
            XCTFail("prefix \(k) of a chunked request should be incomplete")
        }
        // Fed byte by byte, the incremental decoder gives the same body.
        let headEnd = try XCTUnwrap(HTTPParser.findHeadEnd(b))
        var decoder = ChunkedBodyDecoder(start: headEnd, limits: HTTPLimits())
        var outcome = ChunkedBodyDecoder.Outcome.needMore
        for k in headEnd...b.count {
            outcome = decoder.feed(Array(b[0..<k]))
            if case .done = outcome { break }
        }
        XCTAssertEqual(outcome, .done(end: b.count - 4))
        XCTAssertEqual(decoder.body, bytes("hello, world"))
        // The body limit counts decoded bytes over all chunks.
        let limits = HTTPLimits(maxBodyBytes: 8)
        XCTAssertEqual(parseErr("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limits: limits)?.status, 413)
    }

    func testLimits() {
        var limits = HTTPLimits()
        limits.maxHeaderCount = 3
        let many = "GET / HTTP/1.1\r\n" + (0..<4).map { "H\($0): v\r\n" }.joined() + "\r\n"
        XCTAssertEqual(parseErr(many, limits: limits)?.status, 431)
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 17 * 1024) + "\r\n\r\n"
        XCTAssertEqual(parseErr(big)?.status, 431)
        // Without the end of the head the verdict comes as soon as the limit is crossed.
        let unfinished = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 17 * 1024)
        XCTAssertEqual(parseErr(unfinished)?.status, 431)
        let longTarget = "GET /" + String(repeating: "a", count: 9 * 1024)
        XCTAssertEqual(parseErr(longTarget)?.status, 414)
        limits = HTTPLimits(maxBodyBytes: 10)
        XCTAssertEqual(parseErr("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", limits: limits)?.code, "BODY_TOO_LARGE")
        XCTAssertNotNil(parseOK("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits))
    }

    func testEarlyRejectOfBadRequestLine() {
        if case .failure(let e) = HTTPParser.parse(bytes("\u{16}\u{3}\u{1} garbage\r\nmore")) {
            XCTAssertEqual(e.status, 400)
        } else {
            XCTFail("garbage request line should fail before the head ends")
        }
    }

    func testEveryPrefixIsIncomplete() {
        let s = bytes("POST /v1/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        for n in 0..<s.count {
            if case .incomplete = HTTPParser.parse(Array(s[0..<n])) { continue }
            XCTFail("prefix of \(n) bytes should be incomplete")
        }
        guard case .complete(let r, let used) = HTTPParser.parse(s) else { return XCTFail() }
        XCTAssertEqual(used, s.count)
        XCTAssertEqual(r.body, bytes("hello"))
    }

    // MARK: round trips

    func testRoundTrip() throws {
        var rng = SplitMix64(seed: 42)
        let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
        for _ in 0..<500 {
            let method = methods[Int(rng.next() % UInt64(methods.count))]
            let segs = (0..<Int(rng.next() % 4)).map { _ in rng.token(1 + Int(rng.next() % 8)) }
            var target = "/" + segs.joined(separator: "/")
            if rng.next() % 2 == 0 { target += "?" + rng.token(3) + "=" + rng.token(4) }
            var headers = HTTPHeaders()
            for _ in 0..<Int(rng.next() % 6) { headers.add("X-" + rng.token(5), rng.token(Int(rng.next() % 20))) }
            let body = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let wire = HTTPParser.serialize(method: method, target: target, headers: headers, body: body)
            guard case .complete(let r, let used) = HTTPParser.parse(wire) else { return XCTFail("round trip failed for \(target)") }
            XCTAssertEqual(used, wire.count)
            XCTAssertEqual(r.method, method)
            XCTAssertEqual(r.target, target)
            XCTAssertEqual(r.body, body)
            for (n, v) in headers { XCTAssertEqual(r.headers[n], v) }
        }
    }

    func testResponseSerialization() {
        var resp = HTTPResponse.error(status: 404, code: "NOT_FOUND", message: "no route")
        resp.headers["X-Test"] = "1"
        let text = String(decoding: resp.serialized(keepAlive: true), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        XCTAssertTrue(text.contains("Content-Type: application/json\r\n"))
        XCTAssertTrue(text.contains("Connection: keep-alive\r\n"))
        XCTAssertTrue(text.hasSuffix("\r\n\r\n{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no route\"}}\n"))
        let head = String(decoding: resp.serialized(keepAlive: false, headOnly: true), as: UTF8.self)
        XCTAssertTrue(head.hasSuffix("Connection: close\r\n\r\n"))
        XCTAssertTrue(head.contains("Content-Length: \(resp.body.count)\r\n"))
    }

    func testHTTPDate() {
        XCTAssertEqual(HTTPStatus.httpDate(784111777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(HTTPStatus.httpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT")
        // Against strftime (C locale) for many instants, each asked twice (the second from the cache).
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2000 {
            let secs = Int64(rng.next() % 4_102_444_800)    // 1970 … 2100
            var t = time_t(secs)
            var tmv = tm()
            gmtime_r(&t, &tmv)
            var buf = [CChar](repeating: 0, count: 64)
            let n = strftime(&buf, buf.count, "%a, %d %b %Y %H:%M:%S GMT", &tmv)
            let expected = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            XCTAssertEqual(HTTPStatus.httpDate(secs), expected)
            XCTAssertEqual(HTTPStatus.httpDate(secs), expected)
        }
    }

    func testOptionalWhitespaceTrim() {
        XCTAssertEqual(String(" \t 12 \t".trimmingOWS), "12")
        XCTAssertEqual(String("12".trimmingOWS), "12")
        XCTAssertEqual(String(" \t ".trimmingOWS), "")
        XCTAssertEqual(String("".trimmingOWS), "")
        XCTAssertEqual(String(" a b ".trimmingOWS), "a b")
        XCTAssertEqual(String("\n1\n".trimmingOWS), "\n1\n", "only spaces and tabs are OWS")
    }

    // MARK: mutation fuzzing

    func testMutationFuzzNeverCrashesAndStaysBounded() {
        var rng = SplitMix64(seed: 7)
        let seeds = [
            bytes("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"),
            bytes("POST /v1/p2p/tx HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n{}{}"),
            bytes("\r\nHEAD /a%20b?c=d HTTP/1.0\nConnection: keep-alive\n\n"),
            bytes("PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n1;x=y\r\ne\r\n0\r\nT: 1\r\n\r\n"),
        ]
        let interesting: [UInt8] = [0, 9, 10, 13, 32, 58, 37, 63, 127, 255, 48, 57]
        let limits = HTTPLimits(maxHeaderBytes: 512, maxRequestLineBytes: 256, maxHeaderCount: 8, maxBodyBytes: 64)
        var outcomes = [0, 0, 0]
        for i in 0..<20_000 {
            var b = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let pos = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
                switch rng.next() % 5 {
                case 0: if !b.isEmpty { b[pos] = UInt8(truncatingIfNeeded: rng.next()) }
                case 1: if !b.isEmpty { b[pos] = interesting[Int(rng.next() % UInt64(interesting.count))] }
                case 2: if !b.isEmpty { b.remove(at: pos) }
                case 3: b.insert(interesting[Int(rng.next() % UInt64(interesting.count))], at: pos)
                default: b.insert(contentsOf: b[pos..<min(b.count, pos + Int(rng.next() % 600))], at: pos)
                }
            }
            switch HTTPParser.parse(b, limits: limits) {
            case .incomplete:
                outcomes[0] += 1
                XCTAssertLessThanOrEqual(b.count - HTTPParser.leadingEmptyLineBytes(b), limits.maxHeaderBytes + limits.maxBodyBytes)
            case .complete(let r, let used):
                outcomes[1] += 1
                XCTAssertLessThanOrEqual(used, b.count)
                XCTAssertLessThanOrEqual(r.body.count, limits.maxBodyBytes)
                XCTAssertLessThanOrEqual(r.headers.count, limits.maxHeaderCount)
                // A parsed request re-serializes into something that parses the same way.
                // (A decoded chunked body is re-sent with Content-Length.)
                let plain = HTTPHeaders(r.headers.fields.filter { !$0.name.caseInsensitiveEquals("Transfer-Encoding") }.map { ($0.name, $0.value) })
                let again = HTTPParser.serialize(method: r.method, target: r.target, headers: plain, body: r.body)
                if case .complete(let r2, _) = HTTPParser.parse(again, limits: HTTPLimits()) {
                    XCTAssertEqual(r2.method, r.method)
                    XCTAssertEqual(r2.target, r.target)
                    XCTAssertEqual(r2.body, r.body)
                } else {
                    XCTFail("re-serialized request does not parse")
                }
            case .failure(let e):
                outcomes[2] += 1
                XCTAssertTrue([400, 413, 414, 417, 431, 501, 505].contains(e.status), "unexpected status \(e.status)")
            }
        }
        XCTAssertGreaterThan(outcomes[1], 100)
        XCTAssertGreaterThan(outcomes[2], 100)
    }
}

/// Random URL-ish tokens for fuzz and property tests.
extension SplitMix64 {
    mutating func token(_ n: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~")
        return String((0..<n).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] })
    }
}
