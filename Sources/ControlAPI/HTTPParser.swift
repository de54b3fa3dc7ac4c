import Foundation

/// Bounds the parser and server enforce on every request.
public struct HTTPLimits: Sendable, Equatable {
    /// Request line + header lines + blank line, in bytes (431 beyond).
    public var maxHeaderBytes: Int = 16 * 1024
    /// Request line alone (414 beyond).
    public var maxRequestLineBytes: Int = 8 * 1024
    /// Number of header fields (431 beyond).
    public var maxHeaderCount: Int = 100
    /// Declared Content-Length (413 beyond, answered before the body is read).
    public var maxBodyBytes: Int = 4 * 1024 * 1024

    public init(maxHeaderBytes: Int = 16 * 1024, maxRequestLineBytes: Int = 8 * 1024, maxHeaderCount: Int = 100, maxBodyBytes: Int = 4 * 1024 * 1024) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
    }
}

/// The request line and headers of a request, parsed before its body is read.
public struct HTTPRequestHead: Sendable {
    public var method: String
    public var target: String
    public var minorVersion: Int
    public var headers: HTTPHeaders
    /// Declared body length (0 when absent).
    public var contentLength: Int
    /// Client sent `Expect: 100-continue`.
    public var expectContinue: Bool
    /// Bytes of the head including leading empty lines and the terminating blank line.
    public var headLength: Int
}

/// Outcome of parsing a buffer that may hold a whole request.
public enum HTTPParseResult: Sendable {
    case incomplete
    case complete(HTTPRequest, consumed: Int)
    case failure(HTTPError)
}

