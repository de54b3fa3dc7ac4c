import ControlAPI
import Foundation
import Identity
import Ledger
import Node
import Support
import Wire

/// Read a file argument or stdin (`-` or none).
func readInput(_ src: String?, cmd: String) throws -> String {
    if src == nil || src == "-" {
        return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    }
    guard let d = FileManager.default.contents(atPath: src!) else { throw CLIError(ExitCode.failure, "p2pos \(cmd): cannot read \(src!)") }
    return String(decoding: d, as: UTF8.self)
}

@Sendable func txSignHandler(_ p: ParsedArgs) throws -> Int32 {
    let cmd = "tx sign"
    guard let keyPath = p.value("--key") else { throw CLIError.usage(cmd, "--key FILE is required") }
    let key: PrivateKey
    do { key = try PrivateKey(base64: try keyFileBase64(Paths.absolute(keyPath), what: "key file", prefer: "NODE_PRIV_B64")) } catch let e as KeyError {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): key file \(keyPath): \(e)")
    }
    var cluster = p.value("--cluster-id") ?? ""
    if cluster.isEmpty {
        do { cluster = try Paths.loadConfig(p).clusterID } catch {
            throw CLIError.usage(cmd, "--cluster-id is required when no config is found (\(error))")
        }
    }
    guard !cluster.isEmpty else { throw CLIError.usage(cmd, "--cluster-id is required (the config has none)") }
    let now = Timestamp.now()
    if p.positionals.first == "-" {
        if p.value("--op") != nil || p.value("--payload") != nil { throw CLIError.usage(cmd, "give either - (NDJSON on stdin) or --op/--payload") }
        let input = try readInput("-", cmd: cmd)
        do {
            for line in try TxTool.signLines(input: input, key: key, clusterID: cluster, now: now) { Out.print(line) }
        } catch {
            throw CLIError(ExitCode.failure, "p2pos \(cmd): \(error)")
        }
        return ExitCode.success
    }
    guard let op = p.value("--op"), let payload = p.value("--payload") else {
        throw CLIError.usage(cmd, "give --op OP --payload JSON, or - to read {\"op\",\"payload\"} lines from stdin")
    }
    do {
        let tx = try TxTool.sign(op: op, payloadJSON: payload, key: key, clusterID: cluster, now: now)
        Out.print(tx.encodedString)
    } catch {
        throw CLIError(ExitCode.failure, "p2pos \(cmd): \(error)")
    }
    return ExitCode.success
}

