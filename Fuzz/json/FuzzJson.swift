// libFuzzer target for the json decoder. Build and run (see docs/fuzzing.md):
//   scripts/fuzz json [-max_total_time=600]
// A normal build makes a replay runner: `fuzz-json FILE...` feeds each file through the decoder.
import FuzzSupport
import Wire

@inline(never)
func fuzzOne(_ bytes: [UInt8]) {
    guard let v = try? JSONValue.parse(bytes) else { return }
    // Whatever parses has a canonical form that parses back to the same value and is a fixed point.
    let canon = v.canonicalBytes
    guard let back = try? JSONValue.parse(canon) else { fatalError("canonical form does not parse") }
    precondition(back.canonicalBytes == canon, "canonical form is not a fixed point")
    precondition((try? JSONValue.parse(Array(v.compactString.utf8))) == v, "compact form does not round-trip")
    // Input the parser calls canonical is exactly the canonical form, and a member cut out of it
    // matches the writer.
    guard let doc = try? JSONDocument(bytes) else { fatalError("parse and JSONDocument disagree") }
    if doc.isCanonical {
        precondition(bytes == canon, "input taken for canonical is not")
        for key in doc.value.objectValue?.keys ?? [] {
            precondition(doc.canonicalBytes(prefix: "", omitting: key) == v.canonicalBytes(prefix: "", omitting: key), "cut member differs")
        }
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzOne(fuzzBytes(data, size))
    return 0
}

@_cdecl("fuzz_json_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
}
#else
@main
struct Replay {
    static func main() { replayFiles(fuzzOne) }
}
#endif
