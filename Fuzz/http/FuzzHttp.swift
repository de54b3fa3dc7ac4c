// libFuzzer target for the http decoder. Build and run (see docs/fuzzing.md):
//   scripts/fuzz http [-max_total_time=600]
// A normal build makes a replay runner: `fuzz-http FILE...` feeds each file through the decoder.
import ControlAPI

@inline(never)
func fuzzOne(_ bytes: [UInt8]) {
    _ = HTTPParser.parse(bytes)
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM links executables with `main` aliased to this symbol; hand control to libFuzzer.
@_cdecl("fuzz_http_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in LLVMFuzzerTestOneInput(data, size) }
}
#else
import Foundation

/// Replay runner for normal builds: feeds each file argument through the decoder.
@main
struct Replay {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let d = FileManager.default.contents(atPath: path) else { continue }
            fuzzOne([UInt8](d))
        }
    }
}
#endif
