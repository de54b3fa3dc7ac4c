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
    /// Declared body length (0 when absent or chunked).
    public var contentLength: Int
    /// Body sent with `Transfer-Encoding: chunked` (decoded by `ChunkedBodyDecoder`).
    public var chunked: Bool = false
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
/// malformed Content-Length, Content-Length together with Transfer-Encoding, and transfer
/// codings other than a single `chunked` (501).
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
        var contentLength = 0
        let clValues = headers.values("Content-Length").flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { String($0.trimmingOWS) }
        var chunked = false
        let teValues = headers.values("Transfer-Encoding")
        if !teValues.isEmpty {
            // RFC 9112 §6.1: both headers is a smuggling vector; reject instead of guessing.
            guard clValues.isEmpty else { return .failure(bad("both Transfer-Encoding and Content-Length")) }
            guard minor == 1 else { return .failure(bad("Transfer-Encoding in an HTTP/1.0 request")) }
            let codings = teValues.flatMap { $0.split(separator: ",") }.map { $0.trimmingOWS.lowercased() }
            guard codings == ["chunked"] else {
                return .failure(HTTPError(status: 501, code: "NOT_IMPLEMENTED", message: "only Transfer-Encoding: chunked is supported"))
            }
            chunked = true
        }
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
                                        contentLength: contentLength, chunked: chunked, expectContinue: expectContinue, headLength: headEnd))
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
            if head.chunked {
                var decoder = ChunkedBodyDecoder(start: headEnd, limits: limits)
                switch decoder.feed(buf) {
                case .needMore: return .incomplete
                case .failure(let e): return .failure(e)
                case .done(let end): return .complete(makeRequest(head, body: decoder.body), consumed: end)
                }
            }
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

/// Incremental decoder of a chunked request body (RFC 9112 §7.1), bounded by the body limit.
///
/// The caller keeps the whole request in one buffer and calls `feed` with it as it grows; the
/// decoder remembers how far it got. Chunk extensions and trailer fields are read and dropped.
public struct ChunkedBodyDecoder: Sendable {
    public enum Outcome: Sendable, Equatable {
        case needMore
        /// The body ended; the request occupies `buf[0..<end]`.
        case done(end: Int)
        case failure(HTTPError)
    }

    enum Phase: Sendable { case size, data(Int), dataEnd, trailers, done }

    /// Longest chunk-size line (size, extensions) accepted.
    public static let maxSizeLine = 1024

    public private(set) var body: [UInt8] = []
    var pos: Int
    var phase: Phase = .size
    var trailerBytes = 0
    let limits: HTTPLimits

    let start: Int

    /// `start`: index of the first body byte in the buffers passed to `feed`.
    public init(start: Int, limits: HTTPLimits) {
        self.pos = start
        self.start = start
        self.limits = limits
    }

    /// Raw bytes consumed so far that are not body bytes: chunk-size lines, CRLFs, trailers.
    public var framingBytes: Int { pos - start - body.count }

    static func bad(_ m: String) -> Outcome { .failure(HTTPError(status: 400, code: "BAD_REQUEST", message: "malformed chunked body: \(m)")) }

    /// Index just past the next LF at or after `from`, within `limit` bytes; nil when not there yet.
    static func lineEnd(_ buf: [UInt8], _ from: Int, limit: Int) -> (end: Int, content: Range<Int>)?? {
        var i = from
        while i < buf.count {
            if buf[i] == 10 {
                let contentEnd = (i > from && buf[i - 1] == 13) ? i - 1 : i
                return .some((i + 1, from..<contentEnd))
            }
            if i - from >= limit { return .some(nil) }
            i += 1
        }
        return nil
    }

    public mutating func feed(_ buf: [UInt8]) -> Outcome {
        while true {
            switch phase {
            case .done:
                return .done(end: pos)
            case .size:
                guard let found = ChunkedBodyDecoder.lineEnd(buf, pos, limit: ChunkedBodyDecoder.maxSizeLine) else { return .needMore }
                guard let (end, content) = found else { return ChunkedBodyDecoder.bad("chunk-size line too long") }
                var size = 0
                var digits = 0
                var i = content.lowerBound
                while i < content.upperBound {
                    let c = buf[i]
                    let v: Int
                    switch c {
                    case 48...57: v = Int(c - 48)
                    case 65...70: v = Int(c - 55)
                    case 97...102: v = Int(c - 87)
                    default: v = -1
                    }
                    if v < 0 { break }
                    digits += 1
                    guard digits <= 15 else { return ChunkedBodyDecoder.bad("chunk size too long") }
                    size = size * 16 + v
                    i += 1
                }
                guard digits > 0 else { return ChunkedBodyDecoder.bad("missing chunk size") }
                if i < content.upperBound {
                    // Only whitespace and `;ext` may follow the size.
                    var j = i
                    while j < content.upperBound, buf[j] == 32 || buf[j] == 9 { j += 1 }
                    guard j < content.upperBound, buf[j] == UInt8(ascii: ";") else { return ChunkedBodyDecoder.bad("junk after chunk size") }
                    guard buf[j..<content.upperBound].allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else {
                        return ChunkedBodyDecoder.bad("control character in chunk extension")
                    }
                }
                guard size <= limits.maxBodyBytes - body.count else {
                    return .failure(HTTPError(status: 413, code: "BODY_TOO_LARGE", message: "chunked request body exceeds the limit of \(limits.maxBodyBytes) bytes"))
                }
                pos = end
                phase = size == 0 ? .trailers : .data(size)
            case .data(let remaining):
                let available = buf.count - pos
                if available <= 0 { return .needMore }
                let n = min(remaining, available)
                body.append(contentsOf: buf[pos..<(pos + n)])
                pos += n
                phase = n == remaining ? .dataEnd : .data(remaining - n)
            case .dataEnd:
                guard pos < buf.count else { return .needMore }
                if buf[pos] == 10 { pos += 1; phase = .size; continue }
                guard buf[pos] == 13 else { return ChunkedBodyDecoder.bad("chunk data not followed by CRLF") }
                guard pos + 1 < buf.count else { return .needMore }
                guard buf[pos + 1] == 10 else { return ChunkedBodyDecoder.bad("chunk data not followed by CRLF") }
                pos += 2
                phase = .size
            case .trailers:
                guard let found = ChunkedBodyDecoder.lineEnd(buf, pos, limit: limits.maxHeaderBytes) else {
                    if buf.count - pos > limits.maxHeaderBytes - trailerBytes {
                        return .failure(HTTPError(status: 431, code: "HEADERS_TOO_LARGE", message: "chunked trailers exceed \(limits.maxHeaderBytes) bytes"))
                    }
                    return .needMore
                }
                guard let (end, content) = found else {
                    return .failure(HTTPError(status: 431, code: "HEADERS_TOO_LARGE", message: "chunked trailer line too long"))
                }
                trailerBytes += end - pos
                guard trailerBytes <= limits.maxHeaderBytes else {
                    return .failure(HTTPError(status: 431, code: "HEADERS_TOO_LARGE", message: "chunked trailers exceed \(limits.maxHeaderBytes) bytes"))
                }
                pos = end
                if content.isEmpty { phase = .done }
            }
        }
    }
}
