import Foundation

/// Ordered, case-insensitive HTTP header list (names keep their original spelling).
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var count: Int { fields.count }

    /// First value for `name` (case-insensitive), nil when absent.
    public subscript(name: String) -> String? {
        get { fields.first(where: { $0.name.caseInsensitiveEquals(name) })?.value }
        set {
            fields.removeAll(where: { $0.name.caseInsensitiveEquals(name) })
            if let v = newValue { fields.append((name: name, value: v)) }
        }
    }

    /// All values for `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveEquals(name) }.map { $0.value }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    /// True when a comma-separated header (e.g. `Connection`) lists `token`.
    public func hasToken(_ name: String, _ token: String) -> Bool {
        values(name).contains { v in
            v.split(separator: ",").contains { $0.trimmingOWS.caseInsensitiveEquals(token) }
        }
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public static func == (a: HTTPHeaders, b: HTTPHeaders) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

extension StringProtocol {
    /// Without leading and trailing optional whitespace (RFC 9110 OWS: spaces and tabs).
    var trimmingOWS: SubSequence {
        var start = startIndex, end = endIndex
        while start < end, self[start] == " " || self[start] == "\t" { start = index(after: start) }
        while end > start, self[index(before: end)] == " " || self[index(before: end)] == "\t" { end = index(before: end) }
        return self[start..<end]
    }

    func caseInsensitiveEquals<S: StringProtocol>(_ other: S) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) {
            let lx = (x >= 65 && x <= 90) ? x + 32 : x
            let ly = (y >= 65 && y <= 90) ? y + 32 : y
            if lx != ly { return false }
        }
        return true
    }
}

/// One parsed HTTP/1.x request as handlers see it.
public struct HTTPRequest: Sendable {
    /// Method token as sent (`GET`, `POST`, …; case-sensitive per RFC 9110).
    public var method: String
    /// Raw request target, e.g. `/v1/sessions/abc?limit=10`.
    public var target: String
    /// Target without the query string, still percent-encoded.
    public var path: String
    /// Decoded query items in order; `?a=1&b` gives [("a","1"),("b","")].
    public var query: [(name: String, value: String)]
    /// HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    public var minorVersion: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Values of `{name}` segments of the matched route, percent-decoded.
    public var pathParams: [String: String] = [:]
    /// The client: `uid=… gid=… pid=…` on the Unix socket (for audit logs), `ip:port` on TCP.
    public var remote: String = ""

    public init(method: String, target: String, minorVersion: Int = 1, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.headers = headers
        self.body = body
        if let q = target.firstIndex(of: "?") {
            self.path = String(target[..<q])
            self.query = HTTPRequest.parseQuery(String(target[target.index(after: q)...]))
        } else {
            self.path = target
            self.query = []
        }
    }

    /// First query value for `name`.
    public func queryValue(_ name: String) -> String? { query.first(where: { $0.name == name })?.value }

    /// Path parameter `{name}`.
    public func param(_ name: String) -> String? { pathParams[name] }

    /// Whether the connection stays open after this request (HTTP/1.1 default, 1.0 opt-in).
    public var keepAlive: Bool {
        if headers.hasToken("Connection", "close") { return false }
        if minorVersion == 0 { return headers.hasToken("Connection", "keep-alive") }
        return true
    }

    /// Body decoded as JSON into `T`; throws an HTTPError (400 BAD_JSON) on failure.
    public func decodeJSON<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        if body.isEmpty { throw HTTPError(status: 400, code: "BAD_JSON", message: "request body is empty; this route expects JSON") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw HTTPError(status: 400, code: "BAD_JSON", message: "request body is not valid JSON for this route: \(HTTPError.describeDecoding(error))")
        }
    }

    /// Body parsed as an untyped JSON value (object, array, …); throws 400 BAD_JSON.
    public func jsonObject() throws -> Any {
        if body.isEmpty { throw HTTPError(status: 400, code: "BAD_JSON", message: "request body is empty; this route expects JSON") }
        do {
            return try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        } catch {
            throw HTTPError(status: 400, code: "BAD_JSON", message: "request body is not valid JSON")
        }
    }

    static func parseQuery(_ q: String) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        for part in q.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(kv[0]), plusAsSpace: true) ?? String(kv[0])
            let value = kv.count > 1 ? (percentDecode(String(kv[1]), plusAsSpace: true) ?? String(kv[1])) : ""
            out.append((name: name, value: value))
        }
        return out
    }
}

