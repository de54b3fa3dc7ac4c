import Foundation

/// The libFuzzer entry signature (`LLVMFuzzerTestOneInput`).
public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> Int32

/// Copy libFuzzer's input into an array.
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
}

/// Hand control to libFuzzer. SwiftPM links executables with `main` aliased to
/// `<product>_main`, so each target exports that symbol and calls this (only in -DFUZZING builds,
/// where libFuzzer is linked in).
public func runFuzzer(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ callback: FuzzCallback) -> Int32 {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v, callback)
}
#endif

/// Normal builds: feed each file named on the command line through `body` (crash replay).
public func replayFiles(_ body: ([UInt8]) -> Void) {
    for path in CommandLine.arguments.dropFirst() {
        guard let d = FileManager.default.contents(atPath: path) else { continue }
        body([UInt8](d))
    }
}
