import Identity
import Support
import Wire

/// What the `p2pos tx sign` command calls: build and sign txs from op + payload requests.
public enum TxTool {
    /// A fresh random nonce: 32 lowercase hex digits (128 bits).
    public static func randomNonce() -> String { Hex.encode(Sodium.randomBytes(16)) }

    /// Sign one request. `payloadJSON` is a JSON object text; `nonce` defaults to a random one
    /// and `ts` to `now`. Throws `TxRejection` (MALFORMED for a bad op or payload).
    public static func sign(op: String, payloadJSON: String, key: PrivateKey, clusterID: String, now: Timestamp,
                            nonce: String? = nil) throws(TxRejection) -> Tx {
        guard let txOp = TxOp(rawValue: op) else {
            throw TxRejection(.malformed, "unknown op \"\(op)\"; expected one of \(TxOp.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let value: JSONValue
        do { value = try JSONValue.parse(Array(payloadJSON.utf8), limits: JSONLimits(maxBytes: Tx.maxBytes, maxDepth: Tx.maxDepth)) } catch {
            throw TxRejection(.malformed, "payload: \(error)")
        }
        guard case .object(let payload) = value else { throw TxRejection(.malformed, "payload must be a JSON object") }
        return try Tx.sign(key: key, op: txOp, payload: payload, clusterID: clusterID, nonce: nonce ?? randomNonce(), ts: now)
    }

    /// NDJSON in, NDJSON out. Each non-blank input line is `{"op":…,"payload":{…}}` with optional
    /// `"nonce"` (string) and `"ts"` (RFC 3339 UTC; defaults to `now`) and `"cluster_id"` (defaults
    /// to `clusterID`). Each output line is the signed tx in canonical JSON, in input order.
    /// The first bad line throws `TxRejection` naming its line number; nothing is returned then.
    public static func signLines(input: String, key: PrivateKey, clusterID: String, now: Timestamp) throws(TxRejection) -> [String] {
        var out: [String] = []
        var lineNo = 0
        for raw in input.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            do throws(TxRejection) {
                out.append(try signRequest(String(line), key: key, clusterID: clusterID, now: now).encodedString)
            } catch {
                throw TxRejection(error.code, "line \(lineNo): \(error.message)")
            }
        }
        return out
    }

    /// Split the input of `tx submit` into its JSON values, each with the line it starts on:
    /// NDJSON (one tx per line), pretty-printed txs one after another, or a mix. Only the
    /// structure is scanned (brackets outside strings, string escapes); each value is parsed later
    /// on its own, so one bad value costs only itself: a string still open at the end of its line
    /// (JSON strings hold no raw newline) ends the value there, and a value still open at the end
    /// of the input is cut to its first line, scanning going on from the next line — so a
    /// truncated line does not swallow the txs after it.
    public static func splitJSONValues(_ input: [UInt8]) -> [(line: Int, bytes: ArraySlice<UInt8>)] {
        var out: [(line: Int, bytes: ArraySlice<UInt8>)] = []
        var i = 0, line = 1
        let n = input.count
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
        while i < n {
            if isSpace(input[i]) { if input[i] == 0x0A { line += 1 }; i += 1; continue }
            let start = i, startLine = line
            var depth = 0, inString = false, escaped = false, closed = false
            var firstNewline: Int? = nil    // index of the first newline inside this value
            var lines = 0                   // newlines inside this value
            scan: while i < n {
                let b = input[i]
                if inString {
                    if b == 0x0A { closed = true; break scan }      // the newline is left to the outer loop
                    if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 {
                        inString = false
                        if depth == 0 { i += 1; closed = true; break scan }
                    }
                    i += 1
                    continue
                }
                switch b {
                case 0x22: inString = true
                case 0x7B, 0x5B: depth += 1
                case 0x7D, 0x5D:
                    depth -= 1
                    if depth <= 0 { i += 1; closed = true; break scan }
                default:
                    if depth == 0 && isSpace(b) { closed = true; break scan }   // a bare token ends
                    if b == 0x0A {
                        if firstNewline == nil { firstNewline = i }
                        lines += 1
                    }
                }
                i += 1
            }
            if !closed, let cut = firstNewline {
                // Open at the end of the input: only its first line is this value.
                out.append((startLine, input[start..<cut]))
                i = cut
                line = startLine
                continue
            }
            out.append((startLine, input[start..<i]))
            line = startLine + lines
        }
        return out
    }

    /// Sign one NDJSON request line (see `signLines`).
    public static func signRequest(_ line: String, key: PrivateKey, clusterID: String, now: Timestamp) throws(TxRejection) -> Tx {
        let value: JSONValue
        do { value = try JSONValue.parse(Array(line.utf8), limits: JSONLimits(maxBytes: Tx.maxBytes, maxDepth: Tx.maxDepth)) } catch {
            throw TxRejection(.malformed, "\(error)")
        }
        guard case .object(let o) = value else { throw TxRejection(.malformed, "expected a JSON object {\"op\",\"payload\"}") }
        for k in o.keys where !["op", "payload", "nonce", "ts", "cluster_id"].contains(k) {
            throw TxRejection(.malformed, "unknown field \"\(k)\"; expected op, payload, nonce, ts, cluster_id")
        }
        guard let opText = o["op"]?.stringValue, let op = TxOp(rawValue: opText) else {
            throw TxRejection(.malformed, "\"op\" must be one of \(TxOp.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard case .object(let payload)? = o["payload"] else { throw TxRejection(.malformed, "\"payload\" must be an object") }
        var ts = now
        if let t = o["ts"] {
            guard let s = t.stringValue, s.hasSuffix("Z"), let parsed = Timestamp(rfc3339: s) else {
                throw TxRejection(.malformed, "\"ts\" must be an RFC 3339 UTC time ending in Z")
            }
            ts = parsed
        }
        var nonce = randomNonce()
        if let n = o["nonce"] {
            guard let s = n.stringValue else { throw TxRejection(.malformed, "\"nonce\" must be a string") }
            nonce = s
        }
        var cluster = clusterID
        if let c = o["cluster_id"] {
            guard let s = c.stringValue else { throw TxRejection(.malformed, "\"cluster_id\" must be a string") }
            cluster = s
        }
        return try Tx.sign(key: key, op: op, payload: payload, clusterID: cluster, nonce: nonce, ts: ts)
    }
}