/// A pure, bounded HTTP/1.x request parser: no I/O, no state, no allocation beyond the result.
///
/// Accepts CRLF or bare LF line endings, ignores empty lines before the request line,
/// rejects obs-fold, whitespace before the colon, control characters, conflicting or
/// malformed Content-Length and any Transfer-Encoding (501: send Content-Length).
public enum HTTPParser {
    static let tchar: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] = true }
        for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] = true }
        for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = true }
        for c in "!#$%&'*+-.^_`|~".utf8 { t[Int(c)] = true }
        return t
    }()

    static func bad(_ message: String) -> HTTPError { HTTPError(status: 400, code: "BAD_REQUEST", message: message) }

    /// Number of CR/LF bytes before the request line (RFC 9112 §2.2 says to ignore them).
    public static func leadingEmptyLineBytes<C: Collection>(_ buf: C) -> Int where C.Element == UInt8 {
        var n = 0
        for c in buf {
            if c == 13 || c == 10 { n += 1 } else { break }
        }
        return n
    }

    /// Index just past the blank line that ends the head, or nil. `from` lets callers resume a scan.
    public static func findHeadEnd(_ buf: [UInt8], from: Int = 0) -> Int? {
        let start = leadingEmptyLineBytes(buf)
        var i = max(from, start)
        while i < buf.count {
            if buf[i] == 10 {
                if i - 1 >= start && buf[i - 1] == 10 { return i + 1 }
                if i - 2 >= start && buf[i - 1] == 13 && buf[i - 2] == 10 { return i + 1 }
            }
            i += 1
        }
        return nil
    }

    /// Early verdict on a head that has not ended yet: too long, or an invalid request line.
    public static func checkIncomplete(_ buf: [UInt8], limits: HTTPLimits) -> HTTPError? {
        let start = leadingEmptyLineBytes(buf)
        if start > limits.maxHeaderBytes { return bad("too many empty lines before the request line") }
        let rest = buf[start...]
        if let lf = rest.firstIndex(of: 10) {
            var end = lf
            if end > start && buf[end - 1] == 13 { end -= 1 }
            if lf - start > limits.maxRequestLineBytes { return uriTooLong(limits) }
            if case .failure(let e) = parseRequestLine(buf[start..<end]) { return e }
        } else if rest.count > limits.maxRequestLineBytes {
            return uriTooLong(limits)
        }
        if rest.count > limits.maxHeaderBytes { return headersTooLarge(limits) }
        return nil
    }

    static func uriTooLong(_ limits: HTTPLimits) -> HTTPError {
        HTTPError(status: 414, code: "URI_TOO_LONG", message: "request line exceeds \(limits.maxRequestLineBytes) bytes")
    }

    static func headersTooLarge(_ limits: HTTPLimits) -> HTTPError {
        HTTPError(status: 431, code: "HEADERS_TOO_LARGE", message: "request headers exceed \(limits.maxHeaderBytes) bytes")
    }

    static func parseRequestLine(_ line: ArraySlice<UInt8>) -> Result<(String, String, Int), HTTPError> {
        let parts = line.split(separator: 32, maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(bad("malformed request line")) }
        let m = parts[0], t = parts[1], v = parts[2]
        guard !m.isEmpty, m.allSatisfy({ tchar[Int($0)] }) else { return .failure(bad("malformed method")) }
        guard !t.isEmpty, t.allSatisfy({ $0 > 32 && $0 < 127 }) else { return .failure(bad("malformed request target")) }
        guard t.first == UInt8(ascii: "/") || (t.count == 1 && t.first == UInt8(ascii: "*")) else {
            return .failure(bad("request target must be an absolute path (origin-form)"))
        }
        let vb = Array(v)
        guard vb.count == 8, Array(vb[0..<5]) == Array("HTTP/".utf8), vb[6] == UInt8(ascii: "."),
              vb[5] >= 48, vb[5] <= 57, vb[7] >= 48, vb[7] <= 57 else { return .failure(bad("malformed HTTP version")) }
        guard vb[5] == UInt8(ascii: "1") else {
            return .failure(HTTPError(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED", message: "only HTTP/1.0 and HTTP/1.1 are served"))
        }
        let minor = Int(vb[7] - 48)
        guard minor <= 1 else {
            return .failure(HTTPError(status: 505, code: "HTTP_VERSION_NOT_SUPPORTED", message: "only HTTP/1.0 and HTTP/1.1 are served"))
        }
        return .success((String(decoding: m, as: UTF8.self), String(decoding: t, as: UTF8.self), minor))
    }

    /// Parse a complete head (`buf[0..<headEnd]` as found by `findHeadEnd`).
    public static func parseHead(_ buf: [UInt8], headEnd: Int, limits: HTTPLimits) -> Result<HTTPRequestHead, HTTPError> {
        let start = leadingEmptyLineBytes(buf)
        if headEnd - start > limits.maxHeaderBytes { return .failure(headersTooLarge(limits)) }
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = start
        var i = start
        while i < headEnd {
            if buf[i] == 10 {
                var end = i
                if end > lineStart && buf[end - 1] == 13 { end -= 1 }
                lines.append(buf[lineStart..<end])
                lineStart = i + 1
            }
            i += 1
        }
        guard let requestLine = lines.first, lines.last?.isEmpty == true else { return .failure(bad("incomplete head")) }
        if requestLine.count > limits.maxRequestLineBytes { return .failure(uriTooLong(limits)) }
        let method: String, target: String, minor: Int
        switch parseRequestLine(requestLine) {
        case .failure(let e): return .failure(e)
        case .success(let r): (method, target, minor) = r
        }
        let headerLines = lines[1..<(lines.count - 1)]
        if headerLines.count > limits.maxHeaderCount {
            return .failure(HTTPError(status: 431, code: "HEADERS_TOO_LARGE", message: "more than \(limits.maxHeaderCount) header fields"))
        }
        var headers = HTTPHeaders()
        for line in headerLines {
            guard let first = line.first else { return .failure(bad("empty header line")) }
            if first == 32 || first == 9 { return .failure(bad("obsolete header line folding is not accepted")) }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return .failure(bad("header line without colon")) }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy({ tchar[Int($0)] }) else { return .failure(bad("malformed header name")) }
            var value = line[(colon + 1)...]
            while let f = value.first, f == 32 || f == 9 { value = value.dropFirst() }
            while let l = value.last, l == 32 || l == 9 { value = value.dropLast() }
            guard value.allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else {
                return .failure(bad("control character in header value"))
            }
            headers.add(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
        }
        if !headers.values("Transfer-Encoding").isEmpty {
            return .failure(HTTPError(status: 501, code: "NOT_IMPLEMENTED", message: "Transfer-Encoding (chunked) is not supported; send the body with Content-Length"))
        }
        var contentLength = 0
        let clValues = headers.values("Content-Length").flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if !clValues.isEmpty {
            guard let firstCL = clValues.first, clValues.allSatisfy({ $0 == firstCL }),
                  !firstCL.isEmpty, firstCL.utf8.count <= 18, firstCL.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let n = Int(firstCL) else {
                return .failure(bad("malformed or conflicting Content-Length"))
            }
            contentLength = n
        }
        if contentLength > limits.maxBodyBytes {
            return .failure(HTTPError(status: 413, code: "BODY_TOO_LARGE", message: "request body of \(contentLength) bytes exceeds the limit of \(limits.maxBodyBytes) bytes"))
        }
        var expectContinue = false
        if let expect = headers["Expect"] {
            guard expect.caseInsensitiveEquals("100-continue") else {
                return .failure(HTTPError(status: 417, code: "EXPECTATION_FAILED", message: "only Expect: 100-continue is supported"))
            }
            expectContinue = minor == 1
        }
        return .success(HTTPRequestHead(method: method, target: target, minorVersion: minor, headers: headers,
                                        contentLength: contentLength, expectContinue: expectContinue, headLength: headEnd))
    }

    /// Parse one whole request from the start of `buf`.
    public static func parse(_ buf: [UInt8], limits: HTTPLimits = HTTPLimits()) -> HTTPParseResult {
        guard let headEnd = findHeadEnd(buf) else {
            if let e = checkIncomplete(buf, limits: limits) { return .failure(e) }
            return .incomplete
        }
        switch parseHead(buf, headEnd: headEnd, limits: limits) {
        case .failure(let e): return .failure(e)
        case .success(let head):
            let total = headEnd + head.contentLength
            guard buf.count >= total else { return .incomplete }
            return .complete(makeRequest(head, body: Array(buf[headEnd..<total])), consumed: total)
        }
    }

    /// Build the handler-facing request from a parsed head and its body.
    public static func makeRequest(_ head: HTTPRequestHead, body: [UInt8]) -> HTTPRequest {
        HTTPRequest(method: head.method, target: head.target, minorVersion: head.minorVersion, headers: head.headers, body: body)
    }

    /// Serialize a request (used by the client and by round-trip tests).
    public static func serialize(method: String, target: String, headers: HTTPHeaders, body: [UInt8]) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\n"
        var hasLength = false
        for (n, v) in headers {
            if n.caseInsensitiveEquals("Content-Length") { hasLength = true }
            head += "\(n): \(v)\r\n"
        }
        if !hasLength && (!body.isEmpty || method == "POST" || method == "PUT") { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }
}
