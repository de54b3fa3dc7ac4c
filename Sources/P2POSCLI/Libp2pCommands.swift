import Foundation
import Libp2p
import Support

/// Read a key file (0600) into its base64 form for the Libp2pTool entry points.
func keyArgument(_ p: ParsedArgs) throws -> String? {
    if let b = p.value("--key-b64") { return b }
    guard let f = p.value("--key") else { return nil }
    return try SecureFile.read(Paths.absolute(f), what: "key file").trimmingCharacters(in: .whitespacesAndNewlines)
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
