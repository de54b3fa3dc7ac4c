// libFuzzer target for the tx decoder. Build and run (see docs/fuzzing.md):
//   scripts/fuzz tx [-max_total_time=600]
// A normal build makes a replay runner: `fuzz-tx FILE...` feeds each file through the decoder.
import FuzzSupport
import Ledger

@inline(never)
func fuzzOne(_ bytes: [UInt8]) {
    _ = try? Tx.decode(bytes)
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(fuzzBytes(data, size))
    return 0
}

@_cdecl("fuzz_tx_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
}
#else
@main
struct Replay {
    static func main() { replayFiles(fuzzOne) }
}
#endif