@Sendable func txSubmitHandler(_ p: ParsedArgs) throws -> Int32 {
    let cmd = "tx submit"
    let input = try readInput(p.positionals.first, cmd: cmd)
    // One JSON value per tx: NDJSON or pretty-printed txs one after another. Each is checked
    // against the tx JSON rules here, so one bad value is reported as rejected on its own
    // instead of making the daemon refuse the whole batch it would have been sent in.
    let values = TxTool.splitJSONValues(Array(input.utf8))
    guard !values.isEmpty else { throw CLIError.usage(cmd, "no transactions on input") }
    let client = try daemonClient(p)
    var failures = 0
    let wait = !p.has("--no-wait")
    func show(_ res: [String: Any]) {
        let status = res["status"] as? String ?? "?"
        if status != "applied" && status != "accepted" { failures += 1 }
        if p.json { Out.print(Out.json(res, pretty: false)); return }
        let id = res["tx_id"] as? String ?? "-"
        if status == "applied" {
            Out.print("\(id) applied index=\(res["raft_index"] ?? "?")\((res["duplicate"] as? Bool ?? false) ? " (already applied)" : "")")
        } else if status == "accepted" {
            Out.print("\(id) accepted")
        } else {
            var line = "\(id) \(status) \(res["code"] as? String ?? "?"): \(res["message"] as? String ?? "")"
            if let l = res["leader"] as? String { line += " (leader \(l)\((res["leader_addr"] as? String).map { " at \($0)" } ?? ""))" }
            Out.print(line)
        }
    }
    var batch: [[UInt8]] = []
    var batchBytes = 0
    func send() throws {
        guard !batch.isEmpty else { return }
        var body = Array("{\"txs\":[".utf8)
        for (k, v) in batch.enumerated() {
            if k > 0 { body.append(0x2C) }
            body.append(contentsOf: v)
        }
        body.append(contentsOf: Array("]}".utf8))
        batch = []
        batchBytes = 0
        let r: ControlClientResponse
        do { r = try client.request("POST", "/v1/p2p/tx" + (wait ? "" : "?wait=false"), body: body) } catch let e as ControlClientError where e.isNotReachable {
            throw CLIError(ExitCode.unreachable, "p2pos \(cmd): daemon stopped answering (\(e))")
        }
        if let (code, message) = r.apiError { throw CLIError(ExitCode.failure, "p2pos \(cmd): \(code): \(message)") }
        guard let obj = r.json as? [String: Any], let results = obj["results"] as? [[String: Any]] else {
            throw CLIError(ExitCode.failure, "p2pos \(cmd): unexpected answer (HTTP \(r.status))")
        }
        for res in results { show(res) }
    }
    for (line, raw) in values {
        // Sent compact (the daemon measures a tx in a batch that way too): a pretty-printed tx
        // is judged by its size without the layout.
        var bytes: [UInt8] = []
        let refused: (String, String)?
        do {
            guard raw.count <= 4 << 20 else { throw TxRejection(.tooLarge, "the value is \(raw.count) bytes") }
            let doc = try JSONDocument(Array(raw), limits: JSONLimits(maxBytes: 4 << 20, maxDepth: Tx.maxDepth))
            bytes = Array(doc.value.compactString.utf8)
            guard bytes.count <= Tx.maxBytes else { throw TxRejection(.tooLarge, "the tx is \(bytes.count) bytes; the limit is \(Tx.maxBytes)") }
            refused = nil
        } catch let e as TxRejection {
            refused = (e.code.rawValue, "line \(line): \(e.message)")
        } catch {
            refused = ("MALFORMED", "line \(line): \(error)")
        }
        if let (code, message) = refused {
            try send()      // results stay in input order
            show(["status": "rejected", "code": code, "message": message + " (not sent)"])
            continue
        }
        // Requests stay well under the daemon's 4 MiB body limit and 10,000 txs.
        if batch.count == 500 || batchBytes + bytes.count > 2 << 20 { try send() }
        batch.append(bytes)
        batchBytes += bytes.count + 1
    }
    try send()
    return failures == 0 ? ExitCode.success : ExitCode.failure
}

@Sendable func apiHandler(_ p: ParsedArgs) throws -> Int32 {
    let method = p.positionals[0].uppercased()
    guard ["GET", "POST", "PUT", "DELETE", "HEAD"].contains(method) else { throw CLIError.usage("api", "METHOD must be GET or POST, got \(p.positionals[0])") }
    var path = p.positionals[1]
    if !path.hasPrefix("/") { path = "/" + path }
    var body: [UInt8]? = nil
    if p.positionals.count > 2 {
        body = p.positionals[2] == "-" ? Array(try readInput("-", cmd: "api").utf8) : Array(p.positionals[2].utf8)
    }
    let client = try daemonClient(p)
    let r: ControlClientResponse
    do { r = try client.request(method, path, body: body) } catch let e as ControlClientError where e.isNotReachable {
        throw CLIError(ExitCode.unreachable, "p2pos api: daemon stopped answering (\(e))")
    }
    if let j = r.json, !(j is String) {
        Out.print(Out.json(j, pretty: !p.json))
    } else {
        Out.print(r.bodyText, terminator: r.bodyText.hasSuffix("\n") ? "" : "\n")
    }
    if r.status >= 400 {
        Out.err("p2pos api: HTTP \(r.status)")
        return ExitCode.failure
    }
    return ExitCode.success
}
