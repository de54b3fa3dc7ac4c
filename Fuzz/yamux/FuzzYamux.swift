// libFuzzer target for the yamux decoder. Build and run (see docs/fuzzing.md):
//   scripts/fuzz yamux [-max_total_time=600]
// A normal build makes a replay runner: `fuzz-yamux FILE...` feeds each file through the decoder.
import FuzzSupport
import Libp2p

@inline(never)
func fuzzOne(_ bytes: [UInt8]) {
    if bytes.count >= 12 { _ = try? YamuxHeader.decode(Array(bytes.prefix(12))) }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(fuzzBytes(data, size))
    return 0
}

@_cdecl("fuzz_yamux_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
}
#else
@main
struct Replay {
    static func main() { replayFiles(fuzzOne) }
}
#endif
