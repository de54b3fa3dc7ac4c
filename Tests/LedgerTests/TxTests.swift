import XCTest
import Identity
import Support
import Wire
@testable import Ledger

final class TxTests: XCTestCase {
    let cluster = Harness.cluster
    let now = Harness.now

    func signed(_ op: TxOp = .participantJoin, _ payload: String = "{\"session_id\":\"s1\"}",
                cluster c: String? = nil, ts: Timestamp? = nil, key: PrivateKey = Keys.alice) throws(TxRejection) -> Tx {
        try Tx.sign(key: key, op: op, payload: Harness.payload(payload), clusterID: c ?? cluster, nonce: "n1", ts: ts ?? now)
    }

    func code(_ body: () throws(TxRejection) -> Tx) -> RejectCode? {
        do { _ = try body(); return nil } catch { return error.code }
    }

    /// Replace `field` of a signed tx's envelope and re-serialize (signature kept).
    func tamper(_ tx: Tx, _ edit: (inout JSONObject) -> Void) -> [UInt8] {
        var o = tx.envelope.objectValue!
        edit(&o)
        return JSONValue.object(o).canonicalBytes
    }

    func testSigningRecipe() throws {
        let tx = try signed()
        var unsigned = tx.envelope.objectValue!
        unsigned["signature"] = nil
        let expected = Array("p2pos/tx/v1\n".utf8) + JSONValue.object(unsigned).canonicalBytes
        XCTAssertEqual(tx.signedBytes, expected)
        XCTAssertEqual(tx.txID, SHA256.hex(expected))
        XCTAssertEqual(tx.txID.count, 64)
        XCTAssertEqual(tx.txID, tx.txID.lowercased())
        XCTAssertTrue(Keys.alice.publicKey.verify(signature: tx.signature, message: expected))
        XCTAssertEqual(String(decoding: expected, as: UTF8.self),
                       "p2pos/tx/v1\n{\"cluster_id\":\"test-cluster\",\"nonce\":\"n1\",\"op\":\"PARTICIPANT_JOIN\",\"payload\":{\"session_id\":\"s1\"},\"public_key\":\"\(Keys.alice.publicKey.base64)\",\"ts\":\"\(now.rfc3339Nano)\",\"v\":1}")
        // Decoding the encoded form gives the same tx; whitespace and key order do not matter.
        XCTAssertEqual(try Tx.decode(tx.encoded), tx)
        XCTAssertEqual(try Tx.decode(Array(tx.envelope.prettyString.utf8)).txID, tx.txID)
        XCTAssertEqual(tx.signer, Keys.alice.publicKey.base64)
    }

    /// `encoded` splices the signature into the signed bytes instead of encoding the envelope
    /// again; it must give exactly the canonical encoding, also when the payload holds members
    /// named like envelope fields, escapes and non-ASCII text, and when the signature text was
    /// submitted with whitespace around it (then the shortcut must not apply).
    func testEncodedIsTheCanonicalEnvelope() throws {
        let payloads = [
            "{\"session_id\":\"s1\"}",
            "{\"session_id\":\"s2\",\"title\":\"a,\\\"ts\\\":\\\"x\\\",\\\"v\\\":1}\",\"steps\":[{\"step_id\":\"p\",\"title\":\"é ☃ \\u0001\"}]}",
            "{\"session_id\":\"s3\",\"title\":\"t\",\"steps\":[{\"step_id\":\"ts\",\"title\":\"v\"}]}",
        ]
        let ops: [TxOp] = [.participantJoin, .sessionCreate, .sessionCreate]
        for (op, p) in zip(ops, payloads) {
            let tx = try signed(op, p)
            XCTAssertEqual(tx.encoded, tx.envelope.canonicalBytes, p)
            XCTAssertEqual(try Tx.decode(tx.encoded), tx)
        }
        // A signature text with whitespace around it is accepted (base64 is trimmed) and kept as
        // submitted, escaped, in the canonical envelope.
        let tx = try signed()
        var o = tx.envelope.objectValue!
        o["signature"] = .string("\n" + Base64.encode(tx.signature) + " ")
        let spaced = try Tx.decode(JSONValue.object(o).canonicalBytes)
        XCTAssertEqual(spaced.txID, tx.txID)
        XCTAssertEqual(spaced.encoded, spaced.envelope.canonicalBytes)
        XCTAssertNotEqual(spaced.encoded, tx.encoded)
    }

