import Identity
import Support
import Wire

/// Stable rejection codes of transactions (the API and CLI show them verbatim).
public enum RejectCode: String, Sendable, CaseIterable, Equatable {
    /// The signature does not verify under `public_key`, or the key is unusable.
    case badSignature = "BAD_SIGNATURE"
    /// A different tx already used this signer's nonce.
    case replayed = "REPLAYED"
    /// `ts` is more than the allowed skew away from the admitting node's clock.
    case expired = "EXPIRED"
    /// Not a well-formed tx: JSON, envelope or payload shape.
    case malformed = "MALFORMED"
    /// The tx is larger than `Tx.maxBytes`.
    case tooLarge = "TOO_LARGE"
    /// `cluster_id` is not this cluster's.
    case wrongCluster = "WRONG_CLUSTER"
    /// The signer (or the handoff target) is not a participant of the session.
    case notParticipant = "NOT_PARTICIPANT"
    /// The step is already claimed.
    case stepClaimed = "STEP_CLAIMED"
    /// The signer is not the step's claimant.
    case notClaimant = "NOT_CLAIMANT"
    /// The session, step or decision does not exist.
    case notFound = "NOT_FOUND"
    /// The id is taken (session, step, artifact, decision) or the signer already joined.
    case alreadyExists = "ALREADY_EXISTS"
    /// The step has an undecided decision (DECISION_OPEN twice, or STEP_RESOLVE too early).
    case decisionOpen = "DECISION_OPEN"
    /// The decision has already been decided; no more votes.
    case decisionClosed = "DECISION_CLOSED"
    /// The signer already voted on this decision.
    case alreadyVoted = "ALREADY_VOTED"
    /// The option is not one of the decision's options.
    case badOption = "BAD_OPTION"
    /// Only the step's claimant or the session owner may do this.
    case notOwner = "NOT_OWNER"
    /// The step is resolved; it can no longer change.
    case stepResolved = "STEP_RESOLVED"
    /// STEP_RESOLVE outcome differs from the step's decided decision.
    case outcomeMismatch = "OUTCOME_MISMATCH"
    /// The session is completed; nobody can join any more.
    case sessionCompleted = "SESSION_COMPLETED"
}

