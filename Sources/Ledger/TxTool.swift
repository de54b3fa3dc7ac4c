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

    /// Maximum size of a `POST /v1/p2p/tx` body and number of txs in it.
    public static let maxSubmissionBytes = 4 << 20
    public static let maxSubmissionTxs = 1000

    /// Split a submission body — one tx object, or `{"txs":[tx, …]}` — into the canonical bytes of
    /// each tx, to `Tx.admit` one by one (so each gets its own result). Throws MALFORMED or
    /// TOO_LARGE for the body as a whole.
    public static func splitSubmission(_ body: [UInt8]) throws(TxRejection) -> [[UInt8]] {
        guard body.count <= maxSubmissionBytes else {
            throw TxRejection(.tooLarge, "body is \(body.count) bytes; the limit is \(maxSubmissionBytes)")
        }
        let value: JSONValue
        do { value = try JSONValue.parse(body, limits: JSONLimits(maxBytes: maxSubmissionBytes, maxDepth: Tx.maxDepth + 2)) } catch {
            throw TxRejection(.malformed, error.description)
        }
        guard case .object(let o) = value else { throw TxRejection(.malformed, "body must be a tx object or {\"txs\":[…]}") }
        guard o.count == 1, case .array(let items)? = o["txs"] else { return [value.canonicalBytes] }
        guard !items.isEmpty, items.count <= maxSubmissionTxs else {
            throw TxRejection(.malformed, "\"txs\" must hold 1..\(maxSubmissionTxs) txs")
        }
        return items.map { $0.canonicalBytes }
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