    /// A tx sent canonical has its signed bytes cut from the input; sent any other way (spaces,
    /// key order, escapes the canonical form does not use, "-0"-free but re-spelled), they are
    /// written — and both give the same tx_id, signed bytes and canonical envelope.
    func testCanonicalAndOtherSpellingsDecodeAlike() throws {
        let tx = try signed(.decisionOpen, "{\"step_id\":\"st\",\"decision_id\":\"d1\",\"question\":\"a/b \\\"q\\\" é\\n\",\"options\":[\"x\",\"y\"],\"quorum\":2}")
        let canon = tx.encoded
        XCTAssertEqual(canon, tx.envelope.canonicalBytes)
        let fromCanon = try Tx.decode(canon)
        XCTAssertEqual(fromCanon.canonicalInput, canon)
        XCTAssertEqual(fromCanon.signedBytes, tx.signedBytes)
        let text = String(decoding: canon, as: UTF8.self)
        var reversed = JSONObject()
        for m in tx.envelope.objectValue!.members.reversed() { reversed[m.key] = m.value }
        let spellings = [
            Array(tx.envelope.prettyString.utf8),
            Array(JSONValue.object(reversed).compactString.utf8),
            Array(text.replacingOccurrences(of: "a/b", with: "a\\/b").utf8),
            Array(text.replacingOccurrences(of: "\"quorum\":2", with: "\"quorum\":2 ").utf8),
            Array(text.replacingOccurrences(of: "\"st\"", with: "\"\\u0073t\"").utf8),
            Array(" \(text)".utf8),
        ]
        for b in spellings {
            XCTAssertNotEqual(b, canon)
            let other = try Tx.decode(b)
            XCTAssertNil(other.canonicalInput)
            XCTAssertEqual(other.txID, tx.txID)
            XCTAssertEqual(other.signedBytes, tx.signedBytes)
            XCTAssertEqual(other.encoded, canon)
        }
        // The signer is the key's canonical text however the key was spelled: the text sent is
        // used only when it is that text.
        XCTAssertEqual(fromCanon.signer, Keys.alice.publicKey.base64)
        let raw = Keys.alice.publicKey.raw
        for keyText in [" \(Keys.alice.publicKey.base64)\n", Base64.encode([0x12, 0x20] + raw + [0x08, 0x01]), Base64.encode([0x08, 0x01, 0x12, 0x20] + raw + [0x18, 0x00])] {
            var o = tx.envelope.objectValue!
            o["public_key"] = .string(keyText)
            let other = try Tx.decodeUnverified(JSONValue.object(o).canonicalBytes)
            XCTAssertEqual(other.signer, Keys.alice.publicKey.base64, keyText)
            XCTAssertEqual(other.publicKey, Keys.alice.publicKey)
        }
        // A canonical envelope whose signature was made over other bytes still fails.
        XCTAssertEqual(code { () throws(TxRejection) in
            try Tx.decode(Array(text.replacingOccurrences(of: "\"quorum\":2", with: "\"quorum\":3").utf8))
        }, .badSignature)
    }

    /// The envelope's length table finds every field at its position and nothing else.
    func testEnvelopeFieldLookup() {
        for (i, k) in Tx.envelopeFields.enumerated() { XCTAssertEqual(Tx.envelopeField(k), i, k) }
        for k in ["", "V", "ops", "nonc", "payloads", "signatur", "public-key", "cluster_i\u{0}", "\u{212A}"] { XCTAssertNil(Tx.envelopeField(k), k) }
    }

    func testAdmission() throws {
        let tx = try signed()
        XCTAssertEqual(try Tx.admit(tx.encoded, clusterID: cluster, now: now).txID, tx.txID)
        XCTAssertEqual(try Tx.admit(tx.encoded, clusterID: cluster, now: now.adding(seconds: 299)).txID, tx.txID)
        XCTAssertEqual(try Tx.admit(tx.encoded, clusterID: cluster, now: now.adding(seconds: -300)).txID, tx.txID)
        XCTAssertEqual(code { () throws(TxRejection) in try Tx.admit(tx.encoded, clusterID: cluster, now: now.adding(seconds: 301)) }, .expired)
        XCTAssertEqual(code { () throws(TxRejection) in try Tx.admit(tx.encoded, clusterID: cluster, now: now.adding(seconds: -301)) }, .expired)
        XCTAssertEqual(code { () throws(TxRejection) in try Tx.admit(tx.encoded, clusterID: "other", now: now) }, .wrongCluster)
        XCTAssertEqual(code { () throws(TxRejection) in try Tx.admit(tx.encoded, clusterID: cluster, now: now, maxSkewSeconds: 0) }, nil)
    }