/// Percent-decoding (`%2F` → `/`); nil on malformed escapes or invalid UTF-8.
public func percentDecode(_ s: String, plusAsSpace: Bool = false) -> String? {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(s.utf8.count)
    var it = Array(s.utf8)[...]
    func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 65...70: return c - 55
        case 97...102: return c - 87
        default: return nil
        }
    }
    while let c = it.popFirst() {
        if c == 37 {  // %
            guard let h = it.popFirst(), let l = it.popFirst(), let hv = hex(h), let lv = hex(l) else { return nil }
            bytes.append(hv << 4 | lv)
        } else if c == 43 && plusAsSpace {
            bytes.append(32)
        } else {
            bytes.append(c)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

/// A response a handler returns; the server adds Content-Length, Date and Connection.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int = 200, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// `text/plain; charset=utf-8` (used by `/metrics` with the Prometheus content type).
    public static func text(_ text: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": contentType], body: Array(text.utf8))
    }

    /// Prometheus text exposition format 0.0.4.
    public static func prometheus(_ text: String) -> HTTPResponse {
        .text(text, contentType: "text/plain; version=0.0.4; charset=utf-8")
    }

    /// JSON from an Encodable value (sorted keys, no escaped slashes, trailing newline).
    public static func json<T: Encodable>(_ value: T, status: Int = 200) -> HTTPResponse {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            var body = Array(try enc.encode(value))
            body.append(10)
            return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
        } catch {
            return .error(status: 500, code: "INTERNAL", message: "could not encode response: \(error)")
        }
    }

    /// JSON from a JSONSerialization-compatible value (dictionaries, arrays, strings, numbers, bools, NSNull).
    public static func jsonObject(_ value: Any, status: Int = 200) -> HTTPResponse {
        if var body = PlainJSON.encode(value) {
            body.append(10)
            return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
        }
        guard JSONSerialization.isValidJSONObject(value) || value is String || value is NSNumber || value is NSNull || value is Bool || value is Int,
              let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]) else {
            return .error(status: 500, code: "INTERNAL", message: "handler produced a value that is not JSON")
        }
        var body = Array(data)
        body.append(10)
        return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
    }

    /// The project's error shape: `{"error":{"code":…,"message":…, extra…}}`.
    public static func error(status: Int, code: String, message: String, extra: [String: Any] = [:]) -> HTTPResponse {
        var inner: [String: Any] = extra
        inner["code"] = code
        inner["message"] = message
        if var body = PlainJSON.encode(["error": inner]) {
            body.append(10)
            return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
        }
        let data = (try? JSONSerialization.data(withJSONObject: ["error": inner], options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{\"error\":{\"code\":\"INTERNAL\",\"message\":\"unencodable error\"}}".utf8)
        var body = Array(data)
        body.append(10)
        return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
    }

    /// Serialized head + body as sent on the wire.
    public func serialized(keepAlive: Bool, headOnly: Bool = false, date: String? = nil) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\n"
        for (n, v) in headers where !n.caseInsensitiveEquals("Content-Length") && !n.caseInsensitiveEquals("Connection") {
            head += "\(n): \(v)\r\n"
        }
        if let date = date { head += "Date: \(date)\r\n" }
        head += "Content-Length: \(body.count)\r\n"
        head += keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n"
        head += "\r\n"
        var out = Array(head.utf8)
        if !headOnly { out.append(contentsOf: body) }
        return out
    }
}

/// An error a handler (or the server) turns into the JSON error response.
public struct HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    /// Extra string fields inside `error` (e.g. `leader_peer_id` with NOT_LEADER).
    public var details: [String: String]

    public init(status: Int, code: String, message: String, details: [String: String] = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
    }

    public var response: HTTPResponse { .error(status: status, code: code, message: message, extra: details) }
    public var description: String { "\(status) \(code): \(message)" }

    static func describeDecoding(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            let path = ctx.codingPath.map { $0.stringValue }.joined(separator: ".")
            return "wrong type at \"\(path)\""
        case DecodingError.dataCorrupted: return "malformed JSON"
        default: return "malformed JSON"
        }
    }
}

/// Reason phrases for the statuses this API uses.
public enum HTTPStatus {
    public static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 421: return "Misdirected Request"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }

    /// IMF-fixdate for the Date header, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (the last one is
    /// cached: every response in the same second carries the same text).
    public static func httpDate(_ secs: Int64) -> String {
        dateLock.lock()
        let cached = dateCache
        dateLock.unlock()
        if cached.secs == secs { return cached.text }
        var t = time_t(secs)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func pad(_ n: Int32, _ width: Int) -> String {
            let s = String(n)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        let text = days[Int(tmv.tm_wday)] + ", " + pad(tmv.tm_mday, 2) + " " + months[Int(tmv.tm_mon)] + " " + pad(tmv.tm_year + 1900, 4)
            + " " + pad(tmv.tm_hour, 2) + ":" + pad(tmv.tm_min, 2) + ":" + pad(tmv.tm_sec, 2) + " GMT"
        dateLock.lock()
        dateCache = (secs, text)
        dateLock.unlock()
        return text
    }
    private static let dateLock = NSLock()
    nonisolated(unsafe) private static var dateCache: (secs: Int64, text: String) = (Int64.min, "")
}
