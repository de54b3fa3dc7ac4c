import Foundation
import Libp2p
import Support

/// Read a key file (0600) into its base64 form for the Libp2pTool entry points.
func keyArgument(_ p: ParsedArgs) throws -> String? {
    if let b = p.value("--key-b64") { return b }
    guard let f = p.value("--key") else { return nil }
    return try keyFileBase64(Paths.absolute(f), what: "key file", prefer: "NODE_PRIV_B64")
}

/// The base64 private key in a key file: the file is either the bare key (base64 libp2p
/// protobuf, the format Go/libp2p nodes and `keys/*.key` use) or the KEY=VALUE output of
/// `p2pos keygen`, whose one `*_PRIV_B64` line — or the `prefer`red one — is taken. Several keys
/// without a preferred one is an error naming them, never a guess.
func keyFileBase64(_ path: String, what: String, prefer: String) throws -> String {
    let text = try SecureFile.read(path, what: what).trimmingCharacters(in: .whitespacesAndNewlines)
    let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
    let isEnv = lines.contains { l in l.range(of: "^[A-Z0-9_]+=", options: .regularExpression) != nil }
    guard isEnv else { return text }
    var keys: [(name: String, value: String)] = []
    for l in lines {
        guard let eq = l.firstIndex(of: "=") else { continue }
        let name = String(l[..<eq])
        if name.hasSuffix("_PRIV_B64") { keys.append((name, String(l[l.index(after: eq)...]))) }
    }
    if let k = keys.first(where: { $0.name == prefer }) { return k.value }
    if keys.count == 1 { return keys[0].value }
    if keys.isEmpty {
        throw P2POSError("KEY_FILE", "\(what) \(path) has KEY=VALUE lines but no *_PRIV_B64 key",
                         hint: "give a file holding one base64 private key, or the output of 'p2pos keygen'")
    }
    throw P2POSError("KEY_FILE", "\(what) \(path) holds several keys (\(keys.map(\.name).joined(separator: ", "))) and none is \(prefer)",
                     hint: "write the one to use into its own file, e.g. grep '^\(keys[0].name)=' \(path) | cut -d= -f2- > signer.key")
}

let outLine: @Sendable (String) -> Void = { Out.print($0) }
let errLine: @Sendable (String) -> Void = { Out.err($0) }

@Sendable func pingHandler(_ p: ParsedArgs) throws -> Int32 {
    let count = try p.int("--count", default: 5, min: 1, max: 100_000)
    return Libp2pTool.runPing(multiaddr: p.positionals[0], count: count, keyBase64: try keyArgument(p), output: outLine, errorOutput: errLine)
}

@Sendable func debugListenHandler(_ p: ParsedArgs) throws -> Int32 {
    let listen = p.all("--listen")
    guard !listen.isEmpty else { throw CLIError.usage("debug listen", "give at least one --listen MULTIADDR") }
    return Libp2pTool.runListen(listen: listen, echo: p.has("--echo"), perf: p.has("--perf"), keyBase64: try keyArgument(p),
                                printReady: outLine, errorOutput: errLine)
}

@Sendable func debugDialHandler(_ p: ParsedArgs) throws -> Int32 {
    Libp2pTool.runDebugDial(multiaddr: p.positionals[0], keyBase64: try keyArgument(p), identify: !p.has("--no-identify"),
                            pings: try p.int("--ping", default: 1, min: 0, max: 100_000),
                            echoBytes: try p.int("--echo-bytes", default: 0, min: 0, max: 1 << 30),
                            perfUpload: UInt64(try p.int("--perf-upload", default: 0, min: 0)),
                            perfDownload: UInt64(try p.int("--perf-download", default: 0, min: 0)),
                            output: outLine, errorOutput: errLine)
}

@Sendable func benchNetHandler(_ p: ParsedArgs) throws -> Int32 {
    let gib = Double(p.value("--perf-gib") ?? "1") ?? 1
    guard gib > 0, gib <= 16 else { throw CLIError.usage("bench net", "--perf-gib must be in (0, 16]") }
    return Libp2pTool.runBenchNet(compare: p.value("--compare"), target: p.value("--target"),
                                  roundTrips: try p.int("--round-trips", default: 1000, min: 1, max: 1_000_000),
                                  perfBytes: UInt64(gib * Double(1 << 30)), output: outLine, errorOutput: errLine)
}