    func testShapeRejections() throws {
        let tx = try signed()
        func admitCode(_ bytes: [UInt8]) -> RejectCode? {
            code { () throws(TxRejection) in try Tx.admit(bytes, clusterID: cluster, now: now) }
        }
        func admitCode(_ text: String) -> RejectCode? { admitCode(Array(text.utf8)) }
        let canon = tx.encodedString
        // Floats, duplicate keys, trailing garbage, not an object.
        XCTAssertEqual(admitCode(canon.replacingOccurrences(of: "\"v\":1", with: "\"v\":1.0")), .malformed)
        XCTAssertEqual(admitCode(canon.replacingOccurrences(of: "\"v\":1", with: "\"v\":1,\"v\":1")), .malformed)
        XCTAssertEqual(admitCode(canon.replacingOccurrences(of: "{\"session_id\":\"s1\"}", with: "{\"session_id\":\"s1\",\"session_id\":\"s1\"}")), .malformed)
        XCTAssertEqual(admitCode(canon + "x"), .malformed)
        XCTAssertEqual(admitCode("[1]"), .malformed)
        XCTAssertEqual(admitCode([0x7B, 0xFF, 0x7D]), .malformed)
        // Oversized.
        let big = String(repeating: " ", count: Tx.maxBytes) + canon
        XCTAssertEqual(admitCode(big), .tooLarge)
        // Envelope fields.
        XCTAssertEqual(admitCode(tamper(tx) { $0["extra"] = .int(1) }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["v"] = .int(2) }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["op"] = .string("NOPE") }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["nonce"] = nil }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["nonce"] = .string("has space") }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["ts"] = .string("2026-01-01T00:00:00+01:00") }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["ts"] = .string("yesterday") }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["payload"] = .array([]) }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["public_key"] = .string("AAAA") }), .malformed)
        XCTAssertEqual(admitCode(tamper(tx) { $0["signature"] = .string("AAAA") }), .malformed)
        // Signature.
        XCTAssertEqual(admitCode(tamper(tx) { $0["payload"] = .obj([("session_id", .string("s2"))]) }), .badSignature)
        XCTAssertEqual(admitCode(tamper(tx) { $0["nonce"] = .string("n2") }), .badSignature)
        XCTAssertEqual(admitCode(tamper(tx) { $0["public_key"] = .string(Keys.bob.publicKey.base64) }), .badSignature)
        XCTAssertEqual(admitCode(tamper(tx) { $0["signature"] = .string(Base64.encode([UInt8](repeating: 0, count: 64))) }), .badSignature)
        XCTAssertEqual(admitCode(tamper(tx) { $0["cluster_id"] = .string("other") }), .wrongCluster, "cluster is checked first")
    }

    func testPayloadShapes() throws {
        func signCode(_ op: TxOp, _ payload: String) -> RejectCode? {
            code { () throws(TxRejection) in try self.signed(op, payload) }
        }
        let hex = String(repeating: "ab", count: 32)
        XCTAssertNil(signCode(.sessionCreate, "{\"session_id\":\"s\",\"title\":\"t\",\"steps\":[{\"step_id\":\"a\",\"title\":\"A\"}]}"))
        XCTAssertEqual(signCode(.sessionCreate, "{\"session_id\":\"s\",\"title\":\"t\",\"steps\":[]}"), .malformed)
        XCTAssertEqual(signCode(.sessionCreate, "{\"session_id\":\"s\",\"title\":\"t\",\"steps\":[{\"step_id\":\"a\",\"title\":\"A\"},{\"step_id\":\"a\",\"title\":\"B\"}]}"), .malformed)
        XCTAssertEqual(signCode(.sessionCreate, "{\"session_id\":\"s\",\"title\":\"\",\"steps\":[{\"step_id\":\"a\",\"title\":\"A\"}]}"), .malformed)
        XCTAssertEqual(signCode(.sessionCreate, "{\"session_id\":\"s\",\"title\":\"a\\u0000b\",\"steps\":[{\"step_id\":\"a\",\"title\":\"A\"}]}"), .malformed)
        XCTAssertEqual(signCode(.participantJoin, "{}"), .malformed)
        XCTAssertEqual(signCode(.participantJoin, "{\"session_id\":1}"), .malformed)
        XCTAssertEqual(signCode(.participantJoin, "{\"session_id\":\"s/1\"}"), .malformed)
        XCTAssertEqual(signCode(.participantJoin, "{\"session_id\":\"s\",\"x\":1}"), .malformed)
        XCTAssertEqual(signCode(.participantJoin, "{\"session_id\":\"\(String(repeating: "a", count: 129))\"}"), .malformed)
        XCTAssertEqual(signCode(.stepHandoff, "{\"step_id\":\"a\",\"to\":\"nope\"}"), .malformed)
        XCTAssertNil(signCode(.artifactAdd, "{\"step_id\":\"a\",\"artifact_id\":\"x\",\"kind\":\"k\",\"uri\":\"u\",\"sha256\":\"\(hex)\"}"))
        XCTAssertNil(signCode(.artifactAdd, "{\"step_id\":\"a\",\"artifact_id\":\"x\",\"kind\":\"k\",\"uri\":\"u\"}"))
        XCTAssertEqual(signCode(.artifactAdd, "{\"step_id\":\"a\",\"artifact_id\":\"x\",\"kind\":\"k\",\"uri\":\"u\",\"sha256\":\"\(hex.uppercased())\"}"), .malformed)
        XCTAssertEqual(signCode(.decisionOpen, "{\"step_id\":\"a\",\"decision_id\":\"d\",\"question\":\"q\",\"options\":[\"x\"],\"quorum\":1}"), .malformed)
        XCTAssertEqual(signCode(.decisionOpen, "{\"step_id\":\"a\",\"decision_id\":\"d\",\"question\":\"q\",\"options\":[\"x\",\"x\"],\"quorum\":1}"), .malformed)
        XCTAssertEqual(signCode(.decisionOpen, "{\"step_id\":\"a\",\"decision_id\":\"d\",\"question\":\"q\",\"options\":[\"x\",\"y\"],\"quorum\":0}"), .malformed)
        XCTAssertEqual(signCode(.decisionOpen, "{\"step_id\":\"a\",\"decision_id\":\"d\",\"question\":\"q\",\"options\":[\"x\",\"y\"],\"quorum\":\"1\"}"), .malformed)
        let seventeen = (0..<17).map { "\"o\($0)\"" }.joined(separator: ",")
        XCTAssertEqual(signCode(.decisionOpen, "{\"step_id\":\"a\",\"decision_id\":\"d\",\"question\":\"q\",\"options\":[\(seventeen)],\"quorum\":1}"), .malformed)
        XCTAssertEqual(signCode(.voteCast, "{\"decision_id\":\"d\"}"), .malformed)
        XCTAssertEqual(signCode(.stepResolve, "{\"step_id\":\"a\",\"outcome\":true}"), .malformed)
    }

    func testTxToolSignLines() throws {
        let input = """
        {"op":"PARTICIPANT_JOIN","payload":{"session_id":"s1"},"nonce":"a1","ts":"2026-01-02T03:04:05Z"}

        {"op":"STEP_CLAIM","payload":{"step_id":"st1"}}\r
        """
        let lines = try TxTool.signLines(input: input, key: Keys.alice, clusterID: cluster, now: now)
        XCTAssertEqual(lines.count, 2)
        let first = try Tx.decode(Array(lines[0].utf8))
        XCTAssertEqual(first.nonce, "a1")
        XCTAssertEqual(first.ts, "2026-01-02T03:04:05Z")
        XCTAssertEqual(first.op, .participantJoin)
        XCTAssertEqual(lines[0], first.envelope.canonicalString)
        let second = try Tx.admit(Array(lines[1].utf8), clusterID: cluster, now: now)
        XCTAssertEqual(second.nonce.count, 32)
        XCTAssertEqual(second.ts, now.rfc3339Nano)
        do {
            _ = try TxTool.signLines(input: "{\"op\":\"STEP_CLAIM\",\"payload\":{\"step_id\":\"a\"}}\n{\"op\":\"STEP_CLAIM\",\"payload\":{\"step\":\"a\"}}",
                                     key: Keys.alice, clusterID: cluster, now: now)
            XCTFail("expected an error")
        } catch {
            XCTAssertEqual(error.code, .malformed)
            XCTAssertTrue(error.message.hasPrefix("line 2:"), error.message)
        }
        let one = try TxTool.sign(op: "STEP_CLAIM", payloadJSON: "{\"step_id\":\"x\"}", key: Keys.bob, clusterID: cluster, now: now, nonce: "k")
        XCTAssertEqual(one.nonce, "k")
        XCTAssertEqual(code { () throws(TxRejection) in try TxTool.sign(op: "NOPE", payloadJSON: "{}", key: Keys.bob, clusterID: cluster, now: now) }, .malformed)
        XCTAssertEqual(code { () throws(TxRejection) in try TxTool.sign(op: "STEP_CLAIM", payloadJSON: "{\"step_id\":1.5}", key: Keys.bob, clusterID: cluster, now: now) }, .malformed)
    }

    /// `tx submit` input: NDJSON, pretty-printed values one after another, and broken values that
    /// cost only themselves.
    func testSplitJSONValues() throws {
        // A title with brackets and an escaped quote: the scan must not count them.
        let tx = try TxTool.sign(op: "SESSION_CREATE", payloadJSON: #"{"session_id":"s9","title":"x}{\"]","steps":[{"step_id":"a","title":"A"}]}"#,
                                 key: Keys.bob, clusterID: cluster, now: now)
        let pretty = tx.envelope.prettyString
        XCTAssertTrue(pretty.contains("\n"))
        let input = tx.encodedString + "\n\n" + pretty + "\n{\"a\":1.5}\r\nhello  [1,[2]] \"s\\\"}\" " + tx.encodedString + "\n{\"open\":[1,"
        let parts = TxTool.splitJSONValues(Array(input.utf8)).map { (line: $0.line, text: String(decoding: $0.bytes, as: UTF8.self)) }
        let prettyLines = pretty.split(separator: "\n").count
        XCTAssertEqual(parts.map(\.text), [tx.encodedString, pretty, "{\"a\":1.5}", "hello", "[1,[2]]", "\"s\\\"}\"", tx.encodedString, "{\"open\":[1,"])
        XCTAssertEqual(parts.map(\.line), [1, 3, 3 + prettyLines, 4 + prettyLines, 4 + prettyLines, 4 + prettyLines, 4 + prettyLines, 5 + prettyLines])
        // Each value is then judged on its own: the txs parse back to the same tx, the rest do not.
        XCTAssertEqual(try Tx.admit(Array(parts[1].text.utf8), clusterID: cluster, now: now).txID, tx.txID)
        XCTAssertThrowsError(try Tx.admit(Array(parts[2].text.utf8), clusterID: cluster, now: now))
        XCTAssertEqual(TxTool.splitJSONValues(Array(" \n\t".utf8)).count, 0)
        func split(_ text: String) -> [String] {
            TxTool.splitJSONValues(Array(text.utf8)).map { "\($0.line):" + String(decoding: $0.bytes, as: UTF8.self) }
        }
        // A bare token ending at a newline: the newline is counted once.
        XCTAssertEqual(split("1\n{}\n\n[2]"), ["1:1", "2:{}", "4:[2]"])
        // A truncated line costs only itself: the lines after it are still found.
        XCTAssertEqual(split("{\"a\":[1,\n{\"b\":2}\n{\"c\":{\"d\":3}}\n"), ["1:{\"a\":[1,", "2:{\"b\":2}", "3:{\"c\":{\"d\":3}}"])
        XCTAssertEqual(split("{\n{\n{\"ok\":1}"), ["1:{", "2:{", "3:{\"ok\":1}"])
        // A string still open at the end of its line ends the value there (JSON strings hold no newline).
        XCTAssertEqual(split("{\"a\":\"open\n{\"b\":\"x\"}\n"), ["1:{\"a\":\"open", "2:{\"b\":\"x\"}"])
        // A pretty-printed value keeps its lines; the one after it starts where it should.
        XCTAssertEqual(split("{\n  \"a\": [\n    1\n  ]\n}\n{\"b\":2}"), ["1:{\n  \"a\": [\n    1\n  ]\n}", "6:{\"b\":2}"])
        XCTAssertEqual(TxTool.splitJSONValues(Array("}{}".utf8)).map { String(decoding: $0.bytes, as: UTF8.self) }, ["}", "{}"])
    }
}
