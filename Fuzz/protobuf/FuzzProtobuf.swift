// libFuzzer target for the protobuf decoder. Build and run (see docs/fuzzing.md):
//   scripts/fuzz protobuf [-max_total_time=600]
// A normal build makes a replay runner: `fuzz-protobuf FILE...` feeds each file through the decoder.
import FuzzSupport
import Wire

@inline(never)
func fuzzOne(_ bytes: [UInt8]) {
    if var r = try? ProtobufReader(bytes) { var n = 0; while n < 10_000, let _ = try? r.next() { n += 1 } }
    _ = try? Varint.decode(bytes, at: 0)
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(fuzzBytes(data, size))
    return 0
}

@_cdecl("fuzz_protobuf_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
}
#else
@main
struct Replay {
    static func main() { replayFiles(fuzzOne) }
}
#endif