/// A transaction rejected with a stable code and a one-line message.
public struct TxRejection: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: RejectCode
    public let message: String

    public init(_ code: RejectCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The nine operations of the collaboration state machine.
public enum TxOp: String, Sendable, CaseIterable, Equatable {
    case sessionCreate = "SESSION_CREATE"
    case participantJoin = "PARTICIPANT_JOIN"
    case stepClaim = "STEP_CLAIM"
    case stepRelease = "STEP_RELEASE"
    case stepHandoff = "STEP_HANDOFF"
    case artifactAdd = "ARTIFACT_ADD"
    case decisionOpen = "DECISION_OPEN"
    case voteCast = "VOTE_CAST"
    case stepResolve = "STEP_RESOLVE"
}

/// A typed, validated payload.
public enum TxOperation: Equatable, Sendable {
    /// One step of a new session.
    public struct NewStep: Equatable, Sendable {
        public let stepID: String
        public let title: String
    }

    case sessionCreate(sessionID: String, title: String, steps: [NewStep])
    case participantJoin(sessionID: String)
    case stepClaim(stepID: String)
    case stepRelease(stepID: String)
    /// `to` is the target's public key, re-encoded canonically.
    case stepHandoff(stepID: String, to: String)
    case artifactAdd(stepID: String, artifactID: String, kind: String, uri: String, sha256: String?)
    case decisionOpen(stepID: String, decisionID: String, question: String, options: [String], quorum: Int64)
    case voteCast(decisionID: String, option: String)
    case stepResolve(stepID: String, outcome: String)
}

/// A signed transaction whose envelope shape, payload shape and signature have been checked.
/// Immutable, so a class: a tx passes through admission, proposal, pre-verification and apply,
/// and copying a struct of a dozen references retained each of them every time (about 3 % of the
/// leader's CPU went to retaining and releasing the fields of copied txs).
public final class Tx: Sendable, Equatable {
    /// Maximum size of one encoded tx, in bytes.
    public static let maxBytes = 64 * 1024
    /// Maximum JSON nesting depth of a tx.
    public static let maxDepth = 16
    /// The limits a tx is parsed with.
    public static let parseLimits = JSONLimits(maxBytes: maxBytes, maxDepth: maxDepth)
    /// Domain-separation prefix of the signed bytes.
    public static let signingPrefix = "p2pos/tx/v1\n"
    /// Default admission window for `ts`, in seconds either side of the admitting node's clock.
    public static let defaultMaxSkewSeconds: Int64 = 300

    public let op: TxOp
    public let clusterID: String
    public let nonce: String
    /// `ts` exactly as signed.
    public let ts: String
    /// `ts` parsed.
    public let timestamp: Timestamp
    public let payload: JSONObject
    public let operation: TxOperation
    public let publicKey: PublicKey
    /// The signer's identity in state: the canonical base64 protobuf public key.
    public let signer: String
    public let signature: [UInt8]
    /// `"p2pos/tx/v1\n"` + canonical JSON of the envelope without `signature`.
    public let signedBytes: [UInt8]
    /// Lowercase hex SHA-256 of `signedBytes`.
    public let txID: String
    /// The full envelope (with `signature`).
    public let envelope: JSONValue
    /// The bytes this tx was decoded from, when they were the envelope's canonical encoding.
    let canonicalInput: [UInt8]?

    init(op: TxOp, clusterID: String, nonce: String, ts: String, timestamp: Timestamp, payload: JSONObject,
         operation: TxOperation, publicKey: PublicKey, signer: String, signature: [UInt8],
         signedBytes: [UInt8], txID: String, envelope: JSONValue, canonicalInput: [UInt8]? = nil) {
        self.op = op
        self.clusterID = clusterID
        self.nonce = nonce
        self.ts = ts
        self.timestamp = timestamp
        self.payload = payload
        self.operation = operation
        self.publicKey = publicKey
        self.signer = signer
        self.signature = signature
        self.signedBytes = signedBytes
        self.txID = txID
        self.envelope = envelope
        self.canonicalInput = canonicalInput
    }

    /// Two txs are equal when their tx_id and signature are (key order and whitespace do not matter).
    public static func == (a: Tx, b: Tx) -> Bool { a.txID == b.txID && a.signature == b.signature }

    /// The envelope in canonical JSON, ready to submit (one line, no trailing newline).
    /// The leader proposes these bytes, so they are not encoded again when avoidable: they are
    /// the tx's own input when that was canonical (the usual case); otherwise they are built from
    /// `signedBytes`: the envelope's members are the eight fields in canonical order
    /// (`cluster_id`, `nonce`, `op`, `payload`, `public_key`, `signature`, `ts`, `v`), so the full
    /// encoding is the signed one with the `signature` member put back before `ts`. Whenever that
    /// shortcut does not provably hold (a `ts` or signature text that would need escaping), the
    /// envelope is encoded as usual.
    public var encoded: [UInt8] {
        if let canonicalInput { return canonicalInput }
        let prefix = Tx.signingPrefix.utf8.count
        let head = Tx.tsMemberHead, end = Tx.vMember
        let tsCount = ts.utf8.count
        let tailCount = head.count + tsCount + end.count
        let cut = signedBytes.count - tailCount
        guard cut > prefix,
              signedBytes[cut..<(cut + head.count)].elementsEqual(head),
              signedBytes[(cut + head.count)..<(cut + head.count + tsCount)].elementsEqual(ts.utf8),
              signedBytes[(signedBytes.count - end.count)...].elementsEqual(end),
              let sigText = envelope["signature"]?.stringValue,
              sigText.utf8.allSatisfy(Base64.isTextByte) else {
            return envelope.canonicalBytes
        }
        var out: [UInt8] = []
        out.reserveCapacity(signedBytes.count - prefix + Tx.signatureMemberHead.count + sigText.utf8.count + 1)
        out.append(contentsOf: signedBytes[prefix..<cut])
        out.append(contentsOf: Tx.signatureMemberHead)
        out.append(contentsOf: sigText.utf8)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: signedBytes[cut...])
        return out
    }
    private static let tsMemberHead = Array(",\"ts\":\"".utf8)
    private static let vMember = Array("\",\"v\":1}".utf8)
    private static let signatureMemberHead = Array(",\"signature\":\"".utf8)
    public var encodedString: String { envelope.canonicalString }

    /// The bytes a signer signs for `envelopeWithoutSignature`.
    public static func signingBytes(_ envelopeWithoutSignature: JSONValue) -> [UInt8] {
        Array(signingPrefix.utf8) + envelopeWithoutSignature.canonicalBytes
    }

    /// Parse and check shape and signature (everything that needs neither a clock nor state).
    /// Cluster id, skew and business rules are checked by `admit` and `Ledger.apply`.
    public static func decode(_ bytes: [UInt8]) throws(TxRejection) -> Tx {
        let tx = try decodeUnverified(bytes)
        try tx.verifySignature()
        return tx
    }

    /// Check a parsed envelope (shape, payload, signature).
    public static func decode(_ value: JSONValue) throws(TxRejection) -> Tx {
        let tx = try decodeUnverified(value)
        try tx.verifySignature()
        return tx
    }

    /// BAD_SIGNATURE unless `signature` verifies over `signedBytes` under `public_key`, by the
    /// rule of `Ed25519` (the one every node applies, alone or in a batch).
    public func verifySignature() throws(TxRejection) {
        guard Ed25519.verify(publicKey: publicKey.raw, signature: signature, message: signedBytes) else {
            throw TxRejection(.badSignature, "signature does not verify under public_key")
        }
    }

    /// Shape and payload only; the caller must `verifySignature()` before trusting the tx.
    public static func decodeUnverified(_ bytes: [UInt8]) throws(TxRejection) -> Tx {
        guard bytes.count <= maxBytes else {
            throw TxRejection(.tooLarge, "tx is \(bytes.count) bytes; the limit is \(maxBytes)")
        }
        let document: JSONDocument
        do {
            document = try JSONDocument(bytes, limits: parseLimits)
        } catch {
            throw TxRejection(.malformed, error.description)
        }
        return try decodeUnverified(document.value, source: document)
    }

    static let envelopeFields = ["v", "op", "cluster_id", "nonce", "ts", "payload", "public_key", "signature"]

    /// The position of `key` in `envelopeFields` (byte-exact), nil for any other key. By length
    /// first: at most two comparisons instead of a scan.
    static func envelopeField(_ key: String) -> Int? {
        let candidates: (Int, Int)
        switch key.utf8.count {
        case 1: candidates = (0, 0)
        case 2: candidates = (1, 4)
        case 5: candidates = (3, 3)
        case 7: candidates = (5, 5)
        case 9: candidates = (7, 7)
        case 10: candidates = (2, 6)
        default: return nil
        }
        if Limits.same(key, envelopeFields[candidates.0]) { return candidates.0 }
        if Limits.same(key, envelopeFields[candidates.1]) { return candidates.1 }
        return nil
    }

    /// `source`: the document `value` comes from (its bytes and what the parser noted about
    /// them); when they are canonical, the signed bytes are cut from them instead of written again.
    static func decodeUnverified(_ value: JSONValue, source: JSONDocument? = nil) throws(TxRejection) -> Tx {
        guard case .object(let env) = value else { throw TxRejection(.malformed, "tx must be a JSON object, got \(value.typeName)") }
        // One pass over the members (keys are unique: the parser and JSONObject see to it).
        var fields: (JSONValue?, JSONValue?, JSONValue?, JSONValue?, JSONValue?, JSONValue?, JSONValue?, JSONValue?)
        for m in env.members {
            switch envelopeField(m.key) {
            case 0: fields.0 = m.value
            case 1: fields.1 = m.value
            case 2: fields.2 = m.value
            case 3: fields.3 = m.value
            case 4: fields.4 = m.value
            case 5: fields.5 = m.value
            case 6: fields.6 = m.value
            case 7: fields.7 = m.value
            default: throw TxRejection(.malformed, "unknown envelope field \"\(m.key)\"")
            }
        }
        func field(_ v: JSONValue?, _ k: String) throws(TxRejection) -> JSONValue {
            guard let v else { throw TxRejection(.malformed, "missing envelope field \"\(k)\"") }
            return v
        }
        func str(_ v: JSONValue?, _ k: String) throws(TxRejection) -> String {
            let v = try field(v, k)
            guard case .string(let s) = v else { throw TxRejection(.malformed, "\"\(k)\" must be a string, got \(v.typeName)") }
            return s
        }
        guard case .int(1) = try field(fields.0, "v") else { throw TxRejection(.malformed, "\"v\" must be the integer 1") }
        let opText = try str(fields.1, "op")
        guard let op = TxOp(rawValue: opText) else {
            throw TxRejection(.malformed, "unknown op \"\(opText)\"; expected one of \(TxOp.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let clusterID = try str(fields.2, "cluster_id")
        guard !clusterID.isEmpty, clusterID.utf8.count <= 128 else { throw TxRejection(.malformed, "\"cluster_id\" must be 1..128 bytes") }
        let nonce = try str(fields.3, "nonce")
        try Limits.checkID(nonce, "nonce")
        let ts = try str(fields.4, "ts")
        guard ts.hasSuffix("Z"), let timestamp = Timestamp(rfc3339: ts) else {
            throw TxRejection(.malformed, "\"ts\" must be an RFC 3339 UTC time ending in Z, got \"\(Limits.clip(ts))\"")
        }
        let payloadValue = try field(fields.5, "payload")
        guard case .object(let payload) = payloadValue else {
            throw TxRejection(.malformed, "\"payload\" must be an object, got \(payloadValue.typeName)")
        }
        let pkText = try str(fields.6, "public_key")
        let publicKey: PublicKey
        let signer: String
        do {
            // The signer is the key's canonical text: the text sent when it already is that.
            let (key, textIsCanonical) = try PublicKey.decode(base64: pkText)
            publicKey = key
            signer = textIsCanonical ? pkText : key.base64
        } catch {
            throw TxRejection(.malformed, "\"public_key\" is not a base64 protobuf Ed25519 public key: \(error)")
        }
        let sigText = try str(fields.7, "signature")
        guard let signature = Base64.decode(sigText), signature.count == 64 else {
            throw TxRejection(.malformed, "\"signature\" must be 64 bytes in standard base64")
        }
        let operation = try PayloadReader.operation(op, payload)

        // The envelope without its signature, canonical, behind the prefix (= `signingBytes` of
        // the envelope minus "signature"): cut from canonical input, else written without
        // copying the envelope first.
        let signed: [UInt8]
        var canonicalInput: [UInt8]? = nil
        if let source, source.isCanonical {
            signed = source.canonicalBytes(prefix: signingPrefix, omitting: "signature")
            canonicalInput = source.bytes
        } else {
            signed = value.canonicalBytes(prefix: signingPrefix, omitting: "signature")
        }
        return Tx(op: op, clusterID: clusterID, nonce: nonce, ts: ts, timestamp: timestamp, payload: payload,
                  operation: operation, publicKey: publicKey, signer: signer, signature: signature,
                  signedBytes: signed, txID: SHA256.hex(signed), envelope: value, canonicalInput: canonicalInput)
    }

    /// Admission before consensus: shape, size, signature, cluster id and `ts` within
    /// ±`maxSkewSeconds` of `now` (the admitting node's clock).
    /// `parsed`: `bytes` already parsed with this type's limits (`parseLimits`), to skip a
    /// second parse; the result is the same as parsing `bytes` here.
    public static func admit(_ bytes: [UInt8], parsed: JSONDocument? = nil, clusterID: String, now: Timestamp,
                             maxSkewSeconds: Int64 = defaultMaxSkewSeconds) throws(TxRejection) -> Tx {
        try admit(decoded: decodeForAdmission(bytes, parsed: parsed), clusterID: clusterID, now: now, maxSkewSeconds: maxSkewSeconds)
    }

    /// `admit` for many txs, their signatures checked as one batch (`SignatureMemo.verifyBatch`);
    /// each result is what `admit` gives that tx alone. `parsed[i]`, when present, is `bytes[i]`
    /// already parsed (as for `admit`).
    public static func admit(batch bytes: [[UInt8]], parsed: [JSONDocument?] = [], clusterID: String, now: Timestamp,
                             maxSkewSeconds: Int64 = defaultMaxSkewSeconds) -> [Result<Tx, TxRejection>] {
        var decoded: [Result<Tx, TxRejection>] = []
        decoded.reserveCapacity(bytes.count)
        for (i, b) in bytes.enumerated() {
            do throws(TxRejection) { decoded.append(.success(try decodeForAdmission(b, parsed: i < parsed.count ? parsed[i] : nil))) } catch {
                decoded.append(.failure(error))
            }
        }
        if decoded.count > 1 {
            SignatureMemo.shared.verifyBatch(decoded.compactMap { d -> Tx? in
                guard case .success(let tx) = d, Limits.same(tx.clusterID, clusterID) else { return nil }
                return tx
            })
        }
        return decoded.map { d in
            do throws(TxRejection) { return .success(try admit(decoded: d.get(), clusterID: clusterID, now: now, maxSkewSeconds: maxSkewSeconds)) } catch {
                return .failure(error)
            }
        }
    }

    /// The shape and payload step of `admit` (nothing checked against the node yet). With
    /// `parsed`, the document's own bytes are the tx decoded (`bytes` is only the fallback).
    public static func decodeForAdmission(_ bytes: [UInt8], parsed: JSONDocument? = nil) throws(TxRejection) -> Tx {
        if let parsed, parsed.bytes.count <= maxBytes { return try decodeUnverified(parsed.value, source: parsed) }
        return try decodeUnverified(bytes)
    }

    /// The rest of `admit` for a decoded tx: cluster, signature (a hit when `SignatureMemo`
    /// already checked it, e.g. in a batch), ts window.
    public static func admit(decoded tx: Tx, clusterID: String, now: Timestamp,
                             maxSkewSeconds: Int64 = defaultMaxSkewSeconds) throws(TxRejection) -> Tx {
        guard Limits.same(tx.clusterID, clusterID) else {
            throw TxRejection(.wrongCluster, "tx is for cluster \"\(Limits.clip(tx.clusterID))\", this is \"\(clusterID)\"")
        }
        try SignatureMemo.shared.verify(tx)
        if let r = windowRejection(tx, now: now, maxSkewSeconds: maxSkewSeconds) { throw r }
        return tx
    }

    /// `EXPIRED` when `ts` is outside the admission window around `now`, else nil.
    public static func windowRejection(_ tx: Tx, now: Timestamp, maxSkewSeconds: Int64 = defaultMaxSkewSeconds) -> TxRejection? {
        let skew = tx.timestamp.interval(since: now)
        guard abs(skew) > Double(maxSkewSeconds) else { return nil }
        let dir = skew > 0 ? "ahead of" : "behind"
        return TxRejection(.expired, "ts \(tx.ts) is \(Int64(abs(skew)))s \(dir) this node's clock (allowed ±\(maxSkewSeconds)s); re-sign with the current time")
    }

    /// Build and sign a tx. The payload is validated, so a bad payload fails here (MALFORMED).
    public static func sign(key: PrivateKey, op: TxOp, payload: JSONObject, clusterID: String,
                            nonce: String, ts: Timestamp) throws(TxRejection) -> Tx {
        var env = JSONObject()
        env["v"] = .int(1)
        env["op"] = .string(op.rawValue)
        env["cluster_id"] = .string(clusterID)
        env["nonce"] = .string(nonce)
        env["ts"] = .string(ts.rfc3339Nano)
        env["payload"] = .object(payload)
        env["public_key"] = .string(key.publicKey.base64)
        let sig = key.sign(signingBytes(.object(env)))
        env["signature"] = .string(Base64.encode(sig))
        return try decode(.object(env))
    }
}

/// Size and character limits of tx fields.
enum Limits {
    static let maxIDBytes = 128
    static let maxTextBytes = 1024
    static let maxOptionBytes = 256
    static let maxKindBytes = 64
    static let maxURIBytes = 2048
    static let maxSteps = 256
    static let minOptions = 2
    static let maxOptions = 16
    static let maxQuorum: Int64 = 1000

    /// IDs and nonces: 1..128 bytes of `A-Z a-z 0-9 . _ : -` (safe in URLs and logs).
    static func checkID(_ s: String, _ name: String) throws(TxRejection) {
        let b = s.utf8
        guard !b.isEmpty, b.count <= maxIDBytes else { throw TxRejection(.malformed, "\"\(name)\" must be 1..\(maxIDBytes) bytes") }
        for c in b {
            let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2E || c == 0x5F || c == 0x3A || c == 0x2D
            guard ok else { throw TxRejection(.malformed, "\"\(name)\" may contain only A-Z a-z 0-9 . _ : -") }
        }
    }

    /// Free text: 1..max bytes, no NUL.
    static func checkText(_ s: String, _ name: String, max: Int) throws(TxRejection) {
        guard !s.isEmpty, s.utf8.count <= max else { throw TxRejection(.malformed, "\"\(name)\" must be 1..\(max) bytes") }
        guard !s.utf8.contains(0) else { throw TxRejection(.malformed, "\"\(name)\" must not contain U+0000") }
    }

    /// Byte-exact string equality (Swift's `==` treats canonically equivalent strings as equal,
    /// SQLite and other implementations do not).
    static func same(_ a: String, _ b: String) -> Bool { utf8Equal(a, b) }

    static func clip(_ s: String) -> String { s.utf8.count <= 64 ? s : String(s.prefix(60)) + "…" }
}

/// Reads one op's payload strictly: required fields, types, limits, no unknown keys.
struct PayloadReader {
    let obj: JSONObject
    let op: TxOp

    static func operation(_ op: TxOp, _ payload: JSONObject) throws(TxRejection) -> TxOperation {
        let r = PayloadReader(obj: payload, op: op)
        switch op {
        case .sessionCreate:
            try r.only(["session_id", "title", "steps"])
            let sid = try r.id("session_id")
            let title = try r.text("title", max: Limits.maxTextBytes)
            guard case .array(let items)? = payload["steps"] else { throw r.bad("\"steps\" must be an array") }
            guard items.count >= 1, items.count <= Limits.maxSteps else { throw r.bad("\"steps\" must have 1..\(Limits.maxSteps) entries") }
            var steps: [TxOperation.NewStep] = []
            var seen = Set<String>()
            for (i, item) in items.enumerated() {
                guard case .object(let o) = item else { throw r.bad("steps[\(i)] must be an object") }
                let sr = PayloadReader(obj: o, op: op)
                try sr.only(["step_id", "title"], at: "steps[\(i)]")
                let stepID = try sr.id("step_id")
                guard seen.insert(stepID).inserted else {
                    throw TxRejection(.malformed, "\(op.rawValue): step_id \"\(stepID)\" appears twice in steps")
                }
                steps.append(.init(stepID: stepID, title: try sr.text("title", max: Limits.maxTextBytes)))
            }
            return .sessionCreate(sessionID: sid, title: title, steps: steps)
        case .participantJoin:
            try r.only(["session_id"])
            return .participantJoin(sessionID: try r.id("session_id"))
        case .stepClaim:
            try r.only(["step_id"])
            return .stepClaim(stepID: try r.id("step_id"))
        case .stepRelease:
            try r.only(["step_id"])
            return .stepRelease(stepID: try r.id("step_id"))
        case .stepHandoff:
            try r.only(["step_id", "to"])
            let stepID = try r.id("step_id")
            let toText = try r.string("to")
            guard let key = try? PublicKey(base64: toText) else {
                throw r.bad("\"to\" must be a base64 protobuf Ed25519 public key")
            }
            return .stepHandoff(stepID: stepID, to: key.base64)
        case .artifactAdd:
            try r.only(["step_id", "artifact_id", "kind", "uri", "sha256"])
            let stepID = try r.id("step_id")
            let artifactID = try r.id("artifact_id")
            let kind = try r.text("kind", max: Limits.maxKindBytes)
            let uri = try r.text("uri", max: Limits.maxURIBytes)
            var sha: String? = nil
            if payload["sha256"] != nil {
                let s = try r.string("sha256")
                guard Hex.isLowercase(s, count: 64) else {
                    throw r.bad("\"sha256\" must be 64 lowercase hex digits")
                }
                sha = s
            }
            return .artifactAdd(stepID: stepID, artifactID: artifactID, kind: kind, uri: uri, sha256: sha)
        case .decisionOpen:
            try r.only(["step_id", "decision_id", "question", "options", "quorum"])
            let stepID = try r.id("step_id")
            let decisionID = try r.id("decision_id")
            let question = try r.text("question", max: Limits.maxTextBytes)
            guard case .array(let items)? = payload["options"] else { throw r.bad("\"options\" must be an array of strings") }
            guard items.count >= Limits.minOptions, items.count <= Limits.maxOptions else {
                throw r.bad("\"options\" must have \(Limits.minOptions)..\(Limits.maxOptions) entries")
            }
            var options: [String] = []
            for (i, item) in items.enumerated() {
                guard case .string(let s) = item else { throw r.bad("options[\(i)] must be a string") }
                try Limits.checkText(s, "options[\(i)]", max: Limits.maxOptionBytes)
                guard !options.contains(where: { Limits.same($0, s) }) else { throw r.bad("option \"\(Limits.clip(s))\" appears twice") }
                options.append(s)
            }
            guard case .int(let quorum)? = payload["quorum"] else { throw r.bad("\"quorum\" must be an integer") }
            guard quorum >= 1, quorum <= Limits.maxQuorum else { throw r.bad("\"quorum\" must be 1..\(Limits.maxQuorum)") }
            return .decisionOpen(stepID: stepID, decisionID: decisionID, question: question, options: options, quorum: quorum)
        case .voteCast:
            try r.only(["decision_id", "option"])
            let decisionID = try r.id("decision_id")
            let option = try r.text("option", max: Limits.maxOptionBytes)
            return .voteCast(decisionID: decisionID, option: option)
        case .stepResolve:
            try r.only(["step_id", "outcome"])
            let stepID = try r.id("step_id")
            return .stepResolve(stepID: stepID, outcome: try r.text("outcome", max: Limits.maxTextBytes))
        }
    }

    func bad(_ message: String) -> TxRejection { TxRejection(.malformed, "\(op.rawValue): \(message)") }

    /// MALFORMED unless every key is one of `keys` (compared byte for byte).
    func only(_ keys: [String], at place: String = "payload") throws(TxRejection) {
        for m in obj.members where !keys.contains(where: { Limits.same($0, m.key) }) {
            throw bad("unknown field \"\(m.key)\" in \(place)")
        }
    }

    func string(_ k: String) throws(TxRejection) -> String {
        guard let v = obj[k] else { throw bad("missing field \"\(k)\"") }
        guard case .string(let s) = v else { throw bad("\"\(k)\" must be a string, got \(v.typeName)") }
        return s
    }

    func id(_ k: String) throws(TxRejection) -> String {
        let s = try string(k)
        do { try Limits.checkID(s, k) } catch { throw bad(error.message) }
        return s
    }

    func text(_ k: String, max: Int) throws(TxRejection) -> String {
        let s = try string(k)
        do { try Limits.checkText(s, k, max: max) } catch { throw bad(error.message) }
        return s
    }
}
